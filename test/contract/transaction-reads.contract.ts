/**
 * The TransactionReads contract: what the HTTP API and the dashboard read, the same answers in the same
 * order on every engine (SQLite in test/unit/sqlite-reads.test.ts, PostgreSQL in
 * test/integration/postgres-reads.test.ts). The data goes in through the TransactionRepository only (record,
 * claim, completeVerification, recordDelivery, saveStudies, indexForSearch, recordWatch), as the sidecar
 * writes it; each test opens an empty store through `open` and closes it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailureReason, type FailureReasonCode, type SopReference } from '../../src/commitment/types.js';
import type { TransactionReads } from '../../src/transactions/reads.js';
import type { DeliveryAttemptRecord, NewRequest, SearchFilter, StudyRecord, TransactionRecord } from '../../src/transactions/records.js';
import type { TransactionRepository } from '../../src/transactions/repository.js';

export interface OpenedReads {
  readonly repo: TransactionRepository;
  /** The reads over what `repo` writes. */
  readonly reads: TransactionReads;
  close(): Promise<void>;
}

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const HOUR = 3_600_000;
/** The start of an hour (ms since the epoch), so that the hourly buckets are plain to read. */
const H0 = 472_222 * HOUR;
const TTL = 30_000;

interface Fill {
  readonly uid?: string;
  readonly aet?: string;
  readonly now?: number;
  /** SOP Instance UIDs (class CT unless `classes` says otherwise). */
  readonly uids?: readonly string[];
  readonly classes?: readonly string[];
}

let counter = 0;

function request(fill: Fill): NewRequest {
  counter += 1;
  const uids = fill.uids ?? [`1.2.826.0.1.3680043.10.${counter}.1`];
  const references: SopReference[] = uids.map((sopInstanceUid, i) => ({ sopClassUid: fill.classes?.[i] ?? CT, sopInstanceUid }));
  return {
    request: { transactionUid: fill.uid ?? `1.2.826.0.1.3680043.11.${counter}`, references },
    callingAeTitle: fill.aet ?? 'CT1',
    calledAeTitle: 'STGCMT',
    remoteAddress: '127.0.0.1',
    now: fill.now ?? H0,
    arrivalWaitMs: 1000,
    verifyTimeoutMs: 60_000,
    ttlMs: 24 * HOUR,
  };
}

function study(uid: string, overrides: Partial<StudyRecord> = {}): StudyRecord {
  return { studyInstanceUid: uid, orthancStudyId: `o-${uid}`, patientId: null, patientName: null, studyDate: null, studyDescription: null, accessionNumber: null, modalities: 'CT', ...overrides };
}

export function describeReadsContract(name: string, open: () => Promise<OpenedReads>): void {
  const withReads = (body: (r: OpenedReads) => Promise<void>) => async () => {
    const opened = await open();
    try {
      await body(opened);
    } finally {
      await opened.close();
    }
  };

  describe(`TransactionReads contract: ${name}`, () => {
    async function record(repo: TransactionRepository, fill: Fill = {}): Promise<number> {
      return (await repo.record(request(fill))).id;
    }

    /** RECEIVED -> VERIFIED at `now` with these failures (by seq); the claim released. */
    async function verify(repo: TransactionRepository, id: number, now: number, failures: Array<{ seq: number; failureReason: FailureReasonCode; storedSopClassUid?: string }> = []): Promise<void> {
      const claim = await repo.claim(id, 'verify', 'node-a', now, TTL);
      assert.ok(claim, `transaction ${id} claimed for verification`);
      await repo.completeVerification(claim, failures, now);
      await repo.release(claim);
    }

    /** One delivery attempt at `at`: ok (REPORTED), or failed (DELIVERY_RETRY due at `next`); the claim released. */
    async function deliver(repo: TransactionRepository, id: number, at: number, ok: boolean, next?: number, category: DeliveryAttemptRecord['category'] = 'network'): Promise<void> {
      const claim = await repo.claim(id, 'deliver', 'node-a', at, TTL);
      assert.ok(claim, `transaction ${id} claimed for delivery`);
      const attempt: DeliveryAttemptRecord = ok
        ? { at, via: 'new-association', ok: true, error: null, durationMs: 7 }
        : { at, via: 'same-association', ok: false, error: 'ECONNREFUSED', durationMs: 3, category };
      await repo.recordDelivery(claim, attempt, next);
      await repo.release(claim);
    }

    async function indexAll(repo: TransactionRepository, id: number): Promise<void> {
      let after: number | undefined = -1;
      while (after !== undefined) after = await repo.indexForSearch(id, after, 2);
    }

    const ids = (records: readonly TransactionRecord[]): number[] => records.map((r) => r.id);
    async function found(reads: TransactionReads, filter: SearchFilter): Promise<number[]> {
      return ids((await reads.list({ ...filter, limit: 100, offset: 0 })).items);
    }

    async function pages(reads: TransactionReads, ...args: Parameters<TransactionReads['exportPages']>): Promise<TransactionRecord[][]> {
      const all: TransactionRecord[][] = [];
      for await (const page of reads.exportPages(...args)) all.push(page);
      return all;
    }

    it('finds a transaction by its key as the repository holds it, and all with one Transaction UID oldest first', withReads(async ({ repo, reads }) => {
      const ct = await record(repo, { uid: '2.25.7', aet: 'CT1', now: H0 + 2000, uids: ['1.1', '1.2'] });
      const mr = await record(repo, { uid: '2.25.7', aet: 'MR1', now: H0 + 1000 });
      await verify(repo, ct, H0 + 3000, [{ seq: 1, failureReason: FailureReason.NoSuchObjectInstance }]);

      const byKey = await reads.findByKey('CT1', '2.25.7');
      assert.deepEqual(byKey, await repo.get(ct));
      assert.equal(byKey?.state, 'VERIFIED');
      assert.equal(byKey?.committedCount, 1);
      assert.equal(byKey?.failedCount, 1);
      assert.equal(byKey?.verifiedAt, H0 + 3000);
      assert.equal(typeof byKey?.receivedAt, 'number');
      assert.deepEqual(ids(await reads.findAllByUid('2.25.7')), [ct, mr]);
      assert.equal(await reads.findByKey('XA1', '2.25.7'), undefined);
      assert.deepEqual(await reads.findAllByUid('2.25.8'), []);
    }));

    it('lists newest first (receipt, then id), one page at a time, with the total', withReads(async ({ repo, reads }) => {
      const made: number[] = [];
      for (const at of [1000, 2000, 2000, 3000, 500]) made.push(await record(repo, { now: H0 + at }));
      const newestFirst = [made[3]!, made[2]!, made[1]!, made[0]!, made[4]!];
      assert.deepEqual(await found(reads, {}), newestFirst);
      const page = await reads.list({ limit: 2, offset: 1 });
      assert.equal(page.total, 5);
      assert.deepEqual(ids(page.items), newestFirst.slice(1, 3));
      assert.deepEqual(await reads.list({ limit: 2, offset: 10 }), { total: 5, items: [] });
      assert.deepEqual(await reads.list({ callingAeTitle: 'XA1', limit: 10, offset: 0 }), { total: 0, items: [] });
    }));

    it('searches by state, calling AE, time range (from inclusive, to exclusive) and Transaction UID', withReads(async ({ repo, reads }) => {
      const a = await record(repo, { aet: 'CT1', now: H0 + 1000, uid: '2.25.1' });
      const b = await record(repo, { aet: 'MR1', now: H0 + 2000, uid: '2.25.1' });
      const c = await record(repo, { aet: 'CT1', now: H0 + 3000, uid: '2.25.3' });
      await verify(repo, a, H0 + 4000);

      assert.deepEqual(await found(reads, { state: 'VERIFIED' }), [a]);
      assert.deepEqual(await found(reads, { state: 'RECEIVED' }), [c, b]);
      assert.deepEqual(await found(reads, { callingAeTitle: 'CT1' }), [c, a]);
      assert.deepEqual(await found(reads, { receivedFrom: H0 + 2000 }), [c, b]);
      assert.deepEqual(await found(reads, { receivedTo: H0 + 2000 }), [a]);
      assert.deepEqual(await found(reads, { receivedFrom: H0 + 1000, receivedTo: H0 + 3000 }), [b, a]);
      assert.deepEqual(await found(reads, { transactionUid: '2.25.1' }), [b, a]);
      assert.deepEqual(await found(reads, { transactionUid: '2.25.1', callingAeTitle: 'MR1' }), [b]);
      assert.deepEqual(await found(reads, { state: 'RECEIVED', callingAeTitle: 'CT1', receivedFrom: H0 }), [c]);
      assert.equal((await reads.list({ state: 'RECEIVED', limit: 1, offset: 0 })).total, 2);
    }));

    it('searches by SOP Instance UID once the images are indexed', withReads(async ({ repo, reads }) => {
      const a = await record(repo, { now: H0 + 1000, uids: ['7.1', '7.2', '7.3'] });
      const b = await record(repo, { now: H0 + 2000, uids: ['7.3', '7.4', '7.5', '7.6', '7.7'] });
      await indexAll(repo, a);
      await indexAll(repo, b);
      assert.deepEqual(await found(reads, { sopInstanceUid: '7.3' }), [b, a]);
      assert.deepEqual(await found(reads, { sopInstanceUid: '7.7' }), [b], 'the last slice indexed too');
      assert.deepEqual(await found(reads, { sopInstanceUid: '7.1' }), [a]);
      assert.deepEqual(await found(reads, { sopInstanceUid: '7.' }), [], 'the whole UID, not a prefix');
      assert.deepEqual(await found(reads, { sopInstanceUid: '7.3', callingAeTitle: 'CT1', receivedTo: H0 + 1500 }), [a]);
      assert.equal((await reads.list({ sopInstanceUid: '7.3', limit: 1, offset: 0 })).total, 2);
    }));

    it("searches by study, accession number, patient ID and the start of the patient's name (any case, ^ as a space)", withReads(async ({ repo, reads }) => {
      const a = await record(repo, { now: H0 + 1000 });
      const b = await record(repo, { now: H0 + 2000 });
      const c = await record(repo, { now: H0 + 3000 });
      await repo.saveStudies(a, [study('5.1', { patientId: 'P1', patientName: 'SMITH^JANE', accessionNumber: 'ACC1' }), study('5.2', { patientId: 'P1', patientName: 'SMITH^JANE', accessionNumber: 'ACC2' })]);
      await repo.saveStudies(b, [study('5.3', { patientId: 'P2', patientName: 'Smithers^Bob', accessionNumber: 'ACC3' })]);
      await repo.saveStudies(c, [study('5.1', { patientId: 'SMITH', patientName: 'JONES^ANN=ジョーンズ', accessionNumber: 'ACC1' })]);

      assert.deepEqual(await found(reads, { studyInstanceUid: '5.1' }), [c, a]);
      assert.deepEqual(await found(reads, { studyInstanceUid: '5.3' }), [b]);
      assert.deepEqual(await found(reads, { accessionNumber: 'ACC2' }), [a]);
      assert.deepEqual(await found(reads, { accessionNumber: 'ACC1' }), [c, a]);
      assert.deepEqual(await found(reads, { accessionNumber: 'acc1' }), [], 'accession numbers exactly');
      assert.deepEqual(await found(reads, { patient: 'P2' }), [b], 'patient ID exactly');
      assert.deepEqual(await found(reads, { patient: 'SMITH' }), [c, b, a], 'name prefix, and patient ID "SMITH"');
      assert.deepEqual(await found(reads, { patient: 'smith' }), [b, a], 'name prefix any case; patient ID exactly');
      assert.deepEqual(await found(reads, { patient: 'SMITH^J' }), [a], '^ read as a space');
      assert.deepEqual(await found(reads, { patient: 'smith jane' }), [a]);
      assert.deepEqual(await found(reads, { patient: 'jones' }), [c], 'the alphabetic group');
      assert.deepEqual(await found(reads, { patient: 'MITH' }), [], 'the start of the name only');
      assert.deepEqual(await found(reads, { patient: 'smith', studyInstanceUid: '5.1', receivedTo: H0 + 2500 }), [a]);
      assert.equal((await reads.list({ patient: 'SMITH', limit: 1, offset: 2 })).total, 3);

      // Studies replaced: the old ones no longer match.
      await repo.saveStudies(a, [study('5.9', { patientId: 'P9', patientName: 'DOE^JOHN' })]);
      assert.deepEqual(await found(reads, { studyInstanceUid: '5.1' }), [c]);
      assert.deepEqual(await found(reads, { patient: 'doe' }), [a]);
    }));

    it('exports every match once, newest first, page by page, up to the maximum', withReads(async ({ repo, reads }) => {
      // Three received in the same millisecond: the id breaks the tie, within a page and across pages.
      const times = [1000, 2000, 2000, 2000, 3000, 4000, 5000];
      for (const [i, at] of times.entries()) await record(repo, { now: H0 + at, aet: i % 2 === 0 ? 'CT1' : 'MR1' });
      const everything = await found(reads, {});

      const byTwo = await pages(reads, {}, 100, 2);
      assert.deepEqual(byTwo.map((p) => p.length), [2, 2, 2, 1]);
      assert.deepEqual(byTwo.flat().map((r) => r.id), everything);
      assert.deepEqual(byTwo.flat(), (await reads.list({ limit: 100, offset: 0 })).items, 'the same records as the list');
      assert.deepEqual((await pages(reads, {}, 5, 2)).flat().map((r) => r.id), everything.slice(0, 5), 'stops at the maximum');
      assert.deepEqual((await pages(reads, {}, 100, 7)).map((p) => p.length), [7], 'a last full page ends the export');
      assert.deepEqual(await pages(reads, { callingAeTitle: 'XA1' }, 100, 2), [], 'nothing matches: no page');
      assert.deepEqual(await pages(reads, {}, 0, 2), [], 'a maximum of 0: no page');
      const ct = (await pages(reads, { callingAeTitle: 'CT1' }, 100, 1)).flat();
      assert.deepEqual(ids(ct), await found(reads, { callingAeTitle: 'CT1' }));
      const window = (await pages(reads, { receivedFrom: H0 + 2000, receivedTo: H0 + 4000 }, 100, 2)).flat();
      assert.deepEqual(ids(window), await found(reads, { receivedFrom: H0 + 2000, receivedTo: H0 + 4000 }));
      assert.equal(window.length, 4);
    }));

    it('holds nothing open between export pages: a write in between goes through, and newer ones are not exported', withReads(async ({ repo, reads }) => {
      for (let i = 0; i < 5; i++) await record(repo, { now: H0 + 1000 + i });
      let seen = 0;
      for await (const page of reads.exportPages({}, 100, 2)) {
        seen += page.length;
        await record(repo, { now: H0 + 10_000 + seen });
      }
      assert.equal(seen, 5);
    }));

    it('gives the studies of transactions by id, by study date (none first) then study UID', withReads(async ({ repo, reads }) => {
      const a = await record(repo);
      const b = await record(repo);
      const c = await record(repo);
      const a1 = study('1.3', { studyDate: '20240102', patientId: 'P1', patientName: 'SMITH^JANE', studyDescription: 'CHEST', accessionNumber: 'ACC1', modalities: 'CT\\SR' });
      const a2 = study('1.20', { studyDate: '20240101' });
      const a3 = study('1.10', { studyDate: '20240102', orthancStudyId: null, modalities: null });
      const a4 = study('1.9');
      await repo.saveStudies(a, [a1, a2, a3, a4]);
      await repo.saveStudies(b, [study('2.1')]);
      const studies = await reads.studiesOf([a, b, c]);
      assert.deepEqual(studies.get(a), [a4, a2, a3, a1]);
      assert.deepEqual(studies.get(b), [study('2.1')]);
      assert.equal(studies.has(c), false, 'no studies: no entry');
      assert.deepEqual([...(await reads.studiesOf([])).keys()], []);
      assert.deepEqual([...(await reads.studiesOf([b])).keys()], [b]);
    }));

    it('lists delivery attempts oldest first, failed ones with their category', withReads(async ({ repo, reads }) => {
      const id = await record(repo);
      await verify(repo, id, H0 + 10);
      await deliver(repo, id, H0 + 20, false, H0 + 100, 'configuration');
      await deliver(repo, id, H0 + 100, false, H0 + 200);
      await deliver(repo, id, H0 + 200, true);
      assert.deepEqual(await reads.deliveryAttempts(id), [
        { at: H0 + 20, via: 'same-association', ok: false, error: 'ECONNREFUSED', durationMs: 3, category: 'configuration' },
        { at: H0 + 100, via: 'same-association', ok: false, error: 'ECONNREFUSED', durationMs: 3, category: 'network' },
        { at: H0 + 200, via: 'new-association', ok: true, error: null, durationMs: 7, category: null },
      ]);
      const reported = await reads.findByKey('CT1', (await repo.get(id))!.transactionUid);
      assert.equal(reported?.state, 'REPORTED');
      assert.equal(reported?.reportedAt, H0 + 200);
      assert.equal(reported?.deliveryAttempts, 3);
      assert.deepEqual(await reads.deliveryAttempts(id + 1000), []);
    }));

    it('tells how a SOP Instance UID fared in each transaction that listed it', withReads(async ({ repo, reads }) => {
      const a = await record(repo, { uids: ['8.1', '8.2'] });
      const b = await record(repo, { uids: ['8.2', '8.3'], classes: [MR, CT] });
      const c = await record(repo, { uids: ['8.4'] });
      await verify(repo, a, H0 + 10, [{ seq: 1, failureReason: FailureReason.ClassInstanceConflict, storedSopClassUid: MR }]);
      const outcomes = await reads.instanceOutcomesByUid([a, b, c], '8.2');
      assert.deepEqual([...outcomes.keys()].sort((x, y) => x - y), [a, b]);
      assert.deepEqual(outcomes.get(a), [{ seq: 1, sopClassUid: CT, sopInstanceUid: '8.2', outcome: 'failed', failureReason: FailureReason.ClassInstanceConflict, storedSopClassUid: MR, vanishedAt: null }]);
      assert.deepEqual(outcomes.get(b), [{ seq: 0, sopClassUid: MR, sopInstanceUid: '8.2', outcome: null, failureReason: null, storedSopClassUid: null, vanishedAt: null }]);
      assert.equal((await reads.instanceOutcomesByUid([], '8.2')).size, 0);
      assert.equal((await reads.instanceOutcomesByUid([c], '8.2')).size, 0);
    }));

    it('counts outcomes and pages instances by outcome in request order', withReads(async ({ repo, reads }) => {
      const uids = ['9.0', '9.1', '9.2', '9.3', '9.4', '9.5'];
      const id = await record(repo, { uids, now: H0 });
      assert.deepEqual(await reads.outcomeCounts(id), [], 'undecided: not counted');
      assert.deepEqual((await reads.instancePage(id, { outcome: 'pending', afterSeq: -1, limit: 10 })).map((i) => i.seq), [0, 1, 2, 3, 4, 5]);
      await verify(repo, id, H0 + 10, [
        { seq: 1, failureReason: FailureReason.NoSuchObjectInstance },
        { seq: 3, failureReason: FailureReason.NoSuchObjectInstance },
        { seq: 4, failureReason: FailureReason.ProcessingFailure },
      ]);
      await deliver(repo, id, H0 + 20, true);
      assert.equal(await repo.recordWatch(id, [2], null, H0 + 5000), 1);

      const counts = await reads.outcomeCounts(id);
      const key = (c: { outcome: string; failureReason: number | null }): string => `${c.outcome}:${c.failureReason}`;
      assert.deepEqual([...counts].sort((x, y) => key(x).localeCompare(key(y))), [
        { outcome: 'committed', failureReason: null, count: 3 },
        { outcome: 'failed', failureReason: FailureReason.ProcessingFailure, count: 1 },
        { outcome: 'failed', failureReason: FailureReason.NoSuchObjectInstance, count: 2 },
      ]);
      const seqs = async (outcome: Parameters<TransactionReads['instancePage']>[1]['outcome'], afterSeq = -1, limit = 10): Promise<number[]> =>
        (await reads.instancePage(id, { outcome, afterSeq, limit })).map((i) => i.seq);
      assert.deepEqual(await seqs('all'), [0, 1, 2, 3, 4, 5]);
      assert.deepEqual(await seqs('all', 1, 2), [2, 3], 'keyset: after seq 1, two of them');
      assert.deepEqual(await seqs('committed'), [0, 2, 5]);
      assert.deepEqual(await seqs('failed'), [1, 3, 4]);
      assert.deepEqual(await seqs('failed', 1, 1), [3]);
      assert.deepEqual(await seqs('pending'), []);
      assert.deepEqual(await seqs('not-committed'), [1, 3, 4]);
      assert.deepEqual(await seqs('vanished'), [2]);
      assert.deepEqual(await seqs('all', 5), []);
      const [vanished] = await reads.instancePage(id, { outcome: 'vanished', afterSeq: -1, limit: 10 });
      assert.deepEqual(vanished, { seq: 2, sopClassUid: CT, sopInstanceUid: '9.2', outcome: 'committed', failureReason: null, storedSopClassUid: null, vanishedAt: H0 + 5000 });
      assert.equal((await reads.findByKey('CT1', (await repo.get(id))!.transactionUid))?.vanishedCount, 1);
    }));

    it('sums activity per hour of receipt, with the report latencies of each hour in order of receipt', withReads(async ({ repo, reads }) => {
      const early = await record(repo, { now: H0 - HOUR + 5, uids: ['1', '2'] }); // before `since`
      const a = await record(repo, { now: H0 + 1000, uids: ['1', '2', '3'] });
      await record(repo, { now: H0 + 2000, uids: ['1'] }); // never verified: no failures counted, no latency
      const c = await record(repo, { now: H0 + 3000, uids: ['1', '2'] });
      const d = await record(repo, { now: H0 + 2 * HOUR + 1, uids: ['1', '2', '3', '4'] });
      await verify(repo, early, H0);
      await verify(repo, a, H0 + 1100, [{ seq: 0, failureReason: FailureReason.NoSuchObjectInstance }, { seq: 2, failureReason: FailureReason.NoSuchObjectInstance }]);
      await verify(repo, c, H0 + 3100);
      await verify(repo, d, H0 + 2 * HOUR + 100, [{ seq: 3, failureReason: FailureReason.ProcessingFailure }]);
      await deliver(repo, c, H0 + 3500, true); // latency 500
      await deliver(repo, a, H0 + 9000, true); // latency 8000, reported after c
      await deliver(repo, d, H0 + 2 * HOUR + 1001, true); // latency 1000

      assert.deepEqual(await reads.hourlyActivity(H0), [
        { hourStart: H0, transactions: 3, withFailures: 1, instances: 6, failedInstances: 2, reportLatenciesMs: [8000, 500] },
        { hourStart: H0 + 2 * HOUR, transactions: 1, withFailures: 1, instances: 4, failedInstances: 1, reportLatenciesMs: [1000] },
      ]);
      const all = await reads.hourlyActivity(0);
      assert.deepEqual(all[0], { hourStart: H0 - HOUR, transactions: 1, withFailures: 0, instances: 2, failedInstances: 0, reportLatenciesMs: [] });
      assert.equal(all.length, 3);
      assert.deepEqual(await reads.hourlyActivity(H0 + 3 * HOUR), []);
    }));

    it('counts failed instances by reason, most frequent first (ties by reason), of transactions received since', withReads(async ({ repo, reads }) => {
      const old = await record(repo, { now: H0 - 10, uids: ['1', '2', '3'] });
      const a = await record(repo, { now: H0 + 10, uids: ['1', '2', '3', '4'] });
      const b = await record(repo, { now: H0 + 20, uids: ['1', '2', '3'] });
      const clean = await record(repo, { now: H0 + 30, uids: ['1'] });
      await verify(repo, old, H0, [0, 1, 2].map((seq) => ({ seq, failureReason: FailureReason.ResourceLimitation })));
      await verify(repo, a, H0 + 40, [
        { seq: 0, failureReason: FailureReason.NoSuchObjectInstance },
        { seq: 1, failureReason: FailureReason.NoSuchObjectInstance },
        { seq: 2, failureReason: FailureReason.ProcessingFailure },
        { seq: 3, failureReason: FailureReason.ClassInstanceConflict, storedSopClassUid: MR },
      ]);
      await verify(repo, b, H0 + 40, [
        { seq: 0, failureReason: FailureReason.NoSuchObjectInstance },
        { seq: 1, failureReason: FailureReason.ClassInstanceConflict, storedSopClassUid: MR },
      ]);
      await verify(repo, clean, H0 + 40);
      assert.deepEqual(await reads.failuresByReason(H0), [
        { failureReason: FailureReason.NoSuchObjectInstance, count: 3 },
        { failureReason: FailureReason.ClassInstanceConflict, count: 2 },
        { failureReason: FailureReason.ProcessingFailure, count: 1 },
      ]);
      assert.deepEqual(await reads.failuresByReason(H0 + 15), [
        { failureReason: FailureReason.NoSuchObjectInstance, count: 1 },
        { failureReason: FailureReason.ClassInstanceConflict, count: 1 },
      ]);
      assert.deepEqual((await reads.failuresByReason(0))[0], { failureReason: FailureReason.NoSuchObjectInstance, count: 3 });
      assert.deepEqual((await reads.failuresByReason(0)).find((f) => f.failureReason === FailureReason.ResourceLimitation), { failureReason: FailureReason.ResourceLimitation, count: 3 });
      assert.deepEqual(await reads.failuresByReason(H0 + 100), []);
    }));

    it('gives the backlog per calling AE: pending reports, the oldest verdict waiting, the last delivery', withReads(async ({ repo, reads }) => {
      assert.deepEqual(await reads.pendingByModality(), []);
      const ctDone = await record(repo, { aet: 'CT1', now: H0 });
      const ctWaiting = await record(repo, { aet: 'CT1', now: H0 + 10 });
      const ctRetry = await record(repo, { aet: 'CT1', now: H0 + 20 });
      const mr = await record(repo, { aet: 'MR1', now: H0 + 30 });
      const us = await record(repo, { aet: 'US1', now: H0 + 40 });
      await record(repo, { aet: 'XA1', now: H0 + 50 }); // RECEIVED: nothing to deliver yet
      for (const [id, at] of [[ctDone, 100], [ctWaiting, 300], [ctRetry, 200], [mr, 400], [us, 500]] as const) await verify(repo, id, H0 + at);
      await deliver(repo, ctDone, H0 + 1000, true);
      await deliver(repo, ctRetry, H0 + 1100, false, H0 + 60_000);
      await deliver(repo, us, H0 + 1200, true);
      assert.deepEqual(await reads.pendingByModality(), [
        { callingAeTitle: 'CT1', pending: 2, oldestVerifiedAt: H0 + 200, lastDeliveredAt: H0 + 1000 },
        { callingAeTitle: 'MR1', pending: 1, oldestVerifiedAt: H0 + 400, lastDeliveredAt: null },
      ]);
    }));

    it('counts transactions per state received since, every state present', withReads(async ({ repo, reads }) => {
      const zero = { RECEIVED: 0, VERIFIED: 0, DELIVERY_RETRY: 0, REPORTED: 0, EXPIRED: 0 };
      assert.deepEqual(await reads.countsByState(0), zero);
      const old = await record(repo, { now: H0 - 1 });
      const a = await record(repo, { now: H0 });
      const b = await record(repo, { now: H0 + 1 });
      const c = await record(repo, { now: H0 + 2 });
      await record(repo, { now: H0 + 3 });
      await verify(repo, old, H0);
      await verify(repo, a, H0);
      await verify(repo, b, H0);
      await verify(repo, c, H0);
      await deliver(repo, b, H0 + 10, true);
      await deliver(repo, c, H0 + 10, false, H0 + 100);
      assert.deepEqual(await reads.countsByState(H0), { ...zero, RECEIVED: 1, VERIFIED: 1, DELIVERY_RETRY: 1, REPORTED: 1 });
      assert.deepEqual(await reads.countsByState(0), { ...zero, RECEIVED: 1, VERIFIED: 2, DELIVERY_RETRY: 1, REPORTED: 1 });
      const expired = await repo.expireOverdue(H0 + 48 * HOUR);
      assert.equal(expired.length, 3);
      assert.deepEqual(await reads.countsByState(H0), { ...zero, RECEIVED: 1, EXPIRED: 2, REPORTED: 1 });
      assert.deepEqual(await reads.countsByState(H0 + 4), zero);
    }));

    it('lists committed instances that later vanished, newest first across transactions, with the total', withReads(async ({ repo, reads }) => {
      const a = await record(repo, { uid: '2.25.10', now: H0, uids: ['4.0', '4.1', '4.2'] });
      const b = await record(repo, { uid: '2.25.11', aet: 'MR1', now: H0 + 1, uids: ['4.5', '4.6'], classes: [MR, MR] });
      for (const id of [a, b]) {
        await verify(repo, id, H0 + 10);
        await deliver(repo, id, H0 + 20 + id, true);
      }
      assert.deepEqual(await reads.vanishedInstances({ limit: 10, offset: 0 }), { total: 0, items: [] });
      await repo.recordWatch(a, [2, 0], null, H0 + 1000);
      await repo.recordWatch(b, [1], null, H0 + 1000);
      await repo.recordWatch(a, [1], null, H0 + 500);
      const aReported = (await repo.get(a))!.reportedAt;
      const bReported = (await repo.get(b))!.reportedAt;
      const all = await reads.vanishedInstances({ limit: 10, offset: 0 });
      assert.equal(all.total, 4);
      assert.deepEqual(all.items, [
        { callingAeTitle: 'MR1', transactionUid: '2.25.11', reportedAt: bReported, seq: 1, sopClassUid: MR, sopInstanceUid: '4.6', vanishedAt: H0 + 1000 },
        { callingAeTitle: 'CT1', transactionUid: '2.25.10', reportedAt: aReported, seq: 0, sopClassUid: CT, sopInstanceUid: '4.0', vanishedAt: H0 + 1000 },
        { callingAeTitle: 'CT1', transactionUid: '2.25.10', reportedAt: aReported, seq: 2, sopClassUid: CT, sopInstanceUid: '4.2', vanishedAt: H0 + 1000 },
        { callingAeTitle: 'CT1', transactionUid: '2.25.10', reportedAt: aReported, seq: 1, sopClassUid: CT, sopInstanceUid: '4.1', vanishedAt: H0 + 500 },
      ]);
      assert.deepEqual(await reads.vanishedInstances({ limit: 2, offset: 1 }), { total: 4, items: all.items.slice(1, 3) });
      assert.deepEqual(await reads.vanishedInstances({ limit: 0, offset: 0 }), { total: 4, items: [] }, 'limit 0: the count only');
    }));
  });
}
