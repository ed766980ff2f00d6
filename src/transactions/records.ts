/**
 * What the application layer reads and writes about a transaction, whatever stores it (SQLite for one
 * node, PostgreSQL for several): plain records, no database types.
 */
import type { CommitmentRequest, EventTypeId, FailureReasonCode, SopReference } from '../commitment/types.js';
import type { TransactionState } from '../commitment/lifecycle.js';
import type { DeliveryErrorCategory } from './report-transport.js';

export interface TransactionRecord {
  readonly id: number;
  readonly transactionUid: string;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly remoteAddress: string | null;
  readonly state: TransactionState;
  readonly instanceCount: number;
  readonly committedCount: number | null;
  readonly failedCount: number | null;
  readonly eventTypeId: EventTypeId | null;
  readonly receivedAt: number;
  readonly arrivalDeadline: number;
  readonly verifyDeadline: number;
  readonly expiresAt: number;
  readonly verifiedAt: number | null;
  readonly reportedAt: number | null;
  readonly expiredAt: number | null;
  readonly deliveryAttempts: number;
  readonly nextAttemptAt: number | null;
  readonly lastError: string | null;
  /** What kind of failure lastError is (see DeliveryErrorCategory); null with lastError. */
  readonly lastErrorCategory: DeliveryErrorCategory | null;
  /**
   * When what this report commits was last protected in Orthanc (STGCMT_PROTECT); cleared whenever the
   * transaction is reopened for delivery, so every report goes out only after a protection of its own.
   */
  readonly protectedAt: number | null;
  /** Committed instances that later disappeared from Orthanc (found by the committed-instance watch). */
  readonly vanishedCount: number;
  /** When the watch last finished a pass over this transaction's committed instances. */
  readonly watchedAt: number | null;
  /** The node holding a claim on it (verifying or delivering), and until when; null when none. */
  readonly leaseOwner: string | null;
  readonly leaseUntil: number | null;
}

export interface InstanceRecord extends SopReference {
  readonly seq: number;
  readonly outcome: 'committed' | 'failed' | null;
  readonly failureReason: FailureReasonCode | null;
  /** For a 0119H failure: the SOP Class Orthanc holds the instance under. */
  readonly storedSopClassUid?: string | null;
  /** Reported committed, then found missing from Orthanc at this time (the watch's pass that noticed). */
  readonly vanishedAt?: number | null;
}

/** A committed instance that later disappeared, with its transaction (the list across transactions). */
export interface VanishedInstance {
  readonly callingAeTitle: string;
  readonly transactionUid: string;
  readonly reportedAt: number | null;
  readonly seq: number;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly vanishedAt: number;
}

/** A failed instance as the verifier saves it. */
export interface FailureRecord {
  readonly seq: number;
  readonly failureReason: FailureReasonCode;
  readonly storedSopClassUid?: string | undefined;
}

export interface DeliveryAttemptRecord {
  readonly at: number;
  readonly via: 'same-association' | 'new-association';
  readonly ok: boolean;
  readonly error: string | null;
  readonly durationMs: number;
  /** Of a failed attempt; null (or absent) for a delivered one. */
  readonly category?: DeliveryErrorCategory | null;
}

export interface NewRequest {
  readonly request: CommitmentRequest;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly remoteAddress: string | undefined;
  readonly now: number;
  readonly arrivalWaitMs: number;
  readonly verifyTimeoutMs: number;
  readonly ttlMs: number;
  /** Failures decided from the request alone (index in the request -> reason), see judgeAtIntake. */
  readonly decidedAtIntake?: ReadonlyMap<number, FailureReasonCode>;
}

export type RecordOutcome =
  /** A new transaction. */
  | { readonly kind: 'created'; readonly id: number }
  /** The same Transaction UID from the same AE with the same instances: one transaction; report again. */
  | { readonly kind: 'repeated'; readonly id: number }
  /** The same Transaction UID with other instances: those fail with 0131H in the transaction's report. */
  | { readonly kind: 'conflicting'; readonly id: number; readonly conflicting: number };

export interface ListFilter {
  readonly state?: TransactionState | undefined;
  readonly callingAeTitle?: string | undefined;
  readonly receivedFrom?: number | undefined;
  readonly receivedTo?: number | undefined;
  /** Transactions that listed this SOP Instance UID. */
  readonly sopInstanceUid?: string | undefined;
  /** Transactions whose committed instances belong to this study (Study Instance UID). */
  readonly studyInstanceUid?: string | undefined;
  /** Patient ID (exact), or the start of the patient's name (any case, `^` read as a space). */
  readonly patient?: string | undefined;
  readonly accessionNumber?: string | undefined;
  /** This Transaction UID (any calling AE). */
  readonly transactionUid?: string | undefined;
  readonly limit: number;
  readonly offset: number;
}

/**
 * Who and what a transaction's committed instances are: one row per study, read from Orthanc once at
 * verification time. Patient data (PHI): only the API behind the token shows it, never logs or metrics.
 */
export interface StudyRecord {
  readonly studyInstanceUid: string;
  /** Orthanc's ID of the study (for a link into Orthanc Explorer). */
  readonly orthancStudyId: string | null;
  readonly patientId: string | null;
  readonly patientName: string | null;
  /** DICOM DA, YYYYMMDD, as Orthanc holds it. */
  readonly studyDate: string | null;
  readonly studyDescription: string | null;
  readonly accessionNumber: string | null;
  /** Modalities of the study's series that hold committed instances, e.g. "CT" or "CT\\SR". */
  readonly modalities: string | null;
}

/** What a search matches, without the page: the CSV export reads all of it, page by page. */
export type SearchFilter = Omit<ListFilter, 'limit' | 'offset'>;

/** One page of a longer list, and how many the whole list holds. */
export interface CountedPage<T> {
  readonly total: number;
  readonly items: T[];
}

/** How many of a transaction's instances ended with this outcome (and, failed, this reason). */
export interface OutcomeCount {
  readonly outcome: 'committed' | 'failed';
  readonly failureReason: FailureReasonCode | null;
  readonly count: number;
}

/** Failed instances with this reason (the dashboard's chart of failures). */
export interface FailureCount {
  readonly failureReason: FailureReasonCode;
  readonly count: number;
}

/** Reports not delivered yet to one calling AE, and the last successful delivery to it. */
export interface ModalityBacklog {
  readonly callingAeTitle: string;
  readonly pending: number;
  readonly oldestVerifiedAt: number | null;
  readonly lastDeliveredAt: number | null;
}

/** Transactions per state (received since a time). */
export type StateCounts = Record<TransactionState, number>;

/** Counts for the dashboard's charts: one bucket per hour. */
export interface HourlyActivity {
  readonly hourStart: number;
  readonly transactions: number;
  readonly withFailures: number;
  readonly instances: number;
  readonly failedInstances: number;
  /** N-ACTION received to report delivered, in ms, of the transactions reported in this hour. */
  readonly reportLatenciesMs: number[];
}


/**
 * Which instances a page lists: by outcome, `pending` for undecided, `not-committed` for failed or pending,
 * `vanished` for committed ones that later disappeared from Orthanc.
 */
export type InstanceOutcomeFilter = 'all' | 'committed' | 'failed' | 'pending' | 'not-committed' | 'vanished';
