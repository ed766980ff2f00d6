/**
 * TransactionRepository on PostgreSQL: several sidecar nodes share one database. The same (calling AE,
 * Transaction UID) is one transaction by a unique constraint (INSERT … ON CONFLICT), work is claimed with
 * leases (one UPDATE … FOR UPDATE SKIP LOCKED, so two nodes never claim the same row and never wait for
 * each other), and every write under a claim is fenced by (lease_owner, lease_epoch): a node whose claim was
 * taken over changes nothing and gets LeaseLostError.
 *
 * A transition made by no claim holder (expiry, a re-sent request or an operator reopening a transaction
 * for delivery) clears the lease and bumps the epoch: a delivery in flight under the old claim is then
 * refused when it records its outcome, and the reopened work is claimed anew.
 *
 * Every query is parameterised; the only SQL chosen at run time is constant text picked by WorkKind.
 */
import type pg from 'pg';
import { IllegalTransitionError, statesAccepting, transitionOrThrow, type TransactionEvent, type TransactionState } from '../../commitment/lifecycle.js';
import { EventType, FailureReason, type FailedSopReference, type FailureReasonCode, type SopReference, type Verdict } from '../../commitment/types.js';
import type { PeerEntry } from '../../peers/peer-directory.js';
import type { DeliveryAttemptRecord, FailureRecord, InstanceOutcomeFilter, InstanceRecord, NewRequest, RecordOutcome, StudyRecord, TransactionRecord } from '../../transactions/records.js';
import { nameKey } from '../name-key.js';
import type { TransactionReads } from '../../transactions/reads.js';
import { LeaseLostError, type Claim, type ClaimRequest, type InstanceOutcome, type Recorded, type TransactionRepository, type VerifiedRecord, type WorkKind } from '../../transactions/repository.js';
import { Interner } from '../../util/intern.js';
import { migrate } from './migrations.js';
import { createPool, type PoolOptions } from './pool.js';
import { PostgresTransactionReads } from './reads.js';
import { toRecord, workCondition, type TransactionRow as StoredRow } from '../rows.js';

/** A row of transactions here: the lease columns are always there (claims live in the database). */
type TransactionRow = Required<StoredRow>;

/** Where 'lifetime-ended' leads, read off the lifecycle (the same from every state that accepts it). */
const EXPIRED: TransactionState = transitionOrThrow(statesAccepting('lifetime-ended')[0]!, { type: 'lifetime-ended' }).state;

/** Instances per INSERT when recording a request (a request may list 100,000). */
const INSERT_BATCH = 20_000;

export interface PostgresRepositoryOptions extends PoolOptions {
  /** Apply missing migrations at open (default true). */
  readonly migrate?: boolean;
}

export class PostgresTransactionRepository implements TransactionRepository {
  readonly engine = 'postgres';

  /** The reads on the same pool; also what this repository's own instance pages and counts are. */
  private readonly readSide: PostgresTransactionReads;

  private constructor(private readonly pool: pg.Pool) {
    this.readSide = new PostgresTransactionReads(pool);
  }

  /** Connects, applies the missing migrations (once across nodes starting together), and returns the repository. */
  static async open(options: PostgresRepositoryOptions): Promise<PostgresTransactionRepository> {
    const pool = createPool(options);
    try {
      if (options.migrate !== false) {
        const client = await pool.connect();
        try {
          await migrate(client);
        } finally {
          client.release();
        }
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    return new PostgresTransactionRepository(pool);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /**
   * The reads of the HTTP API and the dashboard (TransactionReads) on this repository's pool: one pool per
   * node, closed with the repository. Reads hold no transaction open; each is one or two statements.
   */
  reads(): TransactionReads {
    return this.readSide;
  }

  /** Runs fn in one transaction on one connection; rolls back on any error. */
  private async tx<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError as Error;
      }
      throw error;
    } finally {
      // A connection that could not even roll back is dropped, not handed to the next caller.
      client.release(broken);
    }
  }

  async record(input: NewRequest, claimFor?: ClaimRequest): Promise<Recorded> {
    const references = input.request.references;
    return this.tx(async (client): Promise<Recorded> => {
      // Claimed for the recording node in the same row, when it asks: no moment without a claim.
      const inserted = await client.query<TransactionRow>(
        `INSERT INTO transactions (transaction_uid, calling_aet, called_aet, remote_address, state, instance_count,
           received_at, arrival_deadline, verify_deadline, expires_at, lease_owner, lease_until, lease_epoch)
         VALUES ($1, $2, $3, $4, 'RECEIVED', $5, $6, $7, $8, $9, $10::text, CASE WHEN $10::text IS NULL THEN NULL ELSE $6::bigint + $11::bigint END,
           CASE WHEN $10::text IS NULL THEN 0 ELSE 1 END)
         ON CONFLICT (calling_aet, transaction_uid) DO NOTHING RETURNING *`,
        [
          input.request.transactionUid,
          input.callingAeTitle,
          input.calledAeTitle,
          input.remoteAddress ?? null,
          references.length,
          input.now,
          input.now + input.arrivalWaitMs,
          input.now + input.verifyTimeoutMs,
          input.now + input.ttlMs,
          claimFor?.owner ?? null,
          claimFor?.ttlMs ?? 0,
        ],
      );
      const created = inserted.rows[0];
      if (created) {
        await this.insertInstances(client, created.id, references, input.decidedAtIntake);
        return { kind: 'created', id: created.id, ...(claimFor ? { claim: this.toClaim(created, 'verify') } : {}) };
      }
      // Another node (or an earlier request) holds this key: wait for its row, then fold this request in.
      const existing = (
        await client.query<TransactionRow>('SELECT * FROM transactions WHERE calling_aet = $1 AND transaction_uid = $2 FOR UPDATE', [input.callingAeTitle, input.request.transactionUid])
      ).rows[0];
      if (!existing) throw new Error(`transaction ${input.callingAeTitle}/${input.request.transactionUid}: conflicting key but no row`);
      const classes = references.map((r) => r.sopClassUid);
      const uids = references.map((r) => r.sopInstanceUid);
      // The instances this transaction does not list yet fail with 0131H, after those it lists.
      const { rows } = await client.query<{ added: number }>(
        `WITH requested AS (
           SELECT c, i, n FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS r (c, i, n)
         ), extra AS (
           SELECT c, i, n FROM requested
           WHERE NOT EXISTS (SELECT 1 FROM instances x WHERE x.transaction_id = $1 AND x.sop_instance_uid = requested.i AND x.sop_class_uid = requested.c)
         ), added AS (
           INSERT INTO instances (transaction_id, seq, sop_class_uid, sop_instance_uid, outcome, failure_reason)
           SELECT $1::bigint, $4::int + (ROW_NUMBER() OVER (ORDER BY n))::int - 1, c, i, 'failed', $5::int FROM extra
           RETURNING sop_instance_uid
         ), searchable AS (
           INSERT INTO instance_search (sop_instance_uid, transaction_id) SELECT DISTINCT sop_instance_uid, $1::bigint FROM added
           ON CONFLICT DO NOTHING
         )
         SELECT COUNT(*)::int AS added FROM added`,
        [existing.id, classes, uids, existing.instance_count, FailureReason.DuplicateTransactionUid],
      );
      const added = rows[0]?.added ?? 0;
      await client.query('UPDATE transactions SET instance_count = instance_count + $2, expires_at = GREATEST(expires_at, $3) WHERE id = $1', [existing.id, added, input.now + input.ttlMs]);
      const outcome: RecordOutcome = added > 0 ? { kind: 'conflicting', id: existing.id, conflicting: added } : { kind: 'repeated', id: existing.id };
      // Anything past verification is reported again: the modality asked again, so it did not get (or keep) it.
      if (existing.state === 'RECEIVED') return outcome;
      await this.reopenForDelivery(client, existing.id, existing.state, { type: 'request-repeated' });
      if (!claimFor) return outcome;
      // Its delivery belongs to the node holding the association the request came on.
      const claimed = await client.query<TransactionRow>(
        `UPDATE transactions SET lease_owner = $2, lease_until = $3::bigint + $4::bigint, lease_epoch = lease_epoch + 1 WHERE id = $1 RETURNING *`,
        [existing.id, claimFor.owner, input.now, claimFor.ttlMs],
      );
      return { ...outcome, claim: this.toClaim(claimed.rows[0]!, 'deliver') };
    });
  }

  /**
   * The instances of a new transaction, a batch of rows per INSERT … SELECT FROM UNNEST (arrays as
   * parameters: no statement text grows with the request). The search index (instance_search) is filled
   * after the N-ACTION-RSP, by indexForSearch, as on SQLite: in the same transaction it made recording
   * 10,000 instances take 175 ms instead of 75 ms (100,000: 2.2 s instead of 0.7 s).
   */
  private async insertInstances(client: pg.PoolClient, id: number, references: readonly SopReference[], decided: ReadonlyMap<number, FailureReasonCode> | undefined): Promise<void> {
    for (let start = 0; start < references.length; start += INSERT_BATCH) {
      const slice = references.slice(start, start + INSERT_BATCH);
      await client.query(
        `INSERT INTO instances (transaction_id, seq, sop_class_uid, sop_instance_uid)
         SELECT $1::bigint, $2::int + n::int - 1, c, i FROM UNNEST($3::text[], $4::text[]) WITH ORDINALITY AS r (c, i, n)`,
        [id, start, slice.map((r) => r.sopClassUid), slice.map((r) => r.sopInstanceUid)],
      );
    }
    if (decided && decided.size > 0) {
      await client.query(
        `UPDATE instances SET outcome = 'failed', failure_reason = d.reason
         FROM UNNEST($2::int[], $3::int[]) AS d (seq, reason) WHERE instances.transaction_id = $1 AND instances.seq = d.seq`,
        [id, [...decided.keys()], [...decided.values()]],
      );
    }
  }

  /**
   * Makes a transaction's images findable by SOP Instance UID, `limit` instances at a time from seq >
   * afterSeq; returns the last seq done, or undefined when the transaction is done (then marked so). Not
   * part of TransactionRepository yet: the same as TransactionStore.indexForSearch, called after the
   * N-ACTION-RSP.
   */
  async indexForSearch(id: number, afterSeq = -1, limit = 5000): Promise<number | undefined> {
    return this.tx(async (client) => {
      const row = (await client.query<{ search_indexed: boolean }>('SELECT search_indexed FROM transactions WHERE id = $1', [id])).rows[0];
      if (!row || row.search_indexed) return undefined;
      const { rows } = await client.query<{ last: number | null; n: number }>(
        `WITH slice AS (
           SELECT seq, sop_instance_uid FROM instances WHERE transaction_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
         ), indexed AS (
           INSERT INTO instance_search (sop_instance_uid, transaction_id) SELECT DISTINCT sop_instance_uid, $1::bigint FROM slice ON CONFLICT DO NOTHING
         )
         SELECT MAX(seq) AS last, COUNT(*)::int AS n FROM slice`,
        [id, afterSeq, limit],
      );
      const { last, n } = rows[0]!;
      if (n < limit || last === null) {
        await client.query('UPDATE transactions SET search_indexed = TRUE WHERE id = $1', [id]);
        return undefined;
      }
      return last;
    });
  }

  /** Transactions whose images are not all in the search index yet (a crash cut the indexing short). */
  async unindexedIds(): Promise<number[]> {
    const { rows } = await this.pool.query<{ id: number }>('SELECT id FROM transactions WHERE NOT search_indexed ORDER BY id');
    return rows.map((r) => r.id);
  }

  /**
   * The move `event` makes by the lifecycle's rules (back to VERIFIED), with fresh counts; any claim is
   * ended (its epoch bumped): see the file's comment.
   */
  private async reopenForDelivery(client: pg.PoolClient, id: number, from: TransactionState, event: TransactionEvent): Promise<void> {
    const { state } = transitionOrThrow(from, event);
    // A report sent again never repeats "committed" about an instance known to have left Orthanc since.
    await client.query(`UPDATE instances SET outcome = 'failed', failure_reason = $2 WHERE transaction_id = $1 AND outcome = 'committed' AND vanished_at IS NOT NULL`, [
      id,
      FailureReason.NoSuchObjectInstance,
    ]);
    const counts = (
      await client.query<{ committed: number; failed: number }>(
        `SELECT COUNT(*) FILTER (WHERE outcome = 'committed')::int AS committed, COUNT(*) FILTER (WHERE outcome = 'failed')::int AS failed FROM instances WHERE transaction_id = $1`,
        [id],
      )
    ).rows[0]!;
    await client.query(
      `UPDATE transactions SET state = $5, committed_count = $2, failed_count = $3, event_type_id = $4, next_attempt_at = NULL, expired_at = NULL,
         protected_at = NULL, lease_owner = NULL, lease_until = NULL, lease_epoch = lease_epoch + 1
       WHERE id = $1`,
      [id, counts.committed, counts.failed, counts.failed > 0 ? EventType.SomeFailed : EventType.AllCommitted, state],
    );
  }

  async get(id: number): Promise<TransactionRecord | undefined> {
    const row = (await this.pool.query<TransactionRow>('SELECT * FROM transactions WHERE id = $1', [id])).rows[0];
    return row ? toRecord(row) : undefined;
  }

  private toClaim(row: TransactionRow, kind: WorkKind): Claim {
    return { id: row.id, kind, owner: row.lease_owner!, epoch: row.lease_epoch, until: row.lease_until!, record: toRecord(row) };
  }

  async claimDue(kind: WorkKind, owner: string, now: number, ttlMs: number, limit: number): Promise<Claim[]> {
    if (limit <= 0) return [];
    const { rows } = await this.pool.query<TransactionRow>(
      `UPDATE transactions SET lease_owner = $2, lease_until = $1::bigint + $3::bigint, lease_epoch = lease_epoch + 1
       WHERE id IN (
         SELECT id FROM transactions
         WHERE ${workCondition(kind, '$1')} AND (lease_owner IS NULL OR lease_until <= $1)
         ORDER BY id LIMIT $4
         FOR UPDATE SKIP LOCKED
       )
       RETURNING *`,
      [now, owner, ttlMs, limit],
    );
    return rows.sort((a, b) => a.id - b.id).map((row) => this.toClaim(row, kind));
  }

  async claim(id: number, kind: WorkKind, owner: string, now: number, ttlMs: number): Promise<Claim | undefined> {
    const { rows } = await this.pool.query<TransactionRow>(
      `UPDATE transactions SET lease_owner = $2, lease_until = $1::bigint + $3::bigint, lease_epoch = lease_epoch + 1
       WHERE id = $4 AND ${workCondition(kind, '$1')} AND (lease_owner IS NULL OR lease_until <= $1)
       RETURNING *`,
      [now, owner, ttlMs, id],
    );
    return rows[0] ? this.toClaim(rows[0], kind) : undefined;
  }

  async workDue(kind: WorkKind, owner: string, now: number, limit: number): Promise<number[]> {
    const { rows } = await this.pool.query<{ id: number }>(
      `SELECT id FROM transactions WHERE ${workCondition(kind, '$1')} AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until <= $1) ORDER BY id LIMIT $3`,
      [now, owner, Math.max(0, limit)],
    );
    return rows.map((r) => r.id);
  }

  async releaseOwnedBy(owner: string): Promise<number> {
    const { rowCount } = await this.pool.query('UPDATE transactions SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1', [owner]);
    return rowCount ?? 0;
  }

  async pendingReports(callingAeTitle: string, now: number): Promise<number[]> {
    const { rows } = await this.pool.query<{ id: number }>(
      `SELECT id FROM transactions WHERE calling_aet = $1 AND ${workCondition('owed', '$2')} AND expires_at > $2 ORDER BY received_at, id`,
      [callingAeTitle, now],
    );
    return rows.map((r) => r.id);
  }

  async renew(claim: Claim, now: number, ttlMs: number): Promise<Claim | undefined> {
    const { rows } = await this.pool.query<TransactionRow>(
      `UPDATE transactions SET lease_until = $4::bigint + $5::bigint WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 RETURNING *`,
      [claim.id, claim.owner, claim.epoch, now, ttlMs],
    );
    return rows[0] ? this.toClaim(rows[0], claim.kind) : undefined;
  }

  async release(claim: Claim): Promise<void> {
    await this.pool.query('UPDATE transactions SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3', [claim.id, claim.owner, claim.epoch]);
  }

  /**
   * Locks the transaction if the claim still holds (a claimer skips or waits for it until we commit), else
   * LeaseLostError. `update`: the row will be updated (FOR NO KEY UPDATE), else only instances (FOR SHARE).
   */
  private async fence(client: pg.PoolClient, claim: Claim, update: boolean): Promise<TransactionRow> {
    const { rows } = await client.query<TransactionRow>(
      `SELECT * FROM transactions WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 ${update ? 'FOR NO KEY UPDATE' : 'FOR SHARE'}`,
      [claim.id, claim.owner, claim.epoch],
    );
    if (!rows[0]) throw new LeaseLostError(claim);
    return rows[0];
  }

  async undecidedInstances(id: number, page: { afterSeq: number; limit: number }): Promise<InstanceRecord[]> {
    const { rows } = await this.pool.query<{ seq: number; sop_class_uid: string; sop_instance_uid: string }>({
      text: 'SELECT seq, sop_class_uid, sop_instance_uid FROM instances WHERE transaction_id = $1 AND outcome IS NULL AND seq > $2 ORDER BY seq LIMIT $3',
      values: [id, page.afterSeq, page.limit < 0 ? null : page.limit],
    });
    const classes = new Interner();
    return rows.map((r) => ({ seq: r.seq, sopClassUid: classes.intern(r.sop_class_uid), sopInstanceUid: r.sop_instance_uid, outcome: null, failureReason: null }));
  }

  async saveOutcomes(claim: Claim, outcomes: readonly InstanceOutcome[]): Promise<void> {
    await this.tx(async (client) => {
      await this.fence(client, claim, false);
      await this.writeOutcomes(client, claim.id, outcomes);
    });
  }

  /** One UPDATE for any number of outcomes; instances already decided keep theirs. */
  private async writeOutcomes(client: pg.PoolClient, id: number, outcomes: readonly InstanceOutcome[]): Promise<void> {
    if (outcomes.length === 0) return;
    await client.query(
      `UPDATE instances SET outcome = o.outcome, failure_reason = o.reason, stored_sop_class_uid = o.stored
       FROM UNNEST($2::int[], $3::text[], $4::int[], $5::text[]) AS o (seq, outcome, reason, stored)
       WHERE instances.transaction_id = $1 AND instances.seq = o.seq AND instances.outcome IS NULL`,
      [
        id,
        outcomes.map((o) => o.seq),
        outcomes.map((o) => o.outcome),
        outcomes.map((o) => (o.outcome === 'failed' ? o.failureReason : null)),
        outcomes.map((o) => (o.outcome === 'failed' ? (o.storedSopClassUid ?? null) : null)),
      ],
    );
  }

  async completeVerification(claim: Claim, failures: readonly FailureRecord[], now: number, handOver?: { readonly ttlMs: number }): Promise<VerifiedRecord> {
    return this.tx(async (client) => {
      const row = await this.fence(client, claim, true);
      await this.writeOutcomes(
        client,
        row.id,
        failures.map((f) => ({ outcome: 'failed' as const, ...f })),
      );
      await client.query(`UPDATE instances SET outcome = 'committed' WHERE transaction_id = $1 AND outcome IS NULL`, [row.id]);
      await this.reopenForDelivery(client, row.id, row.state, { type: 'verified' });
      // reopenForDelivery bumped the epoch: this claim is over, and so is any other. Handed over, the same
      // owner claims the delivery in this transaction (a new epoch): no other node sees it unclaimed.
      const updated = handOver
        ? await client.query<TransactionRow>(
            'UPDATE transactions SET verified_at = $2, lease_owner = $3, lease_until = $2::bigint + $4::bigint, lease_epoch = lease_epoch + 1 WHERE id = $1 RETURNING *',
            [row.id, now, claim.owner, handOver.ttlMs],
          )
        : await client.query<TransactionRow>('UPDATE transactions SET verified_at = $2 WHERE id = $1 RETURNING *', [row.id, now]);
      const record = toRecord(updated.rows[0]!);
      return handOver ? { ...record, deliverClaim: this.toClaim(updated.rows[0]!, 'deliver') } : record;
    });
  }

  async verdict(id: number): Promise<Verdict> {
    const { rows } = await this.pool.query<{ c: string; i: string; o: 'committed' | 'failed' | null; r: FailureReasonCode | null }>({
      text: 'SELECT sop_class_uid AS c, sop_instance_uid AS i, outcome AS o, failure_reason AS r FROM instances WHERE transaction_id = $1 ORDER BY seq',
      values: [id],
    });
    const committed: SopReference[] = [];
    const failed: FailedSopReference[] = [];
    const classes = new Interner();
    for (const row of rows) {
      const sopClassUid = classes.intern(row.c);
      if (row.o === 'committed') committed.push({ sopClassUid, sopInstanceUid: row.i });
      else if (row.o === 'failed') failed.push({ sopClassUid, sopInstanceUid: row.i, failureReason: row.r ?? FailureReason.ProcessingFailure });
      else throw new Error(`transaction ${id} has an undecided instance`);
    }
    return { committed, failed };
  }

  async recordDelivery(claim: Claim, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): Promise<TransactionRecord> {
    return this.tx(async (client) => {
      const row = await this.fence(client, claim, true);
      const retryAt = nextAttemptAt ?? attempt.at;
      const { state: to } = transitionOrThrow(row.state, attempt.ok ? { type: 'delivered' } : { type: 'delivery-failed', retryAt });
      const category = attempt.ok ? null : (attempt.category ?? 'network');
      await client.query('INSERT INTO delivery_attempts (transaction_id, at, via, ok, error, duration_ms, category) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
        row.id,
        attempt.at,
        attempt.via,
        attempt.ok,
        attempt.error,
        Math.round(attempt.durationMs),
        category,
      ]);
      // The claim ends with the attempt: the lease is cleared (the epoch stays; the next claim bumps it).
      const updated = attempt.ok
        ? await client.query<TransactionRow>(
            `UPDATE transactions SET state = $3, reported_at = $2, delivery_attempts = delivery_attempts + 1, next_attempt_at = NULL, last_error = NULL,
               last_error_category = NULL, lease_owner = NULL, lease_until = NULL
             WHERE id = $1 RETURNING *`,
            [row.id, attempt.at, to],
          )
        : await client.query<TransactionRow>(
            `UPDATE transactions SET state = $5, delivery_attempts = delivery_attempts + 1, next_attempt_at = $2, last_error = $3,
               last_error_category = $4, lease_owner = NULL, lease_until = NULL
             WHERE id = $1 RETURNING *`,
            [row.id, retryAt, attempt.error, category, to],
          );
      return toRecord(updated.rows[0]!);
    });
  }

  async expireOverdue(now: number): Promise<TransactionRecord[]> {
    // Rows another node is writing at this moment are skipped: they are expired at the next pass.
    const { rows } = await this.pool.query<TransactionRow>(
      `UPDATE transactions SET state = $3, expired_at = $1, next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, lease_epoch = lease_epoch + 1
       WHERE id IN (
         SELECT id FROM transactions WHERE state = ANY($2::text[]) AND expires_at <= $1 ORDER BY id FOR UPDATE SKIP LOCKED
       )
       RETURNING *`,
      // Every state the lifecycle lets expire moves to the one state it names (EXPIRED).
      [now, statesAccepting('lifetime-ended'), EXPIRED],
    );
    return rows.sort((a, b) => a.id - b.id).map(toRecord);
  }

  async redeliver(id: number, now: number, ttlMs: number): Promise<TransactionRecord | undefined> {
    return this.tx(async (client) => {
      const row = (await client.query<TransactionRow>('SELECT * FROM transactions WHERE id = $1 FOR UPDATE', [id])).rows[0];
      if (!row || row.state === 'RECEIVED' || row.state === 'VERIFIED') return row ? toRecord(row) : undefined;
      await this.reopenForDelivery(client, id, row.state, { type: 'redeliver-requested' });
      const updated = await client.query<TransactionRow>('UPDATE transactions SET expires_at = GREATEST(expires_at, $2::bigint + $3::bigint) WHERE id = $1 RETURNING *', [id, now, ttlMs]);
      return toRecord(updated.rows[0]!);
    });
  }

  async outcomeCounts(id: number): Promise<Array<{ outcome: 'committed' | 'failed'; failureReason: FailureReasonCode | null; count: number }>> {
    return this.readSide.outcomeCounts(id);
  }

  async saveStudies(id: number, studies: readonly StudyRecord[]): Promise<void> {
    await this.tx(async (client) => {
      await client.query('DELETE FROM transaction_studies WHERE transaction_id = $1', [id]);
      for (const s of studies) {
        await client.query(
          `INSERT INTO transaction_studies (transaction_id, study_uid, orthanc_study_id, patient_id, patient_name, patient_name_key, study_date, study_description, accession_number, modalities)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (transaction_id, study_uid) DO NOTHING`,
          [id, s.studyInstanceUid, s.orthancStudyId, s.patientId, s.patientName, s.patientName === null ? null : nameKey(s.patientName), s.studyDate, s.studyDescription, s.accessionNumber, s.modalities],
        );
      }
    });
  }

  async instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): Promise<InstanceRecord[]> {
    return this.readSide.instancePage(id, page);
  }

  async markProtected(id: number, now: number, vanished: readonly number[]): Promise<void> {
    await this.tx(async (client) => {
      const row = (await client.query<TransactionRow>('SELECT * FROM transactions WHERE id = $1 FOR NO KEY UPDATE', [id])).rows[0];
      if (!row || row.state !== 'VERIFIED') throw new IllegalTransitionError(`transaction ${id}: protected while ${row?.state ?? 'missing'}`);
      if (vanished.length > 0) {
        transitionOrThrow(row.state, { type: 'committed-instances-vanished' });
        await client.query(`UPDATE instances SET outcome = 'failed', failure_reason = $2 WHERE transaction_id = $1 AND seq = ANY($3::int[]) AND outcome = 'committed'`, [
          id,
          FailureReason.NoSuchObjectInstance,
          [...vanished],
        ]);
        await this.recount(client, id);
      }
      await client.query('UPDATE transactions SET protected_at = $2 WHERE id = $1', [id, now]);
    });
  }

  /** Counts and Event Type from the instances (a verdict changed before its report went out). */
  private async recount(client: pg.PoolClient, id: number): Promise<void> {
    await client.query(
      `UPDATE transactions t SET committed_count = c.committed, failed_count = c.failed, event_type_id = CASE WHEN c.failed > 0 THEN $2::int ELSE $3::int END
       FROM (SELECT COUNT(*) FILTER (WHERE outcome = 'committed')::int AS committed, COUNT(*) FILTER (WHERE outcome = 'failed')::int AS failed FROM instances WHERE transaction_id = $1) c
       WHERE t.id = $1`,
      [id, EventType.SomeFailed, EventType.AllCommitted],
    );
  }

  async transactionsToWatch(reportedSince: number, limit: number): Promise<Array<{ id: number; afterSeq: number }>> {
    const { rows } = await this.pool.query<{ id: number; after_seq: number }>(
      `SELECT id, watch_after_seq AS after_seq FROM transactions t
       WHERE reported_at IS NOT NULL AND reported_at >= $1
         AND EXISTS (SELECT 1 FROM instances i WHERE i.transaction_id = t.id AND i.outcome = 'committed' AND i.vanished_at IS NULL)
       ORDER BY COALESCE(watched_at, 0), id LIMIT $2`,
      [reportedSince, Math.max(0, limit)],
    );
    return rows.map((r) => ({ id: r.id, afterSeq: r.after_seq }));
  }

  async committedToWatch(id: number, afterSeq: number, limit: number): Promise<Array<{ seq: number; sopInstanceUid: string }>> {
    const { rows } = await this.pool.query<{ seq: number; sop_instance_uid: string }>(
      `SELECT seq, sop_instance_uid FROM instances WHERE transaction_id = $1 AND seq > $2 AND outcome = 'committed' AND vanished_at IS NULL ORDER BY seq LIMIT $3`,
      [id, afterSeq, Math.max(0, limit)],
    );
    return rows.map((r) => ({ seq: r.seq, sopInstanceUid: r.sop_instance_uid }));
  }

  async recordWatch(id: number, vanished: readonly number[], resumeAfterSeq: number | null, now: number): Promise<number> {
    return this.tx(async (client) => {
      const marked = await client.query(
        `UPDATE instances SET vanished_at = $2 WHERE transaction_id = $1 AND seq = ANY($3::int[]) AND outcome = 'committed' AND vanished_at IS NULL`,
        [id, now, [...vanished]],
      );
      const recorded = marked.rowCount ?? 0;
      if (resumeAfterSeq === null) {
        await client.query('UPDATE transactions SET vanished_count = vanished_count + $2, watched_at = $3, watch_after_seq = -1 WHERE id = $1', [id, recorded, now]);
      } else {
        await client.query('UPDATE transactions SET vanished_count = vanished_count + $2, watch_after_seq = $3 WHERE id = $1', [id, recorded, resumeAfterSeq]);
      }
      return recorded;
    });
  }

  async purgeFinished(receivedBefore: number): Promise<number> {
    const { rowCount } = await this.pool.query(`DELETE FROM transactions WHERE state IN ('REPORTED', 'EXPIRED') AND received_at < $1`, [receivedBefore]);
    return rowCount ?? 0;
  }

  async savePeers(peers: readonly PeerEntry[]): Promise<void> {
    await this.tx(async (client) => {
      await client.query('DELETE FROM known_peers');
      for (const p of peers) {
        await client.query('INSERT INTO known_peers (ae_title, host, port, tls, source) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ae_title) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, tls = EXCLUDED.tls, source = EXCLUDED.source', [
          p.aeTitle,
          p.host,
          p.port,
          p.tls,
          p.source,
        ]);
      }
    });
  }

  async loadPeers(): Promise<PeerEntry[]> {
    const { rows } = await this.pool.query<{ ae_title: string; host: string; port: number; tls: boolean; source: PeerEntry['source'] }>('SELECT ae_title, host, port, tls, source FROM known_peers ORDER BY ae_title');
    return rows.map((r) => ({ aeTitle: r.ae_title, host: r.host, port: r.port, tls: r.tls, source: r.source }));
  }

  /** A write, as a node's N-ACTION needs one: the probe row, upserted. */
  async health(): Promise<{ readonly ok: boolean; readonly reason: string }> {
    try {
      await this.pool.query('INSERT INTO health_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at', [Date.now()]);
      return { ok: true, reason: 'PostgreSQL takes writes' };
    } catch (error) {
      return { ok: false, reason: `PostgreSQL: ${error instanceof Error ? error.message : String(error)}` };
    }
  }
}

