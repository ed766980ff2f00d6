/**
 * The store's search (issue 13): images become findable once indexForSearch has run (after the N-ACTION-RSP,
 * slice by slice), a re-sent Transaction UID's extra instances are findable at once, studies are found by
 * UID, accession number, patient ID or name prefix, and migration 4 brings a version-2 (or 3) store along
 * with its transactions searchable.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { nameKey, TransactionStore } from '../../src/store/transaction-store.js';
import type { StudyRecord } from '../../src/transactions/records.js';
import { newRequest } from '../harness/store-fixtures.js';

const open = (dir = mkdtempSync(join(tmpdir(), 'stgcmt-search-'))): TransactionStore => TransactionStore.open(dir, { synchronous: 'normal' });
const page = { limit: 50, offset: 0 };
const study = (over: Partial<StudyRecord>): StudyRecord => ({
  studyInstanceUid: '1.2.3',
  orthancStudyId: null,
  patientId: 'PID1',
  patientName: 'DOE^JANE',
  studyDate: '20261125',
  studyDescription: 'CT THORAX',
  accessionNumber: 'ACC1',
  modalities: 'CT',
  ...over,
});

describe('store search', () => {
  it('finds an image once indexed, slice by slice, and not before', () => {
    const store = open();
    const uids = Array.from({ length: 12 }, (_, i) => `1.9.${i}`);
    const { id } = store.recordRequest(newRequest({}, uids));
    assert.equal(store.list({ sopInstanceUid: '1.9.11', ...page }).total, 0, 'not findable before indexForSearch');
    assert.deepEqual(store.unindexedIds(), [id], 'left for the start-up to index if a stop cuts it short');
    const slices: Array<number | undefined> = [];
    for (let after = store.indexForSearch(id, -1, 5); after !== undefined; after = store.indexForSearch(id, after, 5)) slices.push(after);
    assert.deepEqual(slices, [4, 9]);
    for (const uid of ['1.9.0', '1.9.5', '1.9.11']) assert.deepEqual(store.list({ sopInstanceUid: uid, ...page }).items.map((r) => r.id), [id], uid);
    assert.equal(store.indexForSearch(id), undefined, 'once done, done');
    assert.deepEqual(store.unindexedIds(), []);
    assert.deepEqual([...store.instanceOutcomesByUid([id], '1.9.5').get(id)!].map((i) => i.seq), [5]);
    // A re-sent Transaction UID with another image: findable at once, with its 0131H.
    store.recordRequest(newRequest({}, ['1.9.99']));
    assert.deepEqual(store.list({ sopInstanceUid: '1.9.99', ...page }).items.map((r) => r.id), [id]);
  });

  it('finds studies by UID, accession number, patient ID or the start of the name', () => {
    const store = open();
    const a = store.recordRequest(newRequest({}, ['1.1'], '7.1')).id;
    const b = store.recordRequest(newRequest({ callingAeTitle: 'MR1' }, ['1.2'], '7.2')).id;
    store.saveStudies(a, [study({})]);
    store.saveStudies(b, [study({ studyInstanceUid: '4.5.6', patientId: 'PID2', patientName: 'DOEBLER^MAX', accessionNumber: 'ACC2' })]);
    const ids = (filter: Parameters<TransactionStore['list']>[0]): number[] => store.list(filter).items.map((r) => r.id).sort();
    assert.deepEqual(ids({ studyInstanceUid: '4.5.6', ...page }), [b]);
    assert.deepEqual(ids({ accessionNumber: 'ACC1', ...page }), [a]);
    assert.deepEqual(ids({ patient: 'PID2', ...page }), [b]);
    assert.deepEqual(ids({ patient: 'doe', ...page }), [a, b]);
    assert.deepEqual(ids({ patient: 'Doe Jane', ...page }), [a]);
    assert.deepEqual(ids({ patient: 'doe', callingAeTitle: 'MR1', ...page }), [b]);
    assert.deepEqual(ids({ transactionUid: '7.2', ...page }), [b]);
    assert.equal(nameKey('  doe^^jane=ドウ '), 'DOE JANE');
    // Saving again replaces: the studies are read once per verdict, and again after a redelivery's re-verification.
    store.saveStudies(a, [study({ accessionNumber: 'ACC9' })]);
    assert.deepEqual(store.studiesOf([a]).get(a)!.map((s) => s.accessionNumber), ['ACC9']);
  });

  for (const from of [2, 3]) {
    it(`migrates a version-${from} store: studies table, search indexes, and its transactions findable`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'stgcmt-migrate-'));
      const first = open(dir);
      const { id } = first.recordRequest(newRequest({}, ['1.5.1', '1.5.2']));
      first.close();
      // Back to what an older sidecar left: no search tables, no search_indexed column.
      const db = new Database(join(dir, 'stgcmt.sqlite'));
      db.exec('DROP TABLE instance_search; DROP INDEX transactions_unindexed; DROP TABLE transaction_studies; ALTER TABLE transactions DROP COLUMN search_indexed');
      db.pragma(`user_version = ${from}`);
      db.close();
      const store = open(dir);
      assert.deepEqual(store.list({ sopInstanceUid: '1.5.2', ...page }).items.map((r) => r.id), [id]);
      store.saveStudies(id, [study({})]);
      assert.equal(store.list({ accessionNumber: 'ACC1', ...page }).total, 1);
      store.close();
      const check = new Database(join(dir, 'stgcmt.sqlite'), { readonly: true });
      assert.ok((check.pragma('user_version', { simple: true }) as number) >= 4);
      check.close();
    });
  }
});
