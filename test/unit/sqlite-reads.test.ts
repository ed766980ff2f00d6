/**
 * SqliteTransactionReads: the reads contract (test/contract/transaction-reads.contract.ts) on the embedded
 * SQLite store, and what is particular to SQLite: each read answers what the synchronous store answers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { SqliteTransactionReads } from '../../src/store/sqlite-reads.js';
import { SqliteTransactionRepository } from '../../src/store/sqlite-repository.js';
import { TransactionStore } from '../../src/store/transaction-store.js';
import { newRequest } from '../harness/store-fixtures.js';
import { describeReadsContract } from '../contract/transaction-reads.contract.js';

describeReadsContract('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stgcmt-reads-'));
  const store = TransactionStore.open(dir, { synchronous: 'normal' });
  const repo = new SqliteTransactionRepository(store);
  return {
    repo,
    reads: new SqliteTransactionReads(store),
    close: async () => {
      await repo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteTransactionReads', () => {
  let store: TransactionStore;
  let reads: SqliteTransactionReads;
  beforeEach(() => {
    store = TransactionStore.open(mkdtempSync(join(tmpdir(), 'stgcmt-reads-')), { synchronous: 'normal' });
    reads = new SqliteTransactionReads(store);
  });

  it('answers the other reads as the store does', async () => {
    const { id } = store.recordRequest(newRequest({}, ['1.1', '1.2']));
    assert.deepEqual(await reads.findByKey('CT1', '9.9.1'), store.get(id));
    assert.deepEqual(await reads.findAllByUid('9.9.1'), [store.get(id)]);
    assert.deepEqual(await reads.list({ limit: 10, offset: 0 }), store.list({ limit: 10, offset: 0 }));
    assert.deepEqual(await reads.countsByState(0), { RECEIVED: 1, VERIFIED: 0, DELIVERY_RETRY: 0, REPORTED: 0, EXPIRED: 0 });
    assert.deepEqual(await reads.vanishedInstances({ limit: 0, offset: 0 }), { total: 0, items: [] });
    assert.deepEqual(await reads.pendingByModality(), []);
    assert.deepEqual(await reads.deliveryAttempts(id), []);
    assert.deepEqual(await reads.instancePage(id, { outcome: 'pending', afterSeq: -1, limit: 10 }), store.instancePage(id, { outcome: 'pending', afterSeq: -1, limit: 10 }));
    assert.deepEqual(await reads.hourlyActivity(0), store.hourlyActivity(0));
  });
});
