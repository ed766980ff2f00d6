/**
 * N-ACTION "Request Storage Commitment" -> CommitmentRequest, or the precise DIMSE failure status to answer.
 * Input is the naturalized dataset dcmjs gives us (keyword -> value); no I/O here.
 */
import {
  ACTION_TYPE_REQUEST_COMMITMENT,
  DimseStatus,
  type CommitmentRequest,
  type DimseStatusCode,
  type SopReference,
  STORAGE_COMMITMENT_SOP_CLASS,
  STORAGE_COMMITMENT_SOP_INSTANCE,
} from './types.js';

export interface NActionInput {
  /** Requested SOP Class UID (0000,0003). */
  readonly sopClassUid: string | undefined;
  /** Requested SOP Instance UID (0000,1001). */
  readonly sopInstanceUid: string | undefined;
  /** Action Type ID (0000,1008). */
  readonly actionTypeId: number | undefined;
  /** Action Information, naturalized (keyword -> value), or undefined when the request carried none. */
  readonly dataset: Readonly<Record<string, unknown>> | undefined;
}

export interface ParseLimits {
  /** Largest Referenced SOP Sequence we accept; beyond it we answer Resource Limitation. */
  readonly maxInstances: number;
}

export interface RequestRejection {
  readonly status: DimseStatusCode;
  /** Error Comment (0000,0902): at most 64 characters, no PHI. */
  readonly comment: string;
}

export type ParseResult =
  | { readonly ok: true; readonly request: CommitmentRequest }
  | { readonly ok: false; readonly rejection: RequestRejection };

/** PS3.5 9.1: digits and dots, no empty component, no leading zero in a component of more than one digit. */
const UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** UI values may arrive NUL- or space-padded; a multi-valued UID is not a UID. */
export function normalizeUid(value: unknown): string | undefined {
  const single = Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
  if (typeof single !== 'string') return undefined;
  const trimmed = single.replace(/[\0 ]+$/u, '').trim();
  return trimmed.length > 0 ? trimmed : undefined;
}

export function isValidUid(uid: string): boolean {
  return uid.length <= 64 && UID_PATTERN.test(uid);
}

function reject(status: DimseStatusCode, comment: string): ParseResult {
  return { ok: false, rejection: { status, comment: comment.slice(0, 64) } };
}

export function parseCommitmentRequest(input: NActionInput, limits: ParseLimits): ParseResult {
  if (normalizeUid(input.sopClassUid) !== STORAGE_COMMITMENT_SOP_CLASS) {
    return reject(DimseStatus.NoSuchSopClass, 'Requested SOP Class is not Storage Commitment');
  }
  if (normalizeUid(input.sopInstanceUid) !== STORAGE_COMMITMENT_SOP_INSTANCE) {
    return reject(DimseStatus.NoSuchSopInstance, 'Requested SOP Instance must be 1.2.840.10008.1.20.1.1');
  }
  if (input.actionTypeId !== ACTION_TYPE_REQUEST_COMMITMENT) {
    return reject(DimseStatus.NoSuchActionType, `No such Action Type ID ${String(input.actionTypeId)}`);
  }
  const dataset = input.dataset;
  if (!dataset) return reject(DimseStatus.InvalidArgumentValue, 'Missing Action Information');

  const transactionUid = normalizeUid(dataset['TransactionUID']);
  if (!transactionUid) return reject(DimseStatus.InvalidArgumentValue, 'Missing Transaction UID (0008,1195)');
  if (!isValidUid(transactionUid)) return reject(DimseStatus.InvalidArgumentValue, 'Invalid Transaction UID');

  const sequence = dataset['ReferencedSOPSequence'];
  if (!Array.isArray(sequence) || sequence.length === 0) {
    return reject(DimseStatus.InvalidArgumentValue, 'Missing or empty Referenced SOP Sequence (0008,1199)');
  }
  if (sequence.length > limits.maxInstances) {
    return reject(DimseStatus.ResourceLimitation, `More than ${limits.maxInstances} instances in one request`);
  }

  const references: SopReference[] = new Array<SopReference>(sequence.length);
  for (let i = 0; i < sequence.length; i++) {
    const item: unknown = sequence[i];
    const fields = typeof item === 'object' && item !== null ? (item as Record<string, unknown>) : {};
    const sopClassUid = normalizeUid(fields['ReferencedSOPClassUID']);
    const sopInstanceUid = normalizeUid(fields['ReferencedSOPInstanceUID']);
    if (!sopClassUid || !sopInstanceUid) {
      return reject(DimseStatus.InvalidArgumentValue, `Item ${i + 1} lacks (0008,1150) or (0008,1155)`);
    }
    if (!isValidUid(sopClassUid) || !isValidUid(sopInstanceUid)) {
      return reject(DimseStatus.InvalidArgumentValue, `Item ${i + 1} holds an invalid UID`);
    }
    references[i] = { sopClassUid, sopInstanceUid };
  }
  return { ok: true, request: { transactionUid, references } };
}
