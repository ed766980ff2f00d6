/**
 * Reads a received N-EVENT-REPORT (naturalized by dcmjs) back into lists, for the SCU command and tests.
 */
import { normalizeUid } from '../commitment/request.js';
import type { FailedSopReference, FailureReasonCode, SopReference } from '../commitment/types.js';

export interface ReceivedReport {
  readonly eventTypeId: number;
  readonly transactionUid: string;
  readonly retrieveAeTitle: string | undefined;
  readonly committed: SopReference[];
  readonly failed: FailedSopReference[];
}

function items(value: unknown): Array<Record<string, unknown>> {
  return Array.isArray(value) ? (value as Array<Record<string, unknown>>) : [];
}

function reference(item: Record<string, unknown>): SopReference {
  const sopClassUid = normalizeUid(item['ReferencedSOPClassUID']);
  const sopInstanceUid = normalizeUid(item['ReferencedSOPInstanceUID']);
  if (!sopClassUid || !sopInstanceUid) throw new Error('report item without SOP Class/Instance UID');
  return { sopClassUid, sopInstanceUid };
}

export function parseEventReport(eventTypeId: number, dataset: Readonly<Record<string, unknown>>): ReceivedReport {
  const transactionUid = normalizeUid(dataset['TransactionUID']);
  if (!transactionUid) throw new Error('report without Transaction UID');
  const retrieve = dataset['RetrieveAETitle'];
  return {
    eventTypeId,
    transactionUid,
    retrieveAeTitle: typeof retrieve === 'string' ? retrieve.trim() : undefined,
    committed: items(dataset['ReferencedSOPSequence']).map(reference),
    failed: items(dataset['FailedSOPSequence']).map((item) => ({ ...reference(item), failureReason: Number(item['FailureReason']) as FailureReasonCode })),
  };
}
