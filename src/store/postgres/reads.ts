/**
 * TransactionReads on PostgreSQL: the same answers, in the same order, as the SQLite store's reads
 * (store/sqlite-reads.ts over store/transaction-store.ts), from the tables the repository writes. Obtained
 * from the repository (PostgresTransactionRepository.reads()), sharing its pool.
 *
 * Every query is parameterised. The search's WHERE clause is built from constant fragments only, each with
 * numbered parameters ($1, $2, …) for its values; nothing of the input ever becomes SQL text. Every search
 * term goes through an index (migration 1): transactions by state, calling AE and time, Transaction UID;
 * instance_search by SOP Instance UID; transaction_studies by study UID, patient ID, accession number and
 * the name key (COLLATE "C": the prefix search is a byte-order range, as in SQLite).
 *
 * Text that SQLite orders byte by byte (study UIDs, AE titles) is ordered COLLATE "C" here, and NULLs
 * first where SQLite puts them first (ascending), so both engines list in one order whatever the
 * database's collation.
 */
import type pg from 'pg';
import type { TransactionState } from '../../commitment/lifecycle.js';
import type { DeliveryErrorCategory } from '../../dicom/event-report.js';
import { EXPORT_PAGE, type TransactionReads } from '../../transactions/reads.js';
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
} from '../../transactions/records.js';
import { nameKey } from '../name-key.js';
import { OUTCOME_CONDITIONS, toInstance, toRecord, toStudy, type InstanceRow, type StudyRow, type TransactionRow } from '../rows.js';

const HOUR_MS = 3_600_000;

/** A WHERE clause and its values: `$n` in the clause is values[n - 1]. */
interface Where {
  readonly clause: string;
  readonly values: unknown[];
}

/**
 * The WHERE clause of a search, from constant fragments. `values` may already hold parameters (numbered
 * first); the clause's own continue from there.
 */
function searchWhere(filter: SearchFilter, values: unknown[] = []): Where {
  const conditions: string[] = [];
  /** The next parameter's placeholder, holding `value`. */
  const param = (value: unknown): string => `$${values.push(value)}`;
  if (filter.state) conditions.push(`state = ${param(filter.state)}`);
  if (filter.callingAeTitle) conditions.push(`calling_aet = ${param(filter.callingAeTitle)}`);
  if (filter.receivedFrom !== undefined) conditions.push(`received_at >= ${param(filter.receivedFrom)}`);
  if (filter.receivedTo !== undefined) conditions.push(`received_at < ${param(filter.receivedTo)}`);
  if (filter.transactionUid) conditions.push(`transaction_uid = ${param(filter.transactionUid)}`);
  if (filter.sopInstanceUid) conditions.push(`id IN (SELECT transaction_id FROM instance_search WHERE sop_instance_uid = ${param(filter.sopInstanceUid)})`);
  if (filter.studyInstanceUid) conditions.push(`id IN (SELECT transaction_id FROM transaction_studies WHERE study_uid = ${param(filter.studyInstanceUid)})`);
  if (filter.accessionNumber) conditions.push(`id IN (SELECT transaction_id FROM transaction_studies WHERE accession_number = ${param(filter.accessionNumber)})`);
  if (filter.patient) {
    // Patient ID exactly, or a name prefix as a range on the name key's index (COLLATE "C", as the index is).
    const key = nameKey(filter.patient);
    conditions.push(
      `id IN (SELECT transaction_id FROM transaction_studies WHERE patient_id = ${param(filter.patient)}
              UNION SELECT transaction_id FROM transaction_studies
                    WHERE patient_name_key >= ${param(key)}::text COLLATE "C" AND patient_name_key < ${param(`${key}\uffff`)}::text COLLATE "C")`,
    );
  }
  return { clause: conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '', values };
}

export class PostgresTransactionReads implements TransactionReads {
  constructor(private readonly pool: pg.Pool) {}

  private async rows<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
    return (await this.pool.query<T>(text, values)).rows;
  }

  async findByKey(callingAeTitle: string, transactionUid: string): Promise<TransactionRecord | undefined> {
    const [row] = await this.rows<TransactionRow>('SELECT * FROM transactions WHERE calling_aet = $1 AND transaction_uid = $2', [callingAeTitle, transactionUid]);
    return row ? toRecord(row) : undefined;
  }

  async findAllByUid(transactionUid: string): Promise<TransactionRecord[]> {
    return (await this.rows<TransactionRow>('SELECT * FROM transactions WHERE transaction_uid = $1 ORDER BY id', [transactionUid])).map(toRecord);
  }

  async list(filter: ListFilter): Promise<CountedPage<TransactionRecord>> {
    const count = searchWhere(filter);
    const page = searchWhere(filter);
    const limit = `$${page.values.push(Math.max(0, filter.limit))}`;
    const offset = `$${page.values.push(Math.max(0, filter.offset))}`;
    // Two statements, not one snapshot: as on SQLite, a write in between may make the total one off.
    const [[total], rows] = await Promise.all([
      this.rows<{ total: number }>(`SELECT COUNT(*) AS total FROM transactions ${count.clause}`, count.values),
      this.rows<TransactionRow>(`SELECT * FROM transactions ${page.clause} ORDER BY received_at DESC, id DESC LIMIT ${limit} OFFSET ${offset}`, page.values),
    ]);
    return { total: total?.total ?? 0, items: rows.map(toRecord) };
  }

  /** Keyset pages (received_at, id) after the last row seen: each page one statement, nothing held open. */
  async *exportPages(filter: SearchFilter, max: number, pageSize = EXPORT_PAGE): AsyncGenerator<TransactionRecord[]> {
    let after: TransactionRecord | undefined;
    let left = max;
    while (left > 0) {
      const limit = Math.min(Math.max(1, pageSize), left);
      const page = await this.listAfter(filter, after, limit);
      if (page.length > 0) yield page;
      if (page.length < limit) return;
      left -= page.length;
      after = page[page.length - 1];
    }
  }

  private async listAfter(filter: SearchFilter, after: TransactionRecord | undefined, limit: number): Promise<TransactionRecord[]> {
    const { clause, values } = searchWhere(filter);
    let where = clause;
    if (after) {
      // received_at <= … on its own lets the time index bound the scan; the row comparison breaks the tie.
      const at = `$${values.push(after.receivedAt)}`;
      const id = `$${values.push(after.id)}`;
      where = `${clause ? `${clause} AND` : 'WHERE'} received_at <= ${at} AND (received_at, id) < (${at}, ${id})`;
    }
    const limitParam = `$${values.push(limit)}`;
    return (await this.rows<TransactionRow>(`SELECT * FROM transactions ${where} ORDER BY received_at DESC, id DESC LIMIT ${limitParam}`, values)).map(toRecord);
  }

  async studiesOf(ids: readonly number[]): Promise<Map<number, StudyRecord[]>> {
    const found = new Map<number, StudyRecord[]>();
    if (ids.length === 0) return found;
    const rows = await this.rows<StudyRow>(
      `SELECT * FROM transaction_studies WHERE transaction_id = ANY($1::bigint[]) ORDER BY study_date COLLATE "C" NULLS FIRST, study_uid COLLATE "C"`,
      [ids],
    );
    for (const row of rows) {
      const list = found.get(row.transaction_id) ?? [];
      list.push(toStudy(row));
      found.set(row.transaction_id, list);
    }
    return found;
  }

  async deliveryAttempts(id: number): Promise<DeliveryAttemptRecord[]> {
    const rows = await this.rows<{ at: number; via: DeliveryAttemptRecord['via']; ok: boolean; error: string | null; duration_ms: number; category: DeliveryErrorCategory | null }>(
      'SELECT at, via, ok, error, duration_ms, category FROM delivery_attempts WHERE transaction_id = $1 ORDER BY id',
      [id],
    );
    return rows.map((r) => ({ at: r.at, via: r.via, ok: r.ok, error: r.error, durationMs: r.duration_ms, category: r.ok ? null : (r.category ?? 'network') }));
  }

  async instanceOutcomesByUid(ids: readonly number[], sopInstanceUid: string): Promise<Map<number, InstanceRecord[]>> {
    const found = new Map<number, InstanceRecord[]>();
    if (ids.length === 0) return found;
    const rows = await this.rows<InstanceRow & { transaction_id: number }>(
      `SELECT transaction_id, seq, sop_class_uid, sop_instance_uid, outcome, failure_reason, stored_sop_class_uid, vanished_at FROM instances
       WHERE transaction_id = ANY($1::bigint[]) AND sop_instance_uid = $2 ORDER BY seq`,
      [ids, sopInstanceUid],
    );
    for (const row of rows) {
      const list = found.get(row.transaction_id) ?? [];
      list.push(toInstance(row));
      found.set(row.transaction_id, list);
    }
    return found;
  }

  async outcomeCounts(id: number): Promise<OutcomeCount[]> {
    return this.rows<OutcomeCount>(
      `SELECT outcome, failure_reason AS "failureReason", COUNT(*)::int AS count FROM instances
       WHERE transaction_id = $1 AND outcome IS NOT NULL GROUP BY outcome, failure_reason ORDER BY outcome, failure_reason NULLS FIRST`,
      [id],
    );
  }

  async instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): Promise<InstanceRecord[]> {
    const rows = await this.rows<InstanceRow>(
      `SELECT seq, sop_class_uid, sop_instance_uid, outcome, failure_reason, stored_sop_class_uid, vanished_at FROM instances
       WHERE transaction_id = $1 AND seq > $2${OUTCOME_CONDITIONS[page.outcome]} ORDER BY seq LIMIT $3`,
      [id, page.afterSeq, Math.max(0, page.limit)],
    );
    return rows.map(toInstance);
  }

  /** One row per hour with transactions, summed in the database; latencies in order of receipt. */
  async hourlyActivity(since: number): Promise<HourlyActivity[]> {
    const rows = await this.rows<HourlyActivity>(
      `SELECT (received_at / ${HOUR_MS}) * ${HOUR_MS} AS "hourStart",
              COUNT(*)::int AS transactions,
              (COUNT(*) FILTER (WHERE failed_count > 0))::int AS "withFailures",
              SUM(instance_count)::float8 AS instances,
              SUM(COALESCE(failed_count, 0))::float8 AS "failedInstances",
              COALESCE(ARRAY_AGG((reported_at - received_at)::float8 ORDER BY received_at, id) FILTER (WHERE reported_at IS NOT NULL), '{}') AS "reportLatenciesMs"
       FROM transactions WHERE received_at >= $1
       GROUP BY 1 ORDER BY 1`,
      [since],
    );
    return rows;
  }

  async failuresByReason(since: number): Promise<FailureCount[]> {
    return this.rows<FailureCount>(
      `SELECT i.failure_reason AS "failureReason", COUNT(*)::int AS count FROM transactions t JOIN instances i ON i.transaction_id = t.id
       WHERE t.received_at >= $1 AND t.failed_count > 0 AND i.outcome = 'failed'
       GROUP BY i.failure_reason ORDER BY count DESC, i.failure_reason`,
      [since],
    );
  }

  async pendingByModality(): Promise<ModalityBacklog[]> {
    return this.rows<ModalityBacklog>(
      `SELECT p.calling_aet AS "callingAeTitle", p.pending, p."oldestVerifiedAt",
              (SELECT MAX(t.reported_at) FROM transactions t WHERE t.calling_aet = p.calling_aet AND t.reported_at IS NOT NULL) AS "lastDeliveredAt"
       FROM (SELECT calling_aet, COUNT(*)::int AS pending, MIN(verified_at) AS "oldestVerifiedAt"
             FROM transactions WHERE state IN ('VERIFIED', 'DELIVERY_RETRY') GROUP BY calling_aet) p
       ORDER BY p.calling_aet COLLATE "C"`,
    );
  }

  async countsByState(since: number): Promise<StateCounts> {
    const counts: StateCounts = { RECEIVED: 0, VERIFIED: 0, DELIVERY_RETRY: 0, REPORTED: 0, EXPIRED: 0 };
    const rows = await this.rows<{ state: TransactionState; n: number }>('SELECT state, COUNT(*)::int AS n FROM transactions WHERE received_at >= $1 GROUP BY state', [since]);
    for (const row of rows) counts[row.state] = row.n;
    return counts;
  }

  async vanishedInstances(page: { limit: number; offset: number }): Promise<CountedPage<VanishedInstance>> {
    const [[counted], rows] = await Promise.all([
      this.rows<{ total: number }>('SELECT COUNT(*)::int AS total FROM instances WHERE vanished_at IS NOT NULL'),
      this.rows<{ calling_aet: string; transaction_uid: string; reported_at: number | null; seq: number; sop_class_uid: string; sop_instance_uid: string; vanished_at: number }>(
        `SELECT t.calling_aet, t.transaction_uid, t.reported_at, i.seq, i.sop_class_uid, i.sop_instance_uid, i.vanished_at
         FROM instances i JOIN transactions t ON t.id = i.transaction_id
         WHERE i.vanished_at IS NOT NULL ORDER BY i.vanished_at DESC, t.id DESC, i.seq LIMIT $1 OFFSET $2`,
        [Math.max(0, page.limit), Math.max(0, page.offset)],
      ),
    ]);
    return {
      total: counted?.total ?? 0,
      items: rows.map((r) => ({ callingAeTitle: r.calling_aet, transactionUid: r.transaction_uid, reportedAt: r.reported_at, seq: r.seq, sopClassUid: r.sop_class_uid, sopInstanceUid: r.sop_instance_uid, vanishedAt: r.vanished_at })),
    };
  }
}
