import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { FailureReason } from '../../src/commitment/types.js';
import { canTransition } from '../../src/commitment/lifecycle.js';
import { IllegalTransitionError, TransactionStore } from '../../src/store/transaction-store.js';
import type { NewRequest } from '../../src/transactions/records.js';
import { CT, ctRefs, newRequest } from '../harness/store-fixtures.js';

const refs = ctRefs;
const request = (overrides: Partial<NewRequest> = {}, uids = ['1.1', '1.2']): NewRequest => newRequest(overrides, uids);

describe('TransactionStore', () => {
  let store: TransactionStore;
  beforeEach(() => {
    store = TransactionStore.open(mkdtempSync(join(tmpdir(), 'stgcmt-store-')), { synchronous: 'normal' });
  });

  function verifyAll(id: number, failedSeq?: number): void {
    store.saveOutcomes(
      id,
      store.undecidedInstances(id).map((i) => (i.seq === failedSeq ? { seq: i.seq, outcome: 'failed' as const, failureReason: FailureReason.NoSuchObjectInstance } : { seq: i.seq, outcome: 'committed' as const })),
    );
    store.completeVerification(id, 2000);
  }

  it('records a request with its instances in order, RECEIVED', () => {
    const outcome = store.recordRequest(request());
    assert.equal(outcome.kind, 'created');
    const record = store.get(outcome.id)!;
    assert.equal(record.state, 'RECEIVED');
    assert.equal(record.arrivalDeadline, 1010);
    assert.equal(record.expiresAt, 11_000);
    assert.deepEqual(store.undecidedInstances(outcome.id).map((i) => i.sopInstanceUid), ['1.1', '1.2']);
    assert.deepEqual(store.receivedIds(), [outcome.id]);
  });

  it('survives reopening: the same file holds the same transactions', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stgcmt-store-'));
    const first = TransactionStore.open(dir, { synchronous: 'full' });
    const { id } = first.recordRequest(request());
    first.close();
    const again = TransactionStore.open(dir, { synchronous: 'full' });
    assert.equal(again.get(id)?.transactionUid, '9.9.1');
    assert.equal(again.instances(id).length, 2);
    again.close();
  });

  it('walks RECEIVED -> VERIFIED -> DELIVERY_RETRY -> REPORTED with counts and the attempt log', () => {
    const { id } = store.recordRequest(request());
    verifyAll(id, 1);
    let record = store.get(id)!;
    assert.equal(record.state, 'VERIFIED');
    assert.deepEqual([record.committedCount, record.failedCount, record.eventTypeId], [1, 1, 2]);
    assert.deepEqual(store.verdict(id).failed.map((f) => f.failureReason), [0x0112]);
    assert.deepEqual(store.dueForDelivery(2000), [id]);

    store.recordDelivery(id, { at: 3000, via: 'new-association', ok: false, error: 'ECONNREFUSED', durationMs: 3 }, 8000);
    record = store.get(id)!;
    assert.equal(record.state, 'DELIVERY_RETRY');
    assert.equal(record.lastError, 'ECONNREFUSED');
    assert.deepEqual(store.dueForDelivery(7999), []);
    assert.deepEqual(store.dueForDelivery(8000), [id]);

    store.recordDelivery(id, { at: 8000, via: 'new-association', ok: true, error: null, durationMs: 5 }, undefined);
    record = store.get(id)!;
    assert.equal(record.state, 'REPORTED');
    assert.equal(record.deliveryAttempts, 2);
    assert.deepEqual(store.deliveryAttempts(id).map((a) => a.ok), [false, true]);
  });

  it('refuses to complete a verification with undecided instances, and illegal transitions', () => {
    const { id } = store.recordRequest(request());
    assert.throws(() => store.completeVerification(id, 1), /undecided/);
    assert.throws(() => store.recordDelivery(id, { at: 1, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined), IllegalTransitionError);
    assert.equal(canTransition('REPORTED', 'DELIVERY_RETRY'), false);
  });

  it('folds a re-sent Transaction UID with the same instances into the first, and reports it again', () => {
    const { id } = store.recordRequest(request());
    verifyAll(id);
    store.recordDelivery(id, { at: 3000, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
    const again = store.recordRequest(request({ now: 5000 }));
    assert.deepEqual(again, { kind: 'repeated', id });
    assert.equal(store.get(id)!.state, 'VERIFIED');
    assert.equal(store.list({ limit: 10, offset: 0 }).total, 1);
  });

  it('fails instances a re-sent Transaction UID adds with 0131H', () => {
    const { id } = store.recordRequest(request());
    verifyAll(id);
    const again = store.recordRequest(request({}, ['1.1', '1.3']));
    assert.deepEqual(again, { kind: 'conflicting', id, conflicting: 1 });
    const verdict = store.verdict(id);
    assert.deepEqual(verdict.committed.map((c) => c.sopInstanceUid), ['1.1', '1.2']);
    assert.deepEqual(verdict.failed, [{ sopClassUid: CT, sopInstanceUid: '1.3', failureReason: FailureReason.DuplicateTransactionUid }]);
    assert.equal(store.get(id)!.eventTypeId, 2);
  });

  it('keeps transactions of different AEs apart even with the same Transaction UID', () => {
    const a = store.recordRequest(request());
    const b = store.recordRequest(request({ callingAeTitle: 'MR1' }));
    assert.notEqual(a.id, b.id);
  });

  it('expires undelivered reports past their lifetime, and redelivers on request', () => {
    const { id } = store.recordRequest(request());
    verifyAll(id);
    assert.deepEqual(store.expireOverdue(10_999), []);
    const expired = store.expireOverdue(11_000);
    assert.deepEqual(expired.map((r) => [r.id, r.state]), [[id, 'EXPIRED']]);
    assert.deepEqual(store.dueForDelivery(20_000), []);
    const back = store.redeliver(id, 20_000, 10_000)!;
    assert.equal(back.state, 'VERIFIED');
    assert.equal(back.expiresAt, 30_000);
  });

  it('lists with filters and paging, counts by state, purges only finished ones', () => {
    for (let i = 0; i < 5; i++) store.recordRequest(request({ request: { transactionUid: `9.${i}`, references: refs('1.1') }, now: 1000 + i, callingAeTitle: i % 2 ? 'MR1' : 'CT1' }));
    const page = store.list({ callingAeTitle: 'CT1', limit: 2, offset: 0 });
    assert.equal(page.total, 3);
    assert.deepEqual(page.items.map((r) => r.transactionUid), ['9.4', '9.2']);
    assert.deepEqual(store.list({ callingAeTitle: 'CT1', limit: 2, offset: 2 }).items.map((r) => r.transactionUid), ['9.0']);
    assert.equal(store.list({ receivedFrom: 1003, limit: 10, offset: 0 }).total, 2);
    assert.equal(store.countsByState(0).RECEIVED, 5);
    assert.equal(store.purgeFinished(1_000_000), 0);
  });

  it('remembers the last peer list', () => {
    store.savePeers([{ aeTitle: 'CT1', host: 'ct', port: 104, tls: true, source: 'orthanc' }]);
    assert.deepEqual(store.loadPeers(), [{ aeTitle: 'CT1', host: 'ct', port: 104, tls: true, source: 'orthanc' }]);
  });
});

describe('TransactionStore bulk paths', () => {
  it('records 1,234 instances through multi-row inserts, commits the rest in one statement, counts outcomes', () => {
    const store = TransactionStore.open(mkdtempSync(join(tmpdir(), 'stgcmt-store-')), { synchronous: 'normal' });
    const uids = Array.from({ length: 1234 }, (_, i) => `1.2.${i}`);
    const { id } = store.recordRequest(request({}, uids));
    assert.deepEqual(store.undecidedInstances(id).map((i) => i.sopInstanceUid), uids);
    store.saveFinalOutcomes(id, [
      { seq: 7, failureReason: FailureReason.NoSuchObjectInstance },
      { seq: 1000, failureReason: FailureReason.ClassInstanceConflict },
    ]);
    store.completeVerification(id, 5);
    const verdict = store.verdict(id);
    assert.equal(verdict.committed.length, 1232);
    assert.deepEqual(verdict.failed.map((f) => [f.sopInstanceUid, f.failureReason]), [['1.2.7', 0x0112], ['1.2.1000', 0x0119]]);
    assert.deepEqual(
      store.outcomeCounts(id).sort((a, b) => a.count - b.count),
      [
        { outcome: 'failed', failureReason: 0x0112, count: 1 },
        { outcome: 'failed', failureReason: 0x0119, count: 1 },
        { outcome: 'committed', failureReason: null, count: 1232 },
      ].sort((a, b) => a.count - b.count),
    );
  });
});

describe('TransactionStore migrations', () => {
  it('adds the stored SOP Class column to a store created before it existed', async () => {
    const { default: Database } = await import('better-sqlite3');
    const dir = mkdtempSync(join(tmpdir(), 'stgcmt-store-'));
    const old = new Database(join(dir, 'stgcmt.sqlite'));
    old.exec(`CREATE TABLE instances (transaction_id INTEGER NOT NULL, seq INTEGER NOT NULL, sop_class_uid TEXT NOT NULL,
      sop_instance_uid TEXT NOT NULL, outcome TEXT, failure_reason INTEGER, PRIMARY KEY (transaction_id, seq)) WITHOUT ROWID`);
    old.close();
    const store = TransactionStore.open(dir, { synchronous: 'normal' });
    const { id } = store.recordRequest(request());
    store.saveFinalOutcomes(id, [{ seq: 0, failureReason: FailureReason.ClassInstanceConflict, storedSopClassUid: '1.2.840.10008.5.1.4.1.1.4' }]);
    assert.equal(store.instances(id)[0]?.storedSopClassUid, '1.2.840.10008.5.1.4.1.1.4');
    store.close();
  });
});
