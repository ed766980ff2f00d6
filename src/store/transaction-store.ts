/**
 * Durable transaction store: embedded SQLite (better-sqlite3) in STGCMT_DATA_DIR. Calls are synchronous on
 * purpose: when recordRequest returns, the request is on disk (WAL, synchronous=FULL by default), and only
 * then does the SCP answer the N-ACTION.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  EventType,
  FailureReason,
  type CommitmentRequest,
  type EventTypeId,
  type FailedSopReference,
  type FailureReasonCode,
  type SopReference,
  type Verdict,
} from '../commitment/types.js';
import type { PeerEntry } from '../peers/peer-directory.js';
import { Interner } from '../util/intern.js';
import { canTransition, type TransactionState } from './states.js';

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
}

export interface InstanceRecord extends SopReference {
  readonly seq: number;
  readonly outcome: 'committed' | 'failed' | null;
  readonly failureReason: FailureReasonCode | null;
  /** For a 0119H failure: the SOP Class Orthanc holds the instance under. */
  readonly storedSopClassUid?: string | null;
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
  readonly limit: number;
  readonly offset: number;
}

export interface StoreOptions {
  readonly synchronous: 'full' | 'normal';
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS transactions (
  id INTEGER PRIMARY KEY,
  transaction_uid TEXT NOT NULL,
  calling_aet TEXT NOT NULL,
  called_aet TEXT NOT NULL,
  remote_address TEXT,
  state TEXT NOT NULL,
  instance_count INTEGER NOT NULL,
  committed_count INTEGER,
  failed_count INTEGER,
  event_type_id INTEGER,
  received_at INTEGER NOT NULL,
  arrival_deadline INTEGER NOT NULL,
  verify_deadline INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  verified_at INTEGER,
  reported_at INTEGER,
  expired_at INTEGER,
  delivery_attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error TEXT,
  UNIQUE (calling_aet, transaction_uid)
);
CREATE INDEX IF NOT EXISTS transactions_by_state ON transactions (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS transactions_by_uid ON transactions (transaction_uid);
CREATE INDEX IF NOT EXISTS transactions_by_time ON transactions (received_at);
CREATE TABLE IF NOT EXISTS instances (
  transaction_id INTEGER NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  sop_class_uid TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL,
  outcome TEXT,
  failure_reason INTEGER,
  stored_sop_class_uid TEXT,
  PRIMARY KEY (transaction_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivery_attempts (
  id INTEGER PRIMARY KEY,
  transaction_id INTEGER NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
  at INTEGER NOT NULL,
  via TEXT NOT NULL,
  ok INTEGER NOT NULL,
  error TEXT,
  duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_transaction ON delivery_attempts (transaction_id);
CREATE TABLE IF NOT EXISTS known_peers (
  ae_title TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  tls INTEGER NOT NULL,
  source TEXT NOT NULL
);
`;

interface TransactionRow {
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
}

function toRecord(row: TransactionRow): TransactionRecord {
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
  };
}

export class IllegalTransitionError extends Error {}

/** Rows per multi-row INSERT (4 parameters each, far below SQLite's 32,766 limit). */
const INSERT_ROWS = 500;

export class TransactionStore {
  private readonly db: Database.Database;
  private readonly insertInstance: Database.Statement;
  /** The same insert for INSERT_ROWS rows at once: a 100,000-instance request is on the N-ACTION-RSP path. */
  private readonly insertInstances: Database.Statement;

  private constructor(path: string, options: StoreOptions) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    this.migrate();
    this.insertInstance = this.db.prepare(
      'INSERT INTO instances (transaction_id, seq, sop_class_uid, sop_instance_uid, outcome, failure_reason) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.insertInstances = this.db.prepare(
      `INSERT INTO instances (transaction_id, seq, sop_class_uid, sop_instance_uid) VALUES ${Array(INSERT_ROWS).fill('(?, ?, ?, ?)').join(', ')}`,
    );
  }

  /** Schema changes after the first release, keyed by SQLite's user_version. */
  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version < 1) {
      const columns = (this.db.pragma('table_info(instances)') as Array<{ name: string }>).map((c) => c.name);
      if (!columns.includes('stored_sop_class_uid')) this.db.exec('ALTER TABLE instances ADD COLUMN stored_sop_class_uid TEXT');
      this.db.pragma('user_version = 1');
    }
  }

  static open(dataDir: string, options: StoreOptions): TransactionStore {
    mkdirSync(dataDir, { recursive: true });
    return new TransactionStore(join(dataDir, 'stgcmt.sqlite'), options);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  /** Durably records an N-ACTION (one SQLite transaction), folding a re-sent Transaction UID into the first. */
  recordRequest(input: NewRequest): RecordOutcome {
    return this.db.transaction((): RecordOutcome => {
      const existing = this.db
        .prepare('SELECT * FROM transactions WHERE calling_aet = ? AND transaction_uid = ?')
        .get(input.callingAeTitle, input.request.transactionUid) as TransactionRow | undefined;
      if (!existing) return { kind: 'created', id: this.insertTransaction(input) };

      const known = new Set(
        (this.db.prepare('SELECT sop_class_uid, sop_instance_uid FROM instances WHERE transaction_id = ?').all(existing.id) as Array<{ sop_class_uid: string; sop_instance_uid: string }>).map(
          (r) => `${r.sop_class_uid}|${r.sop_instance_uid}`,
        ),
      );
      const extra = input.request.references.filter((r) => !known.has(`${r.sopClassUid}|${r.sopInstanceUid}`));
      let seq = existing.instance_count;
      for (const reference of extra) {
        this.insertInstance.run(existing.id, seq++, reference.sopClassUid, reference.sopInstanceUid, 'failed', FailureReason.DuplicateTransactionUid);
      }
      this.db
        .prepare('UPDATE transactions SET instance_count = ?, expires_at = MAX(expires_at, ?) WHERE id = ?')
        .run(seq, input.now + input.ttlMs, existing.id);
      // Anything past verification is reported again: the modality asked again, so it did not get (or keep) it.
      if (existing.state !== 'RECEIVED') this.reopenForDelivery(existing.id, existing.state);
      return extra.length > 0 ? { kind: 'conflicting', id: existing.id, conflicting: extra.length } : { kind: 'repeated', id: existing.id };
    }).immediate();
  }

  private insertTransaction(input: NewRequest): number {
    const { id } = this.db
      .prepare(
        `INSERT INTO transactions (transaction_uid, calling_aet, called_aet, remote_address, state, instance_count,
           received_at, arrival_deadline, verify_deadline, expires_at)
         VALUES (?, ?, ?, ?, 'RECEIVED', ?, ?, ?, ?, ?) RETURNING id`,
      )
      .get(
        input.request.transactionUid,
        input.callingAeTitle,
        input.calledAeTitle,
        input.remoteAddress ?? null,
        input.request.references.length,
        input.now,
        input.now + input.arrivalWaitMs,
        input.now + input.verifyTimeoutMs,
        input.now + input.ttlMs,
      ) as { id: number };
    const references = input.request.references;
    let seq = 0;
    const params: unknown[] = new Array(INSERT_ROWS * 4);
    for (; seq + INSERT_ROWS <= references.length; seq += INSERT_ROWS) {
      for (let row = 0; row < INSERT_ROWS; row++) {
        const reference = references[seq + row]!;
        params[row * 4] = id;
        params[row * 4 + 1] = seq + row;
        params[row * 4 + 2] = reference.sopClassUid;
        params[row * 4 + 3] = reference.sopInstanceUid;
      }
      this.insertInstances.run(params);
    }
    for (; seq < references.length; seq++) this.insertInstance.run(id, seq, references[seq]!.sopClassUid, references[seq]!.sopInstanceUid, null, null);
    return id;
  }

  private setState(id: number, from: TransactionState, to: TransactionState, extra = '', ...params: unknown[]): void {
    if (from !== to && !canTransition(from, to)) throw new IllegalTransitionError(`transaction ${id}: ${from} -> ${to}`);
    this.db.prepare(`UPDATE transactions SET state = ?${extra} WHERE id = ?`).run(to, ...params, id);
  }

  private reopenForDelivery(id: number, from: TransactionState): void {
    const counts = this.db
      .prepare(`SELECT SUM(outcome = 'committed') AS committed, SUM(outcome = 'failed') AS failed FROM instances WHERE transaction_id = ?`)
      .get(id) as { committed: number | null; failed: number | null };
    const failed = counts.failed ?? 0;
    this.setState(id, from, 'VERIFIED', ', committed_count = ?, failed_count = ?, event_type_id = ?, next_attempt_at = NULL, expired_at = NULL', counts.committed ?? 0, failed, failed > 0 ? EventType.SomeFailed : EventType.AllCommitted);
  }

  get(id: number): TransactionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM transactions WHERE id = ?').get(id) as TransactionRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** Transaction UIDs are globally unique by construction; should two AEs reuse one, the newest wins here. */
  findByUid(transactionUid: string): TransactionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM transactions WHERE transaction_uid = ? ORDER BY id DESC LIMIT 1').get(transactionUid) as TransactionRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  list(filter: ListFilter): { total: number; items: TransactionRecord[] } {
    const conditions: Array<[string, unknown]> = [];
    if (filter.state) conditions.push(['state = ?', filter.state]);
    if (filter.callingAeTitle) conditions.push(['calling_aet = ?', filter.callingAeTitle]);
    if (filter.receivedFrom !== undefined) conditions.push(['received_at >= ?', filter.receivedFrom]);
    if (filter.receivedTo !== undefined) conditions.push(['received_at < ?', filter.receivedTo]);
    const where = conditions.map(([sql]) => sql);
    const params = conditions.map(([, value]) => value);
    const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
    const { total } = this.db.prepare(`SELECT COUNT(*) AS total FROM transactions ${clause}`).get(...params) as { total: number };
    const rows = this.db
      .prepare(`SELECT * FROM transactions ${clause} ORDER BY received_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...params, filter.limit, filter.offset) as TransactionRow[];
    return { total, items: rows.map(toRecord) };
  }

  countsByState(since: number): Record<TransactionState, number> {
    const counts: Record<TransactionState, number> = { RECEIVED: 0, VERIFIED: 0, DELIVERY_RETRY: 0, REPORTED: 0, EXPIRED: 0 };
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n FROM transactions WHERE received_at >= ? GROUP BY state').all(since) as Array<{ state: TransactionState; n: number }>;
    for (const row of rows) counts[row.state] = row.n;
    return counts;
  }

  /** A transaction's instances in request order; `notCommitted` keeps the failed and undecided ones only. */
  instances(id: number, filter: { notCommitted?: boolean } = {}): InstanceRecord[] {
    const where = filter.notCommitted ? ` AND (outcome IS NULL OR outcome = 'failed')` : '';
    const rows = this.db
      .prepare(`SELECT seq, sop_class_uid, sop_instance_uid, outcome, failure_reason, stored_sop_class_uid FROM instances WHERE transaction_id = ?${where} ORDER BY seq`)
      .all(id) as Array<{ seq: number; sop_class_uid: string; sop_instance_uid: string; outcome: 'committed' | 'failed' | null; failure_reason: FailureReasonCode | null; stored_sop_class_uid: string | null }>;
    return rows.map((r) => ({ seq: r.seq, sopClassUid: r.sop_class_uid, sopInstanceUid: r.sop_instance_uid, outcome: r.outcome, failureReason: r.failure_reason, storedSopClassUid: r.stored_sop_class_uid }));
  }

  undecidedInstances(id: number): InstanceRecord[] {
    const classes = new Interner();
    const rows = this.db
      .prepare('SELECT seq, sop_class_uid, sop_instance_uid FROM instances WHERE transaction_id = ? AND outcome IS NULL ORDER BY seq')
      .raw()
      .iterate(id) as IterableIterator<[number, string, string]>;
    const undecided: InstanceRecord[] = [];
    for (const [seq, sopClassUid, sopInstanceUid] of rows) undecided.push({ seq, sopClassUid: classes.intern(sopClassUid), sopInstanceUid, outcome: null, failureReason: null });
    return undecided;
  }

  /**
   * Saves the failures, then marks every instance still undecided as committed, in one statement: the
   * common end of a verification, where per-row updates would cost 100,000 statements.
   */
  saveFinalOutcomes(id: number, failures: readonly FailureRecord[]): void {
    const fail = this.db.prepare(`UPDATE instances SET outcome = 'failed', failure_reason = ?, stored_sop_class_uid = ? WHERE transaction_id = ? AND seq = ? AND outcome IS NULL`);
    this.db.transaction(() => {
      for (const f of failures) fail.run(f.failureReason, f.storedSopClassUid ?? null, id, f.seq);
      this.db.prepare(`UPDATE instances SET outcome = 'committed' WHERE transaction_id = ? AND outcome IS NULL`).run(id);
    })();
  }

  /** Saves final judgements as they are made, so a restart does not redo decided instances. */
  saveOutcomes(id: number, outcomes: ReadonlyArray<{ seq: number; outcome: 'committed' } | ({ outcome: 'failed' } & FailureRecord)>): void {
    const update = this.db.prepare('UPDATE instances SET outcome = ?, failure_reason = ?, stored_sop_class_uid = ? WHERE transaction_id = ? AND seq = ? AND outcome IS NULL');
    this.db.transaction(() => {
      for (const o of outcomes) {
        if (o.outcome === 'failed') update.run('failed', o.failureReason, o.storedSopClassUid ?? null, id, o.seq);
        else update.run('committed', null, null, id, o.seq);
      }
    })();
  }

  /** RECEIVED -> VERIFIED once every instance has an outcome. */
  completeVerification(id: number, now: number): void {
    this.db.transaction(() => {
      const record = this.get(id);
      if (!record) throw new Error(`no transaction ${id}`);
      const { undecided } = this.db.prepare('SELECT COUNT(*) AS undecided FROM instances WHERE transaction_id = ? AND outcome IS NULL').get(id) as { undecided: number };
      if (undecided > 0) throw new Error(`transaction ${id} still has ${undecided} undecided instances`);
      this.reopenForDelivery(id, record.state);
      this.db.prepare('UPDATE transactions SET verified_at = ? WHERE id = ?').run(now, id);
    }).immediate();
  }

  verdict(id: number): Verdict {
    const committed: SopReference[] = [];
    const failed: FailedSopReference[] = [];
    const rows = this.db
      .prepare('SELECT sop_class_uid, sop_instance_uid, outcome, failure_reason FROM instances WHERE transaction_id = ? ORDER BY seq')
      .raw()
      .iterate(id) as IterableIterator<[string, string, 'committed' | 'failed' | null, FailureReasonCode | null]>;
    const classes = new Interner();
    for (const [classUid, sopInstanceUid, outcome, failureReason] of rows) {
      const sopClassUid = classes.intern(classUid);
      if (outcome === 'committed') committed.push({ sopClassUid, sopInstanceUid });
      else if (outcome === 'failed') failed.push({ sopClassUid, sopInstanceUid, failureReason: failureReason ?? FailureReason.ProcessingFailure });
      else throw new Error(`transaction ${id} has an undecided instance`);
    }
    return { committed, failed };
  }

  /** How many instances ended committed, and failed per reason (for metrics). */
  outcomeCounts(id: number): Array<{ outcome: 'committed' | 'failed'; failureReason: FailureReasonCode | null; count: number }> {
    return this.db
      .prepare(`SELECT outcome, failure_reason AS failureReason, COUNT(*) AS count FROM instances WHERE transaction_id = ? AND outcome IS NOT NULL GROUP BY outcome, failure_reason`)
      .all(id) as Array<{ outcome: 'committed' | 'failed'; failureReason: FailureReasonCode | null; count: number }>;
  }

  /** Records one delivery attempt and moves the state: REPORTED, or DELIVERY_RETRY at nextAttemptAt. */
  recordDelivery(id: number, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): void {
    this.db.transaction(() => {
      const record = this.get(id);
      if (!record) throw new Error(`no transaction ${id}`);
      this.db
        .prepare('INSERT INTO delivery_attempts (transaction_id, at, via, ok, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)')
        .run(id, attempt.at, attempt.via, attempt.ok ? 1 : 0, attempt.error, attempt.durationMs);
      if (attempt.ok) {
        this.setState(id, record.state, 'REPORTED', ', reported_at = ?, delivery_attempts = delivery_attempts + 1, next_attempt_at = NULL, last_error = NULL', attempt.at);
      } else {
        this.setState(id, record.state, 'DELIVERY_RETRY', ', delivery_attempts = delivery_attempts + 1, next_attempt_at = ?, last_error = ?', nextAttemptAt ?? attempt.at, attempt.error);
      }
    }).immediate();
  }

  deliveryAttempts(id: number): DeliveryAttemptRecord[] {
    const rows = this.db.prepare('SELECT at, via, ok, error, duration_ms FROM delivery_attempts WHERE transaction_id = ? ORDER BY id').all(id) as Array<{ at: number; via: DeliveryAttemptRecord['via']; ok: number; error: string | null; duration_ms: number }>;
    return rows.map((r) => ({ at: r.at, via: r.via, ok: r.ok === 1, error: r.error, durationMs: r.duration_ms }));
  }

  /** Transactions still being verified (a restart resumes them). */
  receivedIds(): number[] {
    return (this.db.prepare(`SELECT id FROM transactions WHERE state = 'RECEIVED' ORDER BY id`).all() as Array<{ id: number }>).map((r) => r.id);
  }

  /** Transactions whose report is due now: fresh verdicts, and retries whose backoff has elapsed. */
  dueForDelivery(now: number): number[] {
    return (
      this.db
        .prepare(`SELECT id FROM transactions WHERE state = 'VERIFIED' OR (state = 'DELIVERY_RETRY' AND next_attempt_at <= ?) ORDER BY id`)
        .all(now) as Array<{ id: number }>
    ).map((r) => r.id);
  }

  /** Reports not delivered within their lifetime: EXPIRED, returned for loud logging. */
  expireOverdue(now: number): TransactionRecord[] {
    return this.db.transaction(() => {
      const rows = this.db
        .prepare(`SELECT * FROM transactions WHERE state IN ('VERIFIED', 'DELIVERY_RETRY') AND expires_at <= ?`)
        .all(now) as TransactionRow[];
      for (const row of rows) this.setState(row.id, row.state, 'EXPIRED', ', expired_at = ?, next_attempt_at = NULL', now);
      return rows.map((row) => toRecord({ ...row, state: 'EXPIRED', expired_at: now }));
    }).immediate();
  }

  /** Operator's or modality's "send it again": a finished or retrying transaction goes back to VERIFIED. */
  redeliver(id: number, now: number, ttlMs: number): TransactionRecord | undefined {
    return this.db.transaction(() => {
      const record = this.get(id);
      if (!record || record.state === 'RECEIVED' || record.state === 'VERIFIED') return record;
      this.reopenForDelivery(id, record.state);
      this.db.prepare('UPDATE transactions SET expires_at = MAX(expires_at, ?) WHERE id = ?').run(now + ttlMs, id);
      return this.get(id);
    }).immediate();
  }

  /** The last peer list that loaded, so a restart while Orthanc is down still knows where reports go. */
  savePeers(peers: readonly PeerEntry[]): void {
    const insert = this.db.prepare('INSERT INTO known_peers (ae_title, host, port, tls, source) VALUES (?, ?, ?, ?, ?)');
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM known_peers').run();
      for (const p of peers) insert.run(p.aeTitle, p.host, p.port, p.tls ? 1 : 0, p.source);
    })();
  }

  loadPeers(): PeerEntry[] {
    const rows = this.db.prepare('SELECT ae_title, host, port, tls, source FROM known_peers').all() as Array<{ ae_title: string; host: string; port: number; tls: number; source: PeerEntry['source'] }>;
    return rows.map((r) => ({ aeTitle: r.ae_title, host: r.host, port: r.port, tls: r.tls === 1, source: r.source }));
  }

  /** Deletes finished transactions received before the cutoff; returns how many. */
  purgeFinished(receivedBefore: number): number {
    return this.db.prepare(`DELETE FROM transactions WHERE state IN ('REPORTED', 'EXPIRED') AND received_at < ?`).run(receivedBefore).changes;
  }
}
