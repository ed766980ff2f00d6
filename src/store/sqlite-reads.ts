/**
 * TransactionReads over the embedded SQLite store: each read runs synchronously inside (better-sqlite3)
 * and resolves at once. The export reads keyset pages (store.listAfter) rather than one open iterator:
 * better-sqlite3 refuses other statements on the connection while an iterator is open, and the export
 * awaits between pages while DICOM traffic writes.
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
} from '../transactions/records.js';
import { EXPORT_PAGE, type TransactionReads } from '../transactions/reads.js';
import type { TransactionStore } from './transaction-store.js';

export class SqliteTransactionReads implements TransactionReads {
  constructor(private readonly store: TransactionStore) {}

  async findByKey(callingAeTitle: string, transactionUid: string): Promise<TransactionRecord | undefined> {
    return this.store.findByKey(callingAeTitle, transactionUid);
  }

  async findAllByUid(transactionUid: string): Promise<TransactionRecord[]> {
    return this.store.findAllByUid(transactionUid);
  }

  async list(filter: ListFilter): Promise<CountedPage<TransactionRecord>> {
    return this.store.list(filter);
  }

  async *exportPages(filter: SearchFilter, max: number, pageSize = EXPORT_PAGE): AsyncGenerator<TransactionRecord[]> {
    let after: TransactionRecord | undefined;
    let left = max;
    while (left > 0) {
      const limit = Math.min(Math.max(1, pageSize), left);
      const page = this.store.listAfter(filter, after, limit);
      if (page.length > 0) yield page;
      if (page.length < limit) return;
      left -= page.length;
      after = page[page.length - 1];
    }
  }

  async studiesOf(ids: readonly number[]): Promise<Map<number, StudyRecord[]>> {
    return this.store.studiesOf(ids);
  }

  async deliveryAttempts(id: number): Promise<DeliveryAttemptRecord[]> {
    return this.store.deliveryAttempts(id);
  }

  async instanceOutcomesByUid(ids: readonly number[], sopInstanceUid: string): Promise<Map<number, InstanceRecord[]>> {
    return this.store.instanceOutcomesByUid(ids, sopInstanceUid);
  }

  async outcomeCounts(id: number): Promise<OutcomeCount[]> {
    return this.store.outcomeCounts(id);
  }

  async instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): Promise<InstanceRecord[]> {
    return this.store.instancePage(id, page);
  }

  async hourlyActivity(since: number): Promise<HourlyActivity[]> {
    return this.store.hourlyActivity(since);
  }

  async failuresByReason(since: number): Promise<FailureCount[]> {
    return this.store.failuresByReason(since);
  }

  async pendingByModality(): Promise<ModalityBacklog[]> {
    return this.store.pendingByModality();
  }

  async countsByState(since: number): Promise<StateCounts> {
    return this.store.countsByState(since);
  }

  async vanishedInstances(page: { limit: number; offset: number }): Promise<CountedPage<VanishedInstance>> {
    return this.store.vanishedInstances(page);
  }
}
