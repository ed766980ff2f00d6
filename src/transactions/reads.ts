/**
 * What the HTTP API and the dashboard read about transactions, whatever stores them: one async interface
 * (SQLite: store/sqlite-reads.ts; PostgreSQL beside it), so that no handler touches a table. Reads only:
 * every change goes through the TransactionRepository and the CommitmentService. The rules on top of these
 * reads (an ambiguous Transaction UID, counts from the record, page sizes) are in TransactionQueries.
 *
 * Lists are newest first (received, then id, descending) wherever they are read from.
 */
import type {
  CountedPage,
  DeliveryAttemptRecord,
  FailureCount,
  HourlyActivity,
  InstanceOutcomeFilter,
  InstanceRecord,
  ListFilter,
  ModalityBacklog,
  OutcomeCount,
  SearchFilter,
  StateCounts,
  StudyRecord,
  TransactionRecord,
  VanishedInstance,
} from './records.js';

/** Transactions per page of the CSV export unless asked otherwise: memory per page, not per export. */
export const EXPORT_PAGE = 1000;

export interface TransactionReads {
  /** By its key: the calling AE title and the Transaction UID. */
  findByKey(callingAeTitle: string, transactionUid: string): Promise<TransactionRecord | undefined>;

  /** Every transaction with this Transaction UID, oldest first: two AEs may reuse one. */
  findAllByUid(transactionUid: string): Promise<TransactionRecord[]>;

  /** The search: one page of what the filter matches, newest first, and how many it matches in all. */
  list(filter: ListFilter): Promise<CountedPage<TransactionRecord>>;

  /**
   * Everything the filter matches, newest first, at most `max`, in pages of at most `pageSize` (the CSV
   * export): a large export holds one page at a time, and nothing stays open in the store between pages.
   */
  exportPages(filter: SearchFilter, max: number, pageSize?: number): AsyncIterable<TransactionRecord[]>;

  /** The studies of these transactions, by transaction id (none: no entry). */
  studiesOf(ids: readonly number[]): Promise<Map<number, StudyRecord[]>>;

  /** A transaction's delivery attempts, oldest first. */
  deliveryAttempts(id: number): Promise<DeliveryAttemptRecord[]>;

  /** How a SOP Instance UID fared in each of these transactions that listed it, by transaction id. */
  instanceOutcomesByUid(ids: readonly number[], sopInstanceUid: string): Promise<Map<number, InstanceRecord[]>>;

  /** How many of a transaction's instances ended committed, and failed per reason (undecided: not counted). */
  outcomeCounts(id: number): Promise<OutcomeCount[]>;

  /** Instances with seq > afterSeq matching the filter, in request order, at most `limit`. */
  instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): Promise<InstanceRecord[]>;

  /** Transactions received since `since`, by hour of receipt (hours without any left out), oldest first. */
  hourlyActivity(since: number): Promise<HourlyActivity[]>;

  /** Failed instances by reason, of transactions received since `since`, most frequent first. */
  failuresByReason(since: number): Promise<FailureCount[]>;

  /** Per calling AE with reports not delivered yet (VERIFIED, DELIVERY_RETRY), by AE title. */
  pendingByModality(): Promise<ModalityBacklog[]>;

  /** Transactions received since `since`, per state (every state present, 0 when none). */
  countsByState(since: number): Promise<StateCounts>;

  /** Committed instances that later disappeared, newest first, across transactions (limit 0: the count only). */
  vanishedInstances(page: { limit: number; offset: number }): Promise<CountedPage<VanishedInstance>>;
}
