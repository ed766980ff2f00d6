/**
 * Rows of the store's tables as records, the same on both engines (the SQLite store and the PostgreSQL
 * repository and reads share the column names): one mapping, so both answer with the same records.
 */
import type { TransactionState } from '../commitment/lifecycle.js';
import type { EventTypeId, FailureReasonCode } from '../commitment/types.js';
import type { DeliveryErrorCategory } from '../transactions/report-transport.js';
import type { InstanceOutcomeFilter, InstanceRecord, StudyRecord, TransactionRecord } from '../transactions/records.js';
import type { WorkKind } from '../transactions/repository.js';

export interface TransactionRow {
  id: number;
  transaction_uid: string;
  calling_aet: string;
  called_aet: string;
  remote_address: string | null;
  state: TransactionState;
  instance_count: number;
  committed_count: number | null;
  failed_count: number | null;
  event_type_id: EventTypeId | null;
  received_at: number;
  arrival_deadline: number;
  verify_deadline: number;
  expires_at: number;
  verified_at: number | null;
  reported_at: number | null;
  expired_at: number | null;
  delivery_attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  last_error_category: DeliveryErrorCategory | null;
  protected_at: number | null;
  vanished_count: number;
  watched_at: number | null;
  /** PostgreSQL only: SQLite keeps its claims in the process (SqliteTransactionRepository). */
  lease_owner?: string | null;
  lease_until?: number | null;
  lease_epoch?: number;
}

export function toRecord(row: TransactionRow): TransactionRecord {
  return {
    id: row.id,
    transactionUid: row.transaction_uid,
    callingAeTitle: row.calling_aet,
    calledAeTitle: row.called_aet,
    remoteAddress: row.remote_address,
    state: row.state,
    instanceCount: row.instance_count,
    committedCount: row.committed_count,
    failedCount: row.failed_count,
    eventTypeId: row.event_type_id,
    receivedAt: row.received_at,
    arrivalDeadline: row.arrival_deadline,
    verifyDeadline: row.verify_deadline,
    expiresAt: row.expires_at,
    verifiedAt: row.verified_at,
    reportedAt: row.reported_at,
    expiredAt: row.expired_at,
    deliveryAttempts: row.delivery_attempts,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    lastErrorCategory: row.last_error_category ?? (row.last_error === null ? null : 'network'),
    protectedAt: row.protected_at,
    vanishedCount: row.vanished_count,
    watchedAt: row.watched_at,
    leaseOwner: row.lease_owner ?? null,
    leaseUntil: row.lease_until ?? null,
  };
}

export interface InstanceRow {
  seq: number;
  sop_class_uid: string;
  sop_instance_uid: string;
  outcome: 'committed' | 'failed' | null;
  failure_reason: FailureReasonCode | null;
  stored_sop_class_uid: string | null;
  vanished_at: number | null;
}

export function toInstance(r: InstanceRow): InstanceRecord {
  return { seq: r.seq, sopClassUid: r.sop_class_uid, sopInstanceUid: r.sop_instance_uid, outcome: r.outcome, failureReason: r.failure_reason, storedSopClassUid: r.stored_sop_class_uid, vanishedAt: r.vanished_at };
}

/** Which instances a page lists (constant SQL chosen by the filter; no value from input). */
export const OUTCOME_CONDITIONS: Record<InstanceOutcomeFilter, string> = {
  all: '',
  committed: ` AND outcome = 'committed'`,
  failed: ` AND outcome = 'failed'`,
  pending: ' AND outcome IS NULL',
  'not-committed': ` AND (outcome IS NULL OR outcome = 'failed')`,
  vanished: ' AND vanished_at IS NOT NULL',
};

export interface StudyRow {
  transaction_id: number;
  study_uid: string;
  orthanc_study_id: string | null;
  patient_id: string | null;
  patient_name: string | null;
  study_date: string | null;
  study_description: string | null;
  accession_number: string | null;
  modalities: string | null;
}

export function toStudy(row: StudyRow): StudyRecord {
  return {
    studyInstanceUid: row.study_uid,
    orthancStudyId: row.orthanc_study_id,
    patientId: row.patient_id,
    patientName: row.patient_name,
    studyDate: row.study_date,
    studyDescription: row.study_description,
    accessionNumber: row.accession_number,
    modalities: row.modalities,
  };
}

/**
 * Which transactions have work of each kind (WorkKind; the lifecycle's isVerifyWork / isDeliverWork in
 * SQL), with `now` the engine's placeholder for the current time: constant SQL, never input.
 */
export function workCondition(kind: WorkKind, now: string): string {
  switch (kind) {
    case 'verify':
      return `state = 'RECEIVED'`;
    case 'deliver':
      return `(state = 'VERIFIED' OR (state = 'DELIVERY_RETRY' AND next_attempt_at <= ${now}))`;
    case 'owed':
      return `state IN ('VERIFIED', 'DELIVERY_RETRY')`;
  }
}
