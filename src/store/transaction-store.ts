/**
 * Durable transaction store: embedded SQLite (better-sqlite3) in STGCMT_DATA_DIR. Calls are synchronous on
 * purpose: when recordRequest returns, the request is on disk (WAL, synchronous=FULL by default), and only
 * then does the SCP answer the N-ACTION.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  EventType,
  FailureReason,
  type FailedSopReference,
  type FailureReasonCode,
  type SopReference,
  type Verdict,
} from '../commitment/types.js';
import type { DeliveryErrorCategory } from '../dicom/event-report.js';
import type { PeerEntry } from '../peers/peer-directory.js';
import { Interner } from '../util/intern.js';
import { EXIT_STORE_UNUSABLE, isStorageFault, StoreStartError, StoreUnavailableError } from './errors.js';
import { IllegalTransitionError, statesAccepting, transitionOrThrow, type TransactionEvent, type TransactionState } from '../commitment/lifecycle.js';
import type { WorkKind } from '../transactions/repository.js';

import type {
  InstanceOutcomeFilter,
  CountedPage,
  DeliveryAttemptRecord,
  FailureCount,
  FailureRecord,
  HourlyActivity,
  ModalityBacklog,
  OutcomeCount,
  SearchFilter,
  StateCounts,
  InstanceRecord,
  ListFilter,
  NewRequest,
  RecordOutcome,
  StudyRecord,
  TransactionRecord,
  VanishedInstance,
} from '../transactions/records.js';

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
  last_error_category TEXT,
  protected_at INTEGER,
  vanished_count INTEGER NOT NULL DEFAULT 0,
  watched_at INTEGER,
  watch_after_seq INTEGER NOT NULL DEFAULT -1,
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
  vanished_at INTEGER,
  PRIMARY KEY (transaction_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivery_attempts (
  id INTEGER PRIMARY KEY,
  transaction_id INTEGER NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
  at INTEGER NOT NULL,
  via TEXT NOT NULL,
  ok INTEGER NOT NULL,
  error TEXT,
  duration_ms INTEGER NOT NULL,
  category TEXT
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_transaction ON delivery_attempts (transaction_id);
CREATE TABLE IF NOT EXISTS transaction_studies (
  transaction_id INTEGER NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
  study_uid TEXT NOT NULL,
  orthanc_study_id TEXT,
  patient_id TEXT,
  patient_name TEXT,
  patient_name_key TEXT,
  study_date TEXT,
  study_description TEXT,
  accession_number TEXT,
  modalities TEXT,
  PRIMARY KEY (transaction_id, study_uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS known_peers (
  ae_title TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  tls INTEGER NOT NULL,
  source TEXT NOT NULL
);
`;

/** Columns a state change may set besides the state (the names are SQL; their values go as parameters). */
type TransactionColumn =
  | 'committed_count'
  | 'failed_count'
  | 'event_type_id'
  | 'next_attempt_at'
  | 'expired_at'
  | 'protected_at'
  | 'reported_at'
  | 'delivery_attempts'
  | 'last_error'
  | 'last_error_category';


/** Where the lifecycle lets a report expire. */
const EXPIRABLE = statesAccepting('lifetime-ended');

export { nameKey } from './name-key.js';
import { nameKey } from './name-key.js';
import { OUTCOME_CONDITIONS, toInstance, toRecord, toStudy, workCondition, type InstanceRow, type StudyRow, type TransactionRow } from './rows.js';

/**
 * The WHERE clause of a list or search. Every search term goes through an index (instances by SOP
 * Instance UID, studies by UID, patient ID, name key, accession number): see migration 4.
 */
function listWhere(filter: Omit<ListFilter, 'limit' | 'offset'>): { clause: string; params: unknown[] } {
  const conditions: Array<[string, ...unknown[]]> = [];
  if (filter.state) conditions.push(['state = ?', filter.state]);
  if (filter.callingAeTitle) conditions.push(['calling_aet = ?', filter.callingAeTitle]);
  if (filter.receivedFrom !== undefined) conditions.push(['received_at >= ?', filter.receivedFrom]);
  if (filter.receivedTo !== undefined) conditions.push(['received_at < ?', filter.receivedTo]);
  if (filter.transactionUid) conditions.push(['transaction_uid = ?', filter.transactionUid]);
  if (filter.sopInstanceUid) conditions.push(['id IN (SELECT transaction_id FROM instance_search WHERE sop_instance_uid = ?)', filter.sopInstanceUid]);
  if (filter.studyInstanceUid) conditions.push(['id IN (SELECT transaction_id FROM transaction_studies WHERE study_uid = ?)', filter.studyInstanceUid]);
  if (filter.accessionNumber) conditions.push(['id IN (SELECT transaction_id FROM transaction_studies WHERE accession_number = ?)', filter.accessionNumber]);
  if (filter.patient) {
    // A name prefix as a range on the key index ("SMITH" matches "SMITH JANE"): no LIKE, no table scan.
    const key = nameKey(filter.patient);
    conditions.push([
      'id IN (SELECT transaction_id FROM transaction_studies WHERE patient_id = ? UNION SELECT transaction_id FROM transaction_studies WHERE patient_name_key >= ? AND patient_name_key < ?)',
      filter.patient,
      key,
      `${key}\uffff`,
    ]);
  }
  const clause = conditions.length > 0 ? `WHERE ${conditions.map(([sql]) => sql).join(' AND ')}` : '';
  return { clause, params: conditions.flatMap(([, ...values]) => values) };
}

// Defined with the transition rules; re-exported for the callers that catch it from here.
export { IllegalTransitionError };

/** Rows per multi-row INSERT (4 parameters each, far below SQLite's 32,766 limit). */
const INSERT_ROWS = 500;

export const STORE_FILE = 'stgcmt.sqlite';
/** Prefix of the copies made of a store deleted under a running sidecar (see StoreWatch). */
export const RESCUED_PREFIX = `${STORE_FILE}.rescued-`;

/** Whether the store can take writes, and why not. */
export interface StoreHealth {
  readonly ok: boolean;
  readonly reason: string;
}

/** An error as one short line (quick_check reports one line per problem found). */
function errorText(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, '; ');
  const text = typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message;
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

export class TransactionStore {
  private readonly db: Database.Database;
  private readonly insertInstance: Database.Statement;
  /** The same insert for INSERT_ROWS rows at once: a 100,000-instance request is on the N-ACTION-RSP path. */
  private readonly insertInstances: Database.Statement;

  /** The file we opened (device and inode), to notice it deleted or replaced under us. */
  private readonly identity: { dev: number; ino: number };
  /** The last write failure that means the store cannot be written (cleared by a successful probe). */
  private writeFailure: { at: number; error: string } | undefined;
  private lastProbeAt: number | undefined;

  private constructor(
    readonly path: string,
    options: StoreOptions,
  ) {
    this.db = new Database(path);
    const { dev, ino } = statSync(path);
    this.identity = { dev, ino };
    try {
      // A damaged store must stop the start, not answer every N-ACTION with 0110H later. quick_check reads
      // every page (linear in the size of the store) but skips the index-to-table cross-checks.
      const check = this.db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw Object.assign(new Error(String(check)), { code: 'SQLITE_CORRUPT' });
    } catch (error) {
      this.db.close();
      throw error;
    }
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
    const hasColumn = (table: string, name: string): boolean => (this.db.pragma(`table_info(${table})`) as Array<{ name: string }>).some((c) => c.name === name);
    if (version < 2) {
      // Failure categories, so that a refused role is told apart from an outage.
      if (!hasColumn('delivery_attempts', 'category')) this.db.exec('ALTER TABLE delivery_attempts ADD COLUMN category TEXT');
      if (!hasColumn('transactions', 'last_error_category')) this.db.exec('ALTER TABLE transactions ADD COLUMN last_error_category TEXT');
      this.db.pragma('user_version = 2');
    }
    if (version < 3) {
      // Level 2 (issue 12): protection before the report, and the watch over what was reported committed.
      const added: Array<[string, string, string]> = [
        ['transactions', 'protected_at', 'INTEGER'],
        ['transactions', 'vanished_count', 'INTEGER NOT NULL DEFAULT 0'],
        ['transactions', 'watched_at', 'INTEGER'],
        ['transactions', 'watch_after_seq', 'INTEGER NOT NULL DEFAULT -1'],
        ['instances', 'vanished_at', 'INTEGER'],
      ];
      this.db.transaction(() => {
        for (const [table, column, type] of added) if (!hasColumn(table, column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
        this.db.pragma('user_version = 3');
      })();
    }
    // After the columns exist (an older store gets them just above). Partial: only the rare vanished rows.
    this.db.exec('CREATE INDEX IF NOT EXISTS instances_vanished ON instances (vanished_at) WHERE vanished_at IS NOT NULL');
    this.db.exec('CREATE INDEX IF NOT EXISTS transactions_by_report ON transactions (reported_at) WHERE reported_at IS NOT NULL');
    if ((this.db.pragma('user_version', { simple: true }) as number) < 4) {
      // Search (issue 13): which transaction asked for this image, study, patient, accession number. The
      // studies table is in SCHEMA; these make each search a few index lookups at 1M instances. Images are
      // found through instance_search (SOP Instance UID -> transaction), filled after the N-ACTION-RSP, a
      // slice at a time (indexForSearch): an index on instances itself made recording 10,000 random UIDs
      // take 130 ms instead of 10 ms, on the path of the N-ACTION-RSP.
      const columns = (this.db.pragma('table_info(transactions)') as Array<{ name: string }>).map((c) => c.name);
      if (!columns.includes('search_indexed')) this.db.exec('ALTER TABLE transactions ADD COLUMN search_indexed INTEGER NOT NULL DEFAULT 0');
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS instance_search (
          sop_instance_uid TEXT NOT NULL,
          transaction_id INTEGER NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
          PRIMARY KEY (sop_instance_uid, transaction_id)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS instance_search_by_transaction ON instance_search (transaction_id);
        CREATE INDEX IF NOT EXISTS studies_by_study_uid ON transaction_studies (study_uid);
        CREATE INDEX IF NOT EXISTS studies_by_patient_id ON transaction_studies (patient_id);
        CREATE INDEX IF NOT EXISTS studies_by_patient_name ON transaction_studies (patient_name_key);
        CREATE INDEX IF NOT EXISTS studies_by_accession ON transaction_studies (accession_number);
        CREATE INDEX IF NOT EXISTS transactions_by_aet_time ON transactions (calling_aet, received_at);
        CREATE INDEX IF NOT EXISTS transactions_unindexed ON transactions (id) WHERE search_indexed = 0;
      `);
      // Transactions recorded before: searchable at once (one pass over the instances, at this start only).
      this.db.exec(`INSERT OR IGNORE INTO instance_search (sop_instance_uid, transaction_id) SELECT sop_instance_uid, transaction_id FROM instances`);
      this.db.exec('UPDATE transactions SET search_indexed = 1');
      this.db.pragma('user_version = 4');
    }
  }

  /**
   * Opens (or creates) the store in dataDir. A damaged store, or a missing one whose rescued copy is
   * waiting beside it, stops the start with a StoreStartError.
   */
  static open(dataDir: string, options: StoreOptions): TransactionStore {
    mkdirSync(dataDir, { recursive: true });
    const path = join(dataDir, STORE_FILE);
    if (!existsSync(path)) {
      const rescued = readdirSync(dataDir).filter((name) => name.startsWith(RESCUED_PREFIX)).sort();
      if (rescued.length > 0) {
        const copy = join(dataDir, rescued.at(-1)!);
        throw new StoreStartError(
          `${path} is missing, but ${copy} holds the transactions rescued when it was deleted under a running sidecar: move it to ${path} to keep them, or delete it to start empty`,
          EXIT_STORE_UNUSABLE,
        );
      }
    }
    try {
      return new TransactionStore(path, options);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') {
        throw new StoreStartError(`the store ${path} is damaged (${errorText(error)}): restore it from a backup, or move it away to start empty`, EXIT_STORE_UNUSABLE);
      }
      throw new StoreStartError(`the store ${path} cannot be opened (${errorText(error)})`, EXIT_STORE_UNUSABLE);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  /** Why the file we write is no longer the one at our path (deleted, replaced), or undefined. */
  fileProblem(): string | undefined {
    try {
      const { dev, ino } = statSync(this.path);
      if (dev !== this.identity.dev || ino !== this.identity.ino) return `${this.path} was replaced by another file while the sidecar runs`;
      return undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return `${this.path} was deleted while the sidecar runs`;
      return `${this.path} cannot be checked (${errorText(error)})`;
    }
  }

  /** One tiny durable write, to learn whether the store can still be written (disk full, I/O errors). */
  probeWrite(now: number): void {
    this.lastProbeAt = now;
    try {
      this.db.prepare('INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at').run(now);
      this.writeFailure = undefined;
    } catch (error) {
      this.writeFailure = { at: now, error: errorText(error) };
    }
  }

  /** Notes a write that failed for a reason of the storage (not of the statement), for health(). */
  private noteWriteError(error: unknown): void {
    if (isStorageFault(error)) this.writeFailure = { at: Date.now(), error: errorText(error) };
  }

  health(): StoreHealth {
    if (!this.db.open) return { ok: false, reason: 'closed' };
    const problem = this.fileProblem();
    if (problem) return { ok: false, reason: problem };
    if (this.writeFailure) return { ok: false, reason: `cannot write ${this.path}: ${this.writeFailure.error}` };
    const probed = this.lastProbeAt === undefined ? 'not probed yet' : `write probe ${Math.round((Date.now() - this.lastProbeAt) / 1000)} s ago`;
    return { ok: true, reason: `writable (${probed})` };
  }

  /** Copies the live store (also when its file was deleted: we still hold it open) to `destination`. */
  async copyTo(destination: string): Promise<void> {
    await this.db.backup(destination);
  }

  /**
   * Durably records an N-ACTION (one SQLite transaction), folding a re-sent Transaction UID into the first.
   * Nothing is acknowledged into a file that is no longer at our path: it would be gone at the next start.
   */
  recordRequest(input: NewRequest): RecordOutcome {
    const before = this.fileProblem();
    if (before) throw new StoreUnavailableError(before);
    let outcome: RecordOutcome;
    try {
      outcome = this.recordRequestNow(input);
    } catch (error) {
      this.noteWriteError(error);
      throw error;
    }
    // Deleted while we wrote: the request is in the orphaned file only. Not acknowledged; the modality asks again.
    const after = this.fileProblem();
    if (after) throw new StoreUnavailableError(after);
    return outcome;
  }

  private recordRequestNow(input: NewRequest): RecordOutcome {
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
        this.db.prepare('INSERT OR IGNORE INTO instance_search (sop_instance_uid, transaction_id) VALUES (?, ?)').run(reference.sopInstanceUid, existing.id);
      }
      this.db
        .prepare('UPDATE transactions SET instance_count = ?, expires_at = MAX(expires_at, ?) WHERE id = ?')
        .run(seq, input.now + input.ttlMs, existing.id);
      // Anything past verification is reported again: the modality asked again, so it did not get (or keep) it.
      if (existing.state !== 'RECEIVED') this.reopenForDelivery(existing.id, existing.state, { type: 'request-repeated' });
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
    if (input.decidedAtIntake && input.decidedAtIntake.size > 0) {
      const fail = this.db.prepare(`UPDATE instances SET outcome = 'failed', failure_reason = ? WHERE transaction_id = ? AND seq = ?`);
      for (const [index, reason] of input.decidedAtIntake) fail.run(reason, id, index);
    }
    return id;
  }

  /**
   * Moves a transaction by the lifecycle's rules (commitment/lifecycle.ts): the new state comes from
   * `event`, never from the caller; a move the rules refuse throws IllegalTransitionError. `changes`: other
   * columns set with it (names from this file, values as parameters).
   */
  private apply(id: number, from: TransactionState, event: TransactionEvent, changes: Partial<Record<TransactionColumn, unknown>> = {}): void {
    const { state } = transitionOrThrow(from, event);
    const columns = Object.keys(changes) as TransactionColumn[];
    this.db.prepare(`UPDATE transactions SET state = ?${columns.map((c) => `, ${c} = ?`).join('')} WHERE id = ?`).run(state, ...columns.map((c) => changes[c]), id);
  }

  /** Back to VERIFIED with the verdict counted again: a fresh verdict, a repeat, a redelivery, a loss found. */
  private reopenForDelivery(id: number, from: TransactionState, event: TransactionEvent): void {
    // A report sent again never repeats "committed" about an instance known to have left Orthanc since.
    this.db.prepare(`UPDATE instances SET outcome = 'failed', failure_reason = ? WHERE transaction_id = ? AND outcome = 'committed' AND vanished_at IS NOT NULL`).run(FailureReason.NoSuchObjectInstance, id);
    const counts = this.db
      .prepare(`SELECT SUM(outcome = 'committed') AS committed, SUM(outcome = 'failed') AS failed FROM instances WHERE transaction_id = ?`)
      .get(id) as { committed: number | null; failed: number | null };
    const failed = counts.failed ?? 0;
    // protected_at cleared: the report about to go out needs its own protection (STGCMT_PROTECT).
    this.apply(id, from, event, {
      committed_count: counts.committed ?? 0,
      failed_count: failed,
      event_type_id: failed > 0 ? EventType.SomeFailed : EventType.AllCommitted,
      next_attempt_at: null,
      expired_at: null,
      protected_at: null,
    });
  }

  get(id: number): TransactionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM transactions WHERE id = ?').get(id) as TransactionRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** A transaction is identified by its calling AE title and Transaction UID (the store's unique key). */
  findByKey(callingAeTitle: string, transactionUid: string): TransactionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM transactions WHERE calling_aet = ? AND transaction_uid = ?').get(callingAeTitle, transactionUid) as TransactionRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** Every transaction with this Transaction UID, oldest first: two AEs may reuse one. */
  findAllByUid(transactionUid: string): TransactionRecord[] {
    return (this.db.prepare('SELECT * FROM transactions WHERE transaction_uid = ? ORDER BY id').all(transactionUid) as TransactionRow[]).map(toRecord);
  }

  list(filter: ListFilter): CountedPage<TransactionRecord> {
    const { clause, params } = listWhere(filter);
    const { total } = this.db.prepare(`SELECT COUNT(*) AS total FROM transactions ${clause}`).get(...params) as { total: number };
    const rows = this.db
      .prepare(`SELECT * FROM transactions ${clause} ORDER BY received_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...params, filter.limit, filter.offset) as TransactionRow[];
    return { total, items: rows.map(toRecord) };
  }

  /** The transactions a filter matches, newest first, read row by row (the CSV export). */
  *iterate(filter: SearchFilter, max: number): Generator<TransactionRecord> {
    const { clause, params } = listWhere(filter);
    const rows = this.db.prepare(`SELECT * FROM transactions ${clause} ORDER BY received_at DESC, id DESC LIMIT ?`).iterate(...params, max) as IterableIterator<TransactionRow>;
    for (const row of rows) yield toRecord(row);
  }

  /**
   * The transactions a filter matches that come after `after` in the list's order (newest first), at most
   * `limit`: keyset paging, so the export reads 100,000 rows a page at a time, each page as cheap as the
   * first, and holds no statement open between pages.
   */
  listAfter(filter: SearchFilter, after: { readonly receivedAt: number; readonly id: number } | undefined, limit: number): TransactionRecord[] {
    const { clause, params } = listWhere(filter);
    const keyset = after ? `${clause ? `${clause} AND` : 'WHERE'} (received_at < ? OR (received_at = ? AND id < ?))` : clause;
    const keyParams = after ? [after.receivedAt, after.receivedAt, after.id] : [];
    return (this.db.prepare(`SELECT * FROM transactions ${keyset} ORDER BY received_at DESC, id DESC LIMIT ?`).all(...params, ...keyParams, limit) as TransactionRow[]).map(toRecord);
  }

  /** How a SOP Instance UID fared in each transaction that listed it (search by instance). */
  instanceOutcomesByUid(ids: readonly number[], sopInstanceUid: string): Map<number, InstanceRecord[]> {
    const found = new Map<number, InstanceRecord[]>();
    if (ids.length === 0) return found;
    const rows = this.db
      .prepare(`SELECT transaction_id, seq, sop_class_uid, sop_instance_uid, outcome, failure_reason, stored_sop_class_uid, vanished_at FROM instances WHERE sop_instance_uid = ? AND transaction_id IN (${ids.map(() => '?').join(', ')}) ORDER BY seq`)
      .all(sopInstanceUid, ...ids) as Array<InstanceRow & { transaction_id: number }>;
    for (const row of rows) {
      const list = found.get(row.transaction_id) ?? [];
      list.push(toInstance(row));
      found.set(row.transaction_id, list);
    }
    return found;
  }

  /**
   * Makes a transaction's images findable by SOP Instance UID, `limit` instances at a time from seq >
   * afterSeq; returns the last seq done, or undefined when the transaction is done (then marked so). The
   * verifier calls it after the N-ACTION-RSP, yielding between slices: 100,000 UIDs are not one long stall.
   */
  indexForSearch(id: number, afterSeq = -1, limit = 5000): number | undefined {
    return this.db.transaction((): number | undefined => {
      const row = this.db.prepare('SELECT search_indexed FROM transactions WHERE id = ?').get(id) as { search_indexed: number } | undefined;
      if (!row || row.search_indexed === 1) return undefined;
      this.db
        .prepare(
          `INSERT OR IGNORE INTO instance_search (sop_instance_uid, transaction_id)
           SELECT sop_instance_uid, transaction_id FROM instances WHERE transaction_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
        )
        .run(id, afterSeq, limit);
      const next = this.db.prepare('SELECT seq FROM instances WHERE transaction_id = ? AND seq > ? ORDER BY seq LIMIT 1 OFFSET ?').get(id, afterSeq, limit - 1) as { seq: number } | undefined;
      if (!next) {
        this.db.prepare('UPDATE transactions SET search_indexed = 1 WHERE id = ?').run(id);
        return undefined;
      }
      return next.seq;
    })();
  }

  /** Replaces a transaction's studies (read from Orthanc after its verdict). */
  saveStudies(id: number, studies: readonly StudyRecord[]): void {
    const insert = this.db.prepare(
      `INSERT OR REPLACE INTO transaction_studies (transaction_id, study_uid, orthanc_study_id, patient_id, patient_name, patient_name_key, study_date, study_description, accession_number, modalities)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM transaction_studies WHERE transaction_id = ?').run(id);
      for (const s of studies) {
        insert.run(id, s.studyInstanceUid, s.orthancStudyId, s.patientId, s.patientName, s.patientName === null ? null : nameKey(s.patientName), s.studyDate, s.studyDescription, s.accessionNumber, s.modalities);
      }
    })();
  }

  /** The studies of these transactions, by transaction id. */
  studiesOf(ids: readonly number[]): Map<number, StudyRecord[]> {
    const found = new Map<number, StudyRecord[]>();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const rows = this.db
        .prepare(`SELECT * FROM transaction_studies WHERE transaction_id IN (${chunk.map(() => '?').join(', ')}) ORDER BY study_date, study_uid`)
        .all(...chunk) as StudyRow[];
      for (const row of rows) {
        const list = found.get(row.transaction_id) ?? [];
        list.push(toStudy(row));
        found.set(row.transaction_id, list);
      }
    }
    return found;
  }

  /** Transactions received since `since`, by hour of receipt (charts of the last 24 h and 7 days). */
  hourlyActivity(since: number): HourlyActivity[] {
    const rows = this.db
      .prepare(
        `SELECT (received_at / 3600000) * 3600000 AS hour, instance_count, COALESCE(failed_count, 0) AS failed, CASE WHEN reported_at IS NULL THEN NULL ELSE reported_at - received_at END AS latency
         FROM transactions WHERE received_at >= ? ORDER BY received_at, id`,
      )
      .raw()
      .iterate(since) as IterableIterator<[number, number, number, number | null]>;
    const hours = new Map<number, { transactions: number; withFailures: number; instances: number; failedInstances: number; reportLatenciesMs: number[] }>();
    for (const [hour, instances, failed, latency] of rows) {
      let bucket = hours.get(hour);
      if (!bucket) hours.set(hour, (bucket = { transactions: 0, withFailures: 0, instances: 0, failedInstances: 0, reportLatenciesMs: [] }));
      bucket.transactions++;
      if (failed > 0) bucket.withFailures++;
      bucket.instances += instances;
      bucket.failedInstances += failed;
      if (latency !== null) bucket.reportLatenciesMs.push(latency);
    }
    return [...hours].map(([hourStart, b]) => ({ hourStart, ...b })).sort((a, b) => a.hourStart - b.hourStart);
  }

  /** Failed instances by reason, of transactions received since `since`. */
  failuresByReason(since: number): FailureCount[] {
    return this.db
      .prepare(
        `SELECT i.failure_reason AS failureReason, COUNT(*) AS count FROM transactions t JOIN instances i ON i.transaction_id = t.id
         WHERE t.received_at >= ? AND t.failed_count > 0 AND i.outcome = 'failed' GROUP BY i.failure_reason ORDER BY count DESC, i.failure_reason`,
      )
      .all(since) as FailureCount[];
  }

  /**
   * Per calling AE with reports not delivered yet: how many, the oldest verdict waiting, and the last
   * successful delivery to it (for "modality unreachable since …").
   */
  pendingByModality(): ModalityBacklog[] {
    return this.db
      .prepare(
        `SELECT p.calling_aet AS callingAeTitle, p.pending, p.oldestVerifiedAt,
                (SELECT MAX(t.reported_at) FROM transactions t WHERE t.calling_aet = p.calling_aet AND t.reported_at IS NOT NULL) AS lastDeliveredAt
         FROM (SELECT calling_aet, COUNT(*) AS pending, MIN(verified_at) AS oldestVerifiedAt
               FROM transactions WHERE state IN ('VERIFIED', 'DELIVERY_RETRY') GROUP BY calling_aet) p
         ORDER BY p.calling_aet`,
      )
      .all() as ModalityBacklog[];
  }

  countsByState(since: number): StateCounts {
    const counts: StateCounts = { RECEIVED: 0, VERIFIED: 0, DELIVERY_RETRY: 0, REPORTED: 0, EXPIRED: 0 };
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n FROM transactions WHERE received_at >= ? GROUP BY state').all(since) as Array<{ state: TransactionState; n: number }>;
    for (const row of rows) counts[row.state] = row.n;
    return counts;
  }

  /** All of a transaction's instances in request order (tests and small transactions; the API pages). */
  instances(id: number, filter: { notCommitted?: boolean } = {}): InstanceRecord[] {
    const rows = this.db
      .prepare(`SELECT seq, sop_class_uid, sop_instance_uid, outcome, failure_reason, stored_sop_class_uid, vanished_at FROM instances WHERE transaction_id = ?${OUTCOME_CONDITIONS[filter.notCommitted ? 'not-committed' : 'all']} ORDER BY seq`)
      .all(id) as InstanceRow[];
    return rows.map(toInstance);
  }

  /**
   * One page of a transaction's instances in request order: those with seq > afterSeq (keyset paging on the
   * primary key, so a page costs the same at the start and at the end of 200,000 instances).
   */
  instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): InstanceRecord[] {
    const rows = this.db
      .prepare(
        `SELECT seq, sop_class_uid, sop_instance_uid, outcome, failure_reason, stored_sop_class_uid, vanished_at FROM instances
         WHERE transaction_id = ? AND seq > ?${OUTCOME_CONDITIONS[page.outcome]} ORDER BY seq LIMIT ?`,
      )
      .all(id, page.afterSeq, page.limit) as InstanceRow[];
    return rows.map(toInstance);
  }

  /** Undecided instances in request order; `page` reads a slice of them (seq > afterSeq). */
  undecidedInstances(id: number, page: { afterSeq: number; limit: number } = { afterSeq: -1, limit: -1 }): InstanceRecord[] {
    const classes = new Interner();
    const rows = this.db
      .prepare('SELECT seq, sop_class_uid, sop_instance_uid FROM instances WHERE transaction_id = ? AND outcome IS NULL AND seq > ? ORDER BY seq LIMIT ?')
      .raw()
      .iterate(id, page.afterSeq, page.limit) as IterableIterator<[number, string, string]>;
    const undecided: InstanceRecord[] = [];
    for (const [seq, sopClassUid, sopInstanceUid] of rows) undecided.push({ seq, sopClassUid: classes.intern(sopClassUid), sopInstanceUid, outcome: null, failureReason: null });
    return undecided;
  }

  hasUndecided(id: number): boolean {
    return this.db.prepare('SELECT 1 FROM instances WHERE transaction_id = ? AND outcome IS NULL LIMIT 1').get(id) !== undefined;
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
      this.reopenForDelivery(id, record.state, { type: 'verified' });
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
  outcomeCounts(id: number): OutcomeCount[] {
    return this.db
      .prepare(`SELECT outcome, failure_reason AS failureReason, COUNT(*) AS count FROM instances WHERE transaction_id = ? AND outcome IS NOT NULL GROUP BY outcome, failure_reason`)
      .all(id) as Array<{ outcome: 'committed' | 'failed'; failureReason: FailureReasonCode | null; count: number }>;
  }

  /** Records one delivery attempt and moves the state: REPORTED, or DELIVERY_RETRY at nextAttemptAt. */
  recordDelivery(id: number, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): void {
    try {
      this.recordDeliveryNow(id, attempt, nextAttemptAt);
    } catch (error) {
      this.noteWriteError(error);
      throw error;
    }
  }

  private recordDeliveryNow(id: number, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): void {
    this.db.transaction(() => {
      const record = this.get(id);
      if (!record) throw new Error(`no transaction ${id}`);
      this.db
        .prepare('INSERT INTO delivery_attempts (transaction_id, at, via, ok, error, duration_ms, category) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(id, attempt.at, attempt.via, attempt.ok ? 1 : 0, attempt.error, attempt.durationMs, attempt.ok ? null : (attempt.category ?? 'network'));
      const attempts = record.deliveryAttempts + 1;
      if (attempt.ok) {
        this.apply(id, record.state, { type: 'delivered' }, { reported_at: attempt.at, delivery_attempts: attempts, next_attempt_at: null, last_error: null, last_error_category: null });
      } else {
        const retryAt = nextAttemptAt ?? attempt.at;
        this.apply(id, record.state, { type: 'delivery-failed', retryAt }, { delivery_attempts: attempts, next_attempt_at: retryAt, last_error: attempt.error, last_error_category: attempt.category ?? 'network' });
      }
    }).immediate();
  }

  deliveryAttempts(id: number): DeliveryAttemptRecord[] {
    const rows = this.db.prepare('SELECT at, via, ok, error, duration_ms, category FROM delivery_attempts WHERE transaction_id = ? ORDER BY id').all(id) as Array<{
      at: number;
      via: DeliveryAttemptRecord['via'];
      ok: number;
      error: string | null;
      duration_ms: number;
      category: DeliveryErrorCategory | null;
    }>;
    // Attempts recorded before categories existed were all counted as outages.
    return rows.map((r) => ({ at: r.at, via: r.via, ok: r.ok === 1, error: r.error, durationMs: r.duration_ms, category: r.ok === 1 ? null : (r.category ?? 'network') }));
  }

  /** Transactions still being verified (a restart resumes them). */
  /** Transactions whose images are not all in the search index yet (a crash cut the indexing short). */
  unindexedIds(): number[] {
    return (this.db.prepare('SELECT id FROM transactions WHERE search_indexed = 0 ORDER BY id').all() as Array<{ id: number }>).map((r) => r.id);
  }

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
        .prepare(`SELECT * FROM transactions WHERE state IN (${EXPIRABLE.map(() => '?').join(', ')}) AND expires_at <= ?`)
        .all(...EXPIRABLE, now) as TransactionRow[];
      for (const row of rows) this.apply(row.id, row.state, { type: 'lifetime-ended' }, { expired_at: now, next_attempt_at: null });
      return rows.map((row) => toRecord({ ...row, state: 'EXPIRED', expired_at: now }));
    }).immediate();
  }

  /** Operator's or modality's "send it again": a finished or retrying transaction goes back to VERIFIED. */
  redeliver(id: number, now: number, ttlMs: number): TransactionRecord | undefined {
    return this.db.transaction(() => {
      const record = this.get(id);
      if (!record || record.state === 'RECEIVED' || record.state === 'VERIFIED') return record;
      this.reopenForDelivery(id, record.state, { type: 'redeliver-requested' });
      this.db.prepare('UPDATE transactions SET expires_at = MAX(expires_at, ?) WHERE id = ?').run(now + ttlMs, id);
      return this.get(id);
    }).immediate();
  }

  /** Ids with work of this kind (claims aside: see SqliteTransactionRepository), oldest first. */
  workIds(kind: WorkKind, now: number, limit: number, only?: number): number[] {
    const work = workCondition(kind, '@now');
    const rows = this.db
      .prepare(`SELECT id FROM transactions WHERE ${work}${only === undefined ? '' : ' AND id = @only'} ORDER BY id LIMIT @limit`)
      .raw()
      .all({ now, limit, ...(only === undefined ? {} : { only }) }) as Array<[number]>;
    return rows.map(([id]) => id);
  }

  /** Reports owed to this AE: VERIFIED or DELIVERY_RETRY, not expired, oldest request first. */
  pendingReportIds(callingAeTitle: string, now: number): number[] {
    const rows = this.db
      .prepare(`SELECT id FROM transactions WHERE calling_aet = ? AND ${workCondition('owed', '?')} AND expires_at > ? ORDER BY received_at, id`)
      .raw()
      .all(callingAeTitle, now) as Array<[number]>;
    return rows.map(([id]) => id);
  }

  /**
   * What a VERIFIED report commits was protected in Orthanc at `now`. `vanished`: committed instances found
   * gone while protecting (recycled between the verdict and the protection): they fail with 0112H, since
   * the report saying so has not been sent yet, and the counts and Event Type follow.
   */
  markProtected(id: number, now: number, vanished: readonly number[] = []): void {
    this.db.transaction(() => {
      const record = this.get(id);
      if (!record || record.state !== 'VERIFIED') throw new IllegalTransitionError(`transaction ${id}: protected while ${record?.state ?? 'missing'}`);
      if (vanished.length > 0) {
        const fail = this.db.prepare(`UPDATE instances SET outcome = 'failed', failure_reason = ? WHERE transaction_id = ? AND seq = ? AND outcome = 'committed'`);
        for (const seq of vanished) fail.run(FailureReason.NoSuchObjectInstance, id, seq);
        this.reopenForDelivery(id, record.state, { type: 'committed-instances-vanished' });
      }
      this.db.prepare('UPDATE transactions SET protected_at = ? WHERE id = ?').run(now, id);
    }).immediate();
  }

  /**
   * Reported transactions the watch should look at next: reported since `reportedSince`, with committed
   * instances not yet found missing; those whose pass is oldest (or never made, or left half-way) first.
   */
  transactionsToWatch(reportedSince: number, limit: number): Array<{ id: number; afterSeq: number }> {
    const rows = this.db
      .prepare(
        `SELECT id, watch_after_seq FROM transactions
         WHERE reported_at IS NOT NULL AND reported_at >= ?
           AND EXISTS (SELECT 1 FROM instances i WHERE i.transaction_id = transactions.id AND i.outcome = 'committed' AND i.vanished_at IS NULL)
         ORDER BY COALESCE(watched_at, 0), id LIMIT ?`,
      )
      .raw()
      .all(reportedSince, limit) as Array<[number, number]>;
    return rows.map(([id, afterSeq]) => ({ id, afterSeq }));
  }

  /** A transaction's committed instances not yet found missing, seq > afterSeq, in request order. */
  committedToWatch(id: number, afterSeq: number, limit: number): Array<{ seq: number; sopInstanceUid: string }> {
    const rows = this.db
      .prepare(`SELECT seq, sop_instance_uid FROM instances WHERE transaction_id = ? AND seq > ? AND outcome = 'committed' AND vanished_at IS NULL ORDER BY seq LIMIT ?`)
      .raw()
      .all(id, afterSeq, limit) as Array<[number, string]>;
    return rows.map(([seq, sopInstanceUid]) => ({ seq, sopInstanceUid }));
  }

  /**
   * Records the watch's progress over a transaction: `vanished` instances found missing at `now`, and where
   * the next look resumes (null: the pass is complete, the next one starts over). Returns how many
   * instances were newly recorded as vanished.
   */
  recordWatch(id: number, vanished: readonly number[], resumeAfterSeq: number | null, now: number): number {
    return this.db.transaction(() => {
      let recorded = 0;
      const mark = this.db.prepare(`UPDATE instances SET vanished_at = ? WHERE transaction_id = ? AND seq = ? AND outcome = 'committed' AND vanished_at IS NULL`);
      for (const seq of vanished) recorded += mark.run(now, id, seq).changes;
      if (resumeAfterSeq === null) {
        this.db.prepare('UPDATE transactions SET vanished_count = vanished_count + ?, watched_at = ?, watch_after_seq = -1 WHERE id = ?').run(recorded, now, id);
      } else {
        this.db.prepare('UPDATE transactions SET vanished_count = vanished_count + ?, watch_after_seq = ? WHERE id = ?').run(recorded, resumeAfterSeq, id);
      }
      return recorded;
    }).immediate();
  }

  /** Committed instances that later disappeared, newest first, across transactions (one page, and how many in all). */
  vanishedInstances(page: { limit: number; offset: number }): CountedPage<VanishedInstance> {
    const { total } = this.db.prepare('SELECT COUNT(*) AS total FROM instances WHERE vanished_at IS NOT NULL').get() as { total: number };
    const rows = this.db
      .prepare(
        `SELECT t.calling_aet, t.transaction_uid, t.reported_at, i.seq, i.sop_class_uid, i.sop_instance_uid, i.vanished_at
         FROM instances i JOIN transactions t ON t.id = i.transaction_id
         WHERE i.vanished_at IS NOT NULL ORDER BY i.vanished_at DESC, t.id DESC, i.seq LIMIT ? OFFSET ?`,
      )
      .raw()
      .all(page.limit, page.offset) as Array<[string, string, number | null, number, string, string, number]>;
    return {
      total,
      items: rows.map(([callingAeTitle, transactionUid, reportedAt, seq, sopClassUid, sopInstanceUid, vanishedAt]) => ({ callingAeTitle, transactionUid, reportedAt, seq, sopClassUid, sopInstanceUid, vanishedAt })),
    };
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
