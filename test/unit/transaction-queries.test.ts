import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { FailureReason } from '../../src/commitment/types.js';
import { TransactionStore } from '../../src/store/transaction-store.js';
import type { NewRequest } from '../../src/transactions/records.js';
import { SqliteTransactionReads } from '../../src/store/sqlite-reads.js';
import { TransactionQueries } from '../../src/transactions/transaction-queries.js';
import { newRequest } from '../harness/store-fixtures.js';

const request = (callingAeTitle: string, count: number, transactionUid = '9.9.1'): NewRequest =>
  newRequest({ callingAeTitle }, Array.from({ length: count }, (_, i) => `1.2.${i}`), transactionUid);

describe('TransactionQueries', () => {
  let store: TransactionStore;
  let queries: TransactionQueries;
  beforeEach(() => {
    store = TransactionStore.open(mkdtempSync(join(tmpdir(), 'stgcmt-queries-')), { synchronous: 'normal' });
    queries = new TransactionQueries(new SqliteTransactionReads(store));
  });

  it('finds a transaction by calling AE and UID; by UID alone only while one AE used it', async () => {
    assert.deepEqual(await queries.byUid('9.9.1'), { kind: 'none' });
    const ct = store.recordRequest(request('CT 1/A', 2));
    const found = await queries.byUid('9.9.1');
    assert.equal(found.kind === 'found' && found.record.id, ct.id);
    const mr = store.recordRequest(request('MR1', 3));
    const ambiguous = await queries.byUid('9.9.1');
    assert.equal(ambiguous.kind, 'ambiguous');
    assert.deepEqual(ambiguous.kind === 'ambiguous' && ambiguous.matches.map((m) => [m.callingAeTitle, m.instanceCount]), [['CT 1/A', 2], ['MR1', 3]]);
    assert.equal((await queries.byKey('CT 1/A', '9.9.1'))?.id, ct.id);
    assert.equal((await queries.byKey('MR1', '9.9.1'))?.id, mr.id);
    assert.equal(await queries.byKey('MR2', '9.9.1'), undefined);
  });

  it('counts outcomes from the rows while verifying, from the record once verified', async () => {
    const { id } = store.recordRequest(request('CT1', 10));
    store.saveOutcomes(id, [{ seq: 0, outcome: 'committed' }, { seq: 1, outcome: 'failed', failureReason: FailureReason.NoSuchObjectInstance }]);
    assert.deepEqual(await queries.instanceCounts(store.get(id)!), { committed: 1, failed: 1, pending: 8 });
    store.saveFinalOutcomes(id, [{ seq: 5, failureReason: FailureReason.NoSuchObjectInstance }]);
    store.completeVerification(id, 2000);
    assert.deepEqual(await queries.instanceCounts(store.get(id)!), { committed: 8, failed: 2, pending: 0 });
  });

  it('pages instances by seq and outcome, saying where the next page starts', async () => {
    const { id } = store.recordRequest(request('CT1', 2500));
    store.saveFinalOutcomes(id, [1, 1200, 2499].map((seq) => ({ seq, failureReason: FailureReason.NoSuchObjectInstance })));
    store.completeVerification(id, 2000);
    const record = store.get(id)!;
    const first = await queries.instancePage(record, 'all', -1, 1000);
    assert.deepEqual([first.items.length, first.items[0]?.seq, first.nextAfter], [1000, 0, 999]);
    const second = await queries.instancePage(record, 'all', first.nextAfter!, 1000);
    assert.deepEqual([second.items[0]?.seq, second.nextAfter], [1000, 1999]);
    const last = await queries.instancePage(record, 'all', second.nextAfter!, 1000);
    assert.deepEqual([last.items.length, last.items.at(-1)?.seq, last.nextAfter], [500, 2499, null]);
    assert.equal((await queries.instancePage(record, 'all', -1, 5000)).items.length, 1000, 'a page is at most 1,000');

    const failed = await queries.instancePage(record, 'failed', -1, 2);
    assert.deepEqual([failed.items.map((i) => i.seq), failed.nextAfter], [[1, 1200], 1200]);
    assert.deepEqual((await queries.instancePage(record, 'not-committed', 1200, 10)).items.map((i) => [i.seq, i.outcome, i.failureReason]), [[2499, 'failed', 0x0112]]);
    assert.deepEqual(await queries.instancePage(record, 'pending', -1, 10), { items: [], nextAfter: null });
    assert.equal((await queries.instancePage(record, 'committed', 0, 3)).items[0]?.seq, 2);
  });
});
