/**
 * Verdict -> N-EVENT-REPORT content (PS3.4 J.3.3): Event Type 1 when every instance is committed,
 * 2 when any failed. Encoding to bytes is the DICOM shell's job (dicom/dataset-writer.ts).
 */
import { EventType, type EventTypeId, type FailedSopReference, type SopReference, type Verdict } from './types.js';

export interface EventReport {
  readonly eventTypeId: EventTypeId;
  readonly transactionUid: string;
  /** Retrieve AE Title (0008,0054): where the committed instances can be fetched (Orthanc's AE title). */
  readonly retrieveAeTitle: string | undefined;
  /** Referenced SOP Sequence (0008,1199): the committed instances; absent for type 2 when none committed. */
  readonly referenced: readonly SopReference[];
  /** Failed SOP Sequence (0008,1198): present only for Event Type 2. */
  readonly failed: readonly FailedSopReference[];
}

export function buildEventReport(
  transactionUid: string,
  retrieveAeTitle: string | undefined,
  verdict: Verdict,
): EventReport {
  const eventTypeId = verdict.failed.length === 0 ? EventType.AllCommitted : EventType.SomeFailed;
  return {
    eventTypeId,
    transactionUid,
    retrieveAeTitle: verdict.committed.length > 0 ? retrieveAeTitle : undefined,
    referenced: verdict.committed,
    failed: verdict.failed,
  };
}
