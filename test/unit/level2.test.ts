/**
 * Level 2 parts without Orthanc: the store's migration 3 and its protection and watch records, the watch's
 * rounds (sample bound, resuming, what counts as vanished) against a fake lookup, the climb from instances
 * to series (ProtectionPlan), and the judgement of Orthanc's recycling settings.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../../src/config.js';
import { FailureReason } from '../../src/commitment/types.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { assessCommitment } from '../../src/orthanc/recycling.js';
import { IllegalTransitionError, TransactionStore } from '../../src/store/transaction-store.js';
import { SqliteTransactionRepository } from '../../src/store/sqlite-repository.js';
import { watchCommitted, type WatchDeps } from '../../src/transactions/committed-watch.js';
import { ProtectionPlan } from '../../src/transactions/protector.js';
import { newRequest } from '../harness/store-fixtures.js';

const uids = (n: number, prefix = '1.2.3.'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

function openStore(dir = mkdtempSync(join(tmpdir(), 'stgcmt-l2-'))): TransactionStore {
  return TransactionStore.open(dir, { synchronous: 'normal' });
}

/** A transaction with `n` instances, all committed (failing seq `failSeq`), reported at `reportedAt`. */
function reported(store: TransactionStore, n: number, reportedAt: number, transactionUid = '9.9.1', failSeq?: number): number {
  const { id } = store.recordRequest(newRequest({}, uids(n, `${transactionUid}.`), transactionUid));
  store.saveFinalOutcomes(id, failSeq === undefined ? [] : [{ seq: failSeq, failureReason: FailureReason.NoSuchObjectInstance }]);
  store.completeVerification(id, 2000);
  store.recordDelivery(id, { at: reportedAt, via: 'new-association', ok: true, error: null, durationMs: 3 }, undefined);
  return id;
}

describe('store migration 3', () => {
  it('a version 2 store gains the protection and watch columns, keeps its transactions, and reads them as never watched', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stgcmt-l2-'));
    const first = openStore(dir);
    const id = reported(first, 2, 3000);
    first.close();
    // Back to the version 2 schema.
    const db = new Database(join(dir, 'stgcmt.sqlite'));
    db.exec(`DROP INDEX instances_vanished; DROP INDEX transactions_by_report;
      ALTER TABLE transactions DROP COLUMN protected_at; ALTER TABLE transactions DROP COLUMN vanished_count;
      ALTER TABLE transactions DROP COLUMN watched_at; ALTER TABLE transactions DROP COLUMN watch_after_seq;
      ALTER TABLE instances DROP COLUMN vanished_at`);
    db.pragma('user_version = 2');
    db.close();

    const store = openStore(dir);
    const record = store.get(id)!;
    assert.deepEqual([record.state, record.protectedAt, record.vanishedCount, record.watchedAt], ['REPORTED', null, 0, null]);
    assert.deepEqual(store.transactionsToWatch(0, 10), [{ id, afterSeq: -1 }]);
    store.close();
    const check = new Database(join(dir, 'stgcmt.sqlite'), { readonly: true });
    // Migration 3 ran; later ones (4: search tables) run after it on the same start.
    assert.ok((check.pragma('user_version', { simple: true }) as number) >= 3);
    assert.ok((check.pragma('table_info(transactions)') as Array<{ name: string }>).some((c) => c.name === 'watch_after_seq'));
    check.close();
  });
});

describe('protection records', () => {
  let store: TransactionStore;
  beforeEach(() => {
    store = openStore();
  });

  it('markProtected fails the instances that vanished before protection with 0112H, and the Event Type follows', () => {
    const { id } = store.recordRequest(newRequest({}, uids(3)));
    store.saveFinalOutcomes(id, []);
    store.completeVerification(id, 2000);
    assert.equal(store.get(id)!.eventTypeId, 1);
    store.markProtected(id, 2500, [1]);
    const record = store.get(id)!;
    assert.deepEqual([record.state, record.committedCount, record.failedCount, record.eventTypeId, record.protectedAt], ['VERIFIED', 2, 1, 2, 2500]);
    assert.deepEqual(store.verdict(id).failed.map((f) => [f.sopInstanceUid, f.failureReason]), [['1.2.3.2', 0x0112]]);
  });

  it('a reopened transaction (redelivery, re-sent request) needs a protection of its own', () => {
    const id = reported(store, 2, 3000);
    assert.throws(() => store.markProtected(id, 3500), IllegalTransitionError, 'only a report about to go out is protected');
    store.redeliver(id, 4000, 10_000);
    assert.equal(store.get(id)!.protectedAt, null);
    store.markProtected(id, 4100);
    assert.equal(store.get(id)!.protectedAt, 4100);
    store.recordDelivery(id, { at: 4200, via: 'new-association', ok: true, error: null, durationMs: 3 }, undefined);
    store.redeliver(id, 5000, 10_000);
    assert.equal(store.get(id)!.protectedAt, null, 'the report can be delivered again only after protecting again');
  });
});

describe('the committed-instance watch', () => {
  let store: TransactionStore;
  let present: Set<string>;
  let lookups: string[][];
  const logged: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) }));
  let metrics: Metrics;
  let now: number;

  const deps = (overrides: Partial<WatchDeps> = {}): WatchDeps => ({
    repo: new SqliteTransactionRepository(store),
    catalog: {
      find: (asked: readonly string[]) => {
        lookups.push([...asked]);
        return Promise.resolve(new Map(asked.filter((u) => present.has(u)).map((u) => [u, { id: `id-${u}`, sopClassUid: '1.2' }])));
      },
    },
    metrics,
    logger,
    now: () => now,
    windowMs: 100_000,
    sample: 1000,
    ...overrides,
  });

  beforeEach(() => {
    store = openStore();
    present = new Set();
    lookups = [];
    logged.length = 0;
    metrics = new Metrics();
    now = 10_000;
  });

  it('records what vanished once, with when, counts it, and logs one error line without instance UIDs', async () => {
    const id = reported(store, 4, 3000, '9.9.1', 3);
    for (const uid of ['9.9.1.1', '9.9.1.2', '9.9.1.3']) present.add(uid);
    assert.deepEqual(await watchCommitted(deps()), { checked: 3, vanished: 0 }, 'only committed instances are watched');
    present.delete('9.9.1.2');
    now = 20_000;
    assert.deepEqual(await watchCommitted(deps()), { checked: 3, vanished: 1 });
    assert.deepEqual(store.instancePage(id, { outcome: 'vanished', afterSeq: -1, limit: 10 }).map((i) => [i.sopInstanceUid, i.outcome, i.vanishedAt]), [['9.9.1.2', 'committed', 20_000]]);
    assert.equal(store.get(id)!.vanishedCount, 1);
    assert.equal(store.get(id)!.state, 'REPORTED');
    now = 30_000;
    assert.deepEqual(await watchCommitted(deps()), { checked: 2, vanished: 0 }, 'a vanished instance is not asked about again');
    assert.equal((await metrics.committedThenDeleted.get()).values[0]?.value, 1);
    const errors = logged.filter((l) => l['level'] === 50);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!['transactionUid'], '9.9.1');
    assert.ok(!JSON.stringify(errors[0]).includes('9.9.1.2'));
    const list = store.vanishedInstances({ limit: 10, offset: 0 });
    assert.equal(list.total, 1);
    assert.deepEqual(list.items.map((v) => [v.callingAeTitle, v.transactionUid, v.sopInstanceUid, v.vanishedAt, v.reportedAt]), [['CT1', '9.9.1', '9.9.1.2', 20_000, 3000]]);
  });

  it('a report sent again (redelivery, re-sent request) lists a vanished instance as failed (0112H), not committed', async () => {
    const id = reported(store, 3, 3000);
    present = new Set(['9.9.1.1', '9.9.1.3']);
    await watchCommitted(deps());
    store.redeliver(id, 12_000, 10_000);
    const record = store.get(id)!;
    assert.deepEqual([record.state, record.committedCount, record.failedCount, record.eventTypeId, record.vanishedCount], ['VERIFIED', 2, 1, 2, 1]);
    assert.deepEqual(store.verdict(id).failed.map((f) => [f.sopInstanceUid, f.failureReason]), [['9.9.1.2', 0x0112]]);
    assert.equal(store.vanishedInstances({ limit: 10, offset: 0 }).total, 1, 'still on the alarm list');
    store.recordDelivery(id, { at: 13_000, via: 'new-association', ok: true, error: null, durationMs: 3 }, undefined);
    lookups = [];
    now = 14_000;
    await watchCommitted(deps());
    assert.deepEqual(lookups, [['9.9.1.1', '9.9.1.3']], 'the watch goes on with what is still committed');
  });

  it('asks about at most the sample per round, resumes a large transaction where it stopped, then turns to the least recently watched', async () => {
    const big = reported(store, 7, 3000, '9.9.1');
    const small = reported(store, 2, 3000, '9.9.2');
    for (const uid of [...uids(7, '9.9.1.'), ...uids(2, '9.9.2.')]) present.add(uid);
    const asked = (): string[] => lookups.flat();
    await watchCommitted(deps({ sample: 4 }));
    assert.deepEqual(asked(), uids(4, '9.9.1.'));
    lookups = [];
    now = 11_000;
    await watchCommitted(deps({ sample: 4 }));
    assert.deepEqual(asked(), ['9.9.1.5', '9.9.1.6', '9.9.1.7', '9.9.2.1'], 'the big one resumed at seq 4 and finished; the rest of the sample went on');
    assert.equal(store.get(big)!.watchedAt, 11_000);
    lookups = [];
    now = 12_000;
    await watchCommitted(deps({ sample: 4 }));
    assert.deepEqual(asked(), ['9.9.2.2', '9.9.1.1', '9.9.1.2', '9.9.1.3'], 'the small one resumed, then the big one again, least recently watched first');
    assert.equal(store.get(small)!.watchedAt, 12_000);
  });

  it('watches only transactions reported within the window, and judges nothing when Orthanc cannot be asked', async () => {
    reported(store, 2, 3000, '9.9.1');
    const recent = reported(store, 2, 50_000, '9.9.2');
    for (const uid of [...uids(2, '9.9.1.'), ...uids(2, '9.9.2.')]) present.add(uid);
    now = 120_000;
    await watchCommitted(deps());
    assert.deepEqual(lookups, [uids(2, '9.9.2.')], 'the transaction reported 117 s ago is past the 100 s window');
    const failing = deps({ catalog: { find: () => Promise.reject(new Error('ECONNREFUSED')) } });
    await assert.rejects(watchCommitted(failing), /ECONNREFUSED/);
    assert.equal(store.get(recent)!.vanishedCount, 0);
  });
});

describe('ProtectionPlan', () => {
  it('collects each present instance\'s series, and finds what is missing or gone after protection', () => {
    const plan = new ProtectionPlan();
    plan.addLookup(
      [
        { seq: 0, sopInstanceUid: 'a' },
        { seq: 1, sopInstanceUid: 'b' },
        { seq: 2, sopInstanceUid: 'c' },
      ],
      new Map([
        ['a', { orthancId: 'ia', parentSeries: 's1' }],
        ['c', { orthancId: 'ic', parentSeries: 's2' }],
      ]),
    );
    assert.deepEqual([...plan.series].sort(), ['s1', 's2']);
    assert.deepEqual(plan.vanished(new Set(['ia', 'ic'])), [1]);
    assert.deepEqual(plan.vanished(new Set(['ic'])), [0, 1]);
    assert.throws(() => plan.addLookup([{ seq: 3, sopInstanceUid: 'd' }], new Map([['d', { orthancId: 'id' }]])), /did not name the series/);
  });
});

describe('Orthanc recycling and STGCMT_PROTECT', () => {
  const recycling = { maximumStorageSize: 0, maximumPatientCount: 2, maximumStorageMode: 'Recycle' };

  it('is an error when Orthanc says it recycles and protection is off', () => {
    const strength = assessCommitment(false, recycling, '1.12.7');
    assert.equal(strength.orthancRecycling, 'on');
    assert.equal(strength.severity, 'error');
    assert.match(strength.warning!, /MaximumPatientCount 2.*STGCMT_PROTECT=true/);
  });

  it('says nothing when protection is on, when Orthanc does not recycle, or rejects instead', () => {
    assert.equal(assessCommitment(true, recycling, '1.12.7').warning, undefined);
    assert.equal(assessCommitment(false, { ...recycling, maximumPatientCount: 0 }, '1.12.7').orthancRecycling, 'off');
    assert.equal(assessCommitment(false, { ...recycling, maximumStorageMode: 'Reject' }, '1.12.7').warning, undefined);
  });

  it('warns that it cannot tell when Orthanc does not show its settings (1.10.1)', () => {
    const strength = assessCommitment(false, undefined, '1.10.1');
    assert.deepEqual([strength.orthancRecycling, strength.severity], ['unknown', 'warn']);
    assert.match(strength.warning!, /1\.10\.1 does not show/);
    assert.equal(assessCommitment(true, undefined, '1.10.1').warning, undefined);
  });

  it('before 1.12.4 (no MaximumPatientCount shown): on if the storage size says so, otherwise it cannot tell', () => {
    const size = assessCommitment(false, { maximumStorageSize: 500, maximumPatientCount: undefined, maximumStorageMode: 'Recycle' }, '1.12.3');
    assert.deepEqual([size.orthancRecycling, size.severity], ['on', 'error']);
    const unknown = assessCommitment(false, { maximumStorageSize: 0, maximumPatientCount: undefined, maximumStorageMode: 'Recycle' }, '1.12.3');
    assert.deepEqual([unknown.orthancRecycling, unknown.severity], ['unknown', 'warn']);
    assert.match(unknown.warning!, /not MaximumPatientCount/);
  });
});

describe('Level 2 settings', () => {
  const token = { STGCMT_API_TOKEN: 'x'.repeat(24) };
  it('protection is off by default; the watch runs every minute over a week of reports, 1,000 instances a round', () => {
    const { config } = loadConfig(token);
    assert.deepEqual([config.protect, config.watchInterval, config.watchWindow, config.watchSample], [false, 60_000, 7 * 24 * 3600 * 1000, 1000]);
    assert.equal(loadConfig({ ...token, STGCMT_PROTECT: 'true', STGCMT_WATCH_INTERVAL: '0' }).config.watchInterval, 0);
  });
  it('refuses a watch interval under a second (0 stops the watch)', () => {
    assert.throws(() => loadConfig({ ...token, STGCMT_WATCH_INTERVAL: '500' }), (e: unknown) => e instanceof ConfigError && /STGCMT_WATCH_INTERVAL/.test(e.message));
  });
});
