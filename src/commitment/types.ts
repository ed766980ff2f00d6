/**
 * Vocabulary of the Storage Commitment Push Model (PS3.4 Annex J) shared by the core and its shells.
 * Nothing here does I/O.
 */

export const STORAGE_COMMITMENT_SOP_CLASS = '1.2.840.10008.1.20.1';
/** The well-known SOP Instance every N-ACTION and N-EVENT-REPORT of the Push Model is addressed to. */
export const STORAGE_COMMITMENT_SOP_INSTANCE = '1.2.840.10008.1.20.1.1';
export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

/** Action Type ID 1: "Request Storage Commitment" (PS3.4 J.3.2). */
export const ACTION_TYPE_REQUEST_COMMITMENT = 1;

/** Event Type IDs of the N-EVENT-REPORT (PS3.4 J.3.3). */
export const EventType = {
  AllCommitted: 1,
  SomeFailed: 2,
} as const;
export type EventTypeId = (typeof EventType)[keyof typeof EventType];

/** Failure Reason (0008,1197) values that PS3.4 J.3.3.1.2 allows in the Failed SOP Sequence. */
export const FailureReason = {
  ProcessingFailure: 0x0110,
  NoSuchObjectInstance: 0x0112,
  ResourceLimitation: 0x0213,
  ReferencedSopClassNotSupported: 0x0122,
  ClassInstanceConflict: 0x0119,
  DuplicateTransactionUid: 0x0131,
} as const;
export type FailureReasonCode = (typeof FailureReason)[keyof typeof FailureReason];

/** DIMSE status codes (PS3.7 Annex C) we answer an N-ACTION with. */
export const DimseStatus = {
  Success: 0x0000,
  ProcessingFailure: 0x0110,
  NoSuchSopInstance: 0x0112,
  InvalidArgumentValue: 0x0115,
  NoSuchSopClass: 0x0118,
  MissingAttribute: 0x0120,
  NoSuchActionType: 0x0123,
  SopClassNotSupported: 0x0122,
  UnrecognizedOperation: 0x0211,
  ResourceLimitation: 0x0213,
} as const;
export type DimseStatusCode = (typeof DimseStatus)[keyof typeof DimseStatus];

export interface SopReference {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
}

/** A parsed, valid N-ACTION "Request Storage Commitment". */
export interface CommitmentRequest {
  readonly transactionUid: string;
  readonly references: readonly SopReference[];
}

export interface FailedSopReference extends SopReference {
  readonly failureReason: FailureReasonCode;
}

/** The answer for one transaction: every requested reference lands in exactly one list. */
export interface Verdict {
  readonly committed: readonly SopReference[];
  readonly failed: readonly FailedSopReference[];
}

/** A status or Failure Reason as DICOM writes it: 0x0112. */
export function hex16(code: number): string {
  return `0x${code.toString(16).padStart(4, '0')}`;
}

/** Words for a Failure Reason, for logs, the API and the dashboard. */
export function describeFailureReason(code: number): string {
  switch (code) {
    case FailureReason.ProcessingFailure:
      return 'Processing failure';
    case FailureReason.NoSuchObjectInstance:
      return 'No such object instance (not stored)';
    case FailureReason.ResourceLimitation:
      return 'Resource limitation';
    case FailureReason.ReferencedSopClassNotSupported:
      return 'Referenced SOP Class not supported';
    case FailureReason.ClassInstanceConflict:
      return 'Class/instance conflict (stored under another SOP Class)';
    case FailureReason.DuplicateTransactionUid:
      return 'Duplicate Transaction UID';
    default:
      return `Failure reason ${hex16(code)}`;
  }
}
