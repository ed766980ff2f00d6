/**
 * The TransactionRepository contract: one suite, run against every implementation (SQLite in
 * test/unit/sqlite-repository.test.ts, PostgreSQL in test/integration/postgres-repository.test.ts).
 * Each test opens an empty repository through `open` and closes it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventType, FailureReason, type SopReference } from '../../src/commitment/types.js';
import type { NewRequest } from '../../src/transactions/records.js';
import { LeaseLostError, type Claim, type TransactionRepository } from '../../src/transactions/repository.js';

export interface OpenedRepository {
  readonly repo: TransactionRepository;
  /** A second handle on the same data (another node); the same object where there is only one process. */
  readonly other: TransactionRepository;
  close(): Promise<void>;
}

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const T0 = 1_700_000_000_000;
const TTL = 30_000;
let uidCounter = 0;

function refs(n: number, sopClassUid = CT): SopReference[] {
  uidCounter += 1;
  return Array.from({ length: n }, (_, i) => ({ sopClassUid, sopInstanceUid: `1.2.826.0.1.3680043.10.${uidCounter}.${i + 1}` }));
}

function request(references: readonly SopReference[], overrides: Partial<NewRequest> & { transactionUid?: string } = {}): NewRequest {
  uidCounter += 1;
  const { transactionUid, ...rest } = overrides;
  return {
    request: { transactionUid: transactionUid ?? `1.2.826.0.1.3680043.11.${uidCounter}`, references },
    callingAeTitle: 'MODALITY',
    calledAeTitle: 'STGCMT',
    remoteAddress: '127.0.0.1',
    now: T0,
    arrivalWaitMs: 1000,
    verifyTimeoutMs: 60_000,
    ttlMs: 3_600_000,
    ...rest,
  };
}

export function describeRepositoryContract(name: string, open: () => Promise<OpenedRepository>): void {
  /** Runs `body` against a fresh, empty repository. */
  const withRepo = (body: (r: OpenedRepository) => Promise<void>) => async () => {
    const opened = await open();
    try {
      await body(opened);
    } finally {
      await opened.close();
    }
  };

  /** Records a request and verifies it: RECEIVED -> VERIFIED, with these failures (by seq). */
  async function verified(repo: TransactionRepository, n: number, failures: Array<{ seq: number; failureReason: number }> = []): Promise<number> {
    const outcome = await repo.record(request(refs(n)));
    const claim = await repo.claim(outcome.id, 'verify', 'node-a', T0, TTL);
    assert.ok(claim);
    await repo.completeVerification(claim, failures.map((f) => ({ seq: f.seq, failureReason: f.failureReason as 0x0112 })), T0 + 10);
    return outcome.id;
  }

  describe(`TransactionRepository contract: ${name}`, () => {
    it('records a request durably: RECEIVED, with its instances undecided in request order', withRepo(async ({ repo, other }) => {
      const references = refs(3);
      const outcome = await repo.record(request(references));
      assert.equal(outcome.kind, 'created');
      const record = await other.get(outcome.id);
      assert.ok(record);
      assert.equal(record.state, 'RECEIVED');
      assert.equal(record.instanceCount, 3);
      assert.equal(record.callingAeTitle, 'MODALITY');
      assert.equal(record.receivedAt, T0);
      assert.equal(record.arrivalDeadline, T0 + 1000);
      assert.equal(record.expiresAt, T0 + 3_600_000);
      assert.equal(record.deliveryAttempts, 0);
      const undecided = await other.undecidedInstances(outcome.id, { afterSeq: -1, limit: 10 });
      assert.deepEqual(undecided.map((i) => [i.seq, i.sopClassUid, i.sopInstanceUid]), references.map((r, i) => [i, r.sopClassUid, r.sopInstanceUid]));
      assert.equal(await repo.get(outcome.id + 1000), undefined);
    }));

    it('pages the undecided instances by seq', withRepo(async ({ repo }) => {
      const { id } = await repo.record(request(refs(7)));
      const first = await repo.undecidedInstances(id, { afterSeq: -1, limit: 3 });
      const second = await repo.undecidedInstances(id, { afterSeq: first.at(-1)!.seq, limit: 3 });
      const third = await repo.undecidedInstances(id, { afterSeq: second.at(-1)!.seq, limit: 3 });
      assert.deepEqual([first, second, third].map((page) => page.map((i) => i.seq)), [[0, 1, 2], [3, 4, 5], [6]]);
    }));

    it('records a 20,000-instance request whole', withRepo(async ({ repo }) => {
      const references = refs(20_000, MR);
      const { id } = await repo.record(request(references));
      assert.equal((await repo.get(id))!.instanceCount, 20_000);
      const last = await repo.undecidedInstances(id, { afterSeq: 19_997, limit: 10 });
      assert.deepEqual(last.map((i) => i.sopInstanceUid), references.slice(19_998).map((r) => r.sopInstanceUid));
    }));

    it('one (calling AE, Transaction UID) is one transaction: the same request again is "repeated"', withRepo(async ({ repo, other }) => {
      const references = refs(2);
      const first = await repo.record(request(references, { transactionUid: '1.2.3.99' }));
      const again = await other.record(request(references, { transactionUid: '1.2.3.99', now: T0 + 5 }));
      assert.deepEqual(again, { kind: 'repeated', id: first.id });
      assert.equal((await repo.get(first.id))!.instanceCount, 2);
    }));

    it('the same Transaction UID from another AE is another transaction', withRepo(async ({ repo }) => {
      const first = await repo.record(request(refs(1), { transactionUid: '1.2.3.98' }));
      const second = await repo.record(request(refs(1), { transactionUid: '1.2.3.98', callingAeTitle: 'OTHER_AE' }));
      assert.equal(second.kind, 'created');
      assert.notEqual(second.id, first.id);
    }));

    it('the same Transaction UID with other instances: those fail with 0131H in the one transaction', withRepo(async ({ repo }) => {
      const references = refs(2);
      const first = await repo.record(request(references, { transactionUid: '1.2.3.97' }));
      const extra = refs(1);
      const again = await repo.record(request([references[0]!, ...extra], { transactionUid: '1.2.3.97' }));
      assert.deepEqual(again, { kind: 'conflicting', id: first.id, conflicting: 1 });
      assert.equal((await repo.get(first.id))!.instanceCount, 3);
      const claim = await repo.claim(first.id, 'verify', 'node-a', T0, TTL);
      assert.ok(claim);
      await repo.completeVerification(claim, [], T0 + 1);
      const verdict = await repo.verdict(first.id);
      assert.deepEqual(verdict.committed, references);
      assert.deepEqual(verdict.failed, [{ ...extra[0]!, failureReason: FailureReason.DuplicateTransactionUid }]);
    }));

    it('two nodes recording the same Transaction UID at once end with one transaction', withRepo(async ({ repo, other }) => {
      const references = refs(50);
      const outcomes = await Promise.all([repo.record(request(references, { transactionUid: '1.2.3.96' })), other.record(request(references, { transactionUid: '1.2.3.96' }))]);
      assert.deepEqual(outcomes.map((o) => o.kind).sort(), ['created', 'repeated']);
      assert.equal(outcomes[0].id, outcomes[1].id);
      assert.equal((await repo.get(outcomes[0].id))!.instanceCount, 50);
    }));

    it('failures decided at intake are recorded with the request', withRepo(async ({ repo }) => {
      const references = refs(3);
      const { id } = await repo.record(request(references, { decidedAtIntake: new Map([[1, FailureReason.ReferencedSopClassNotSupported]]) }));
      assert.deepEqual((await repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).map((i) => i.seq), [0, 2]);
    }));

    it('verify work: claimed oldest first, up to the limit, by one node at a time while the claim lives', withRepo(async ({ repo, other }) => {
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await repo.record(request(refs(1)))).id);
      const claims = await repo.claimDue('verify', 'node-a', T0, TTL, 2);
      assert.deepEqual(claims.map((c) => c.id), ids.slice(0, 2));
      for (const claim of claims) {
        assert.equal(claim.owner, 'node-a');
        assert.equal(claim.kind, 'verify');
        assert.equal(claim.until, T0 + TTL);
        assert.equal(claim.record.state, 'RECEIVED');
      }
      const rest = await other.claimDue('verify', 'node-b', T0 + 1, TTL, 10);
      assert.deepEqual(rest.map((c) => c.id), [ids[2]]);
      assert.deepEqual(await other.claimDue('verify', 'node-b', T0 + TTL - 1, TTL, 10), []);
      assert.equal(await other.claim(ids[0]!, 'verify', 'node-b', T0 + TTL - 1, TTL), undefined);
    }));

    it('a dead node\'s claim expires: another node takes the work over with a higher epoch', withRepo(async ({ repo, other }) => {
      const { id } = await repo.record(request(refs(1)));
      const a = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      assert.ok(a);
      const b = await other.claimDue('verify', 'node-b', T0 + TTL, TTL, 10);
      assert.deepEqual(b.map((c) => c.id), [id]);
      assert.ok(b[0]!.epoch > a.epoch);
      assert.equal(b[0]!.until, T0 + 2 * TTL);
    }));

    it('renew extends a held claim; a claim taken over cannot be renewed', withRepo(async ({ repo, other }) => {
      const { id } = await repo.record(request(refs(1)));
      const a = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      assert.ok(a);
      const renewed = await repo.renew(a, T0 + TTL / 2, TTL);
      assert.ok(renewed);
      assert.equal(renewed.until, T0 + TTL / 2 + TTL);
      assert.equal(renewed.epoch, a.epoch);
      assert.equal(await other.claim(id, 'verify', 'node-b', T0 + TTL + 1, TTL), undefined, 'the renewed claim still holds');
      const b = await other.claim(id, 'verify', 'node-b', T0 + TTL / 2 + TTL, TTL);
      assert.ok(b);
      assert.equal(await repo.renew(renewed, T0 + TTL / 2 + TTL + 1, TTL), undefined);
    }));

    it('a released claim lets another node claim at once; releasing a lost claim changes nothing', withRepo(async ({ repo, other }) => {
      const { id } = await repo.record(request(refs(1)));
      const a = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      assert.ok(a);
      await repo.release(a);
      const b = await other.claim(id, 'verify', 'node-b', T0 + 1, TTL);
      assert.ok(b);
      await repo.release(a);
      assert.equal(await repo.claim(id, 'verify', 'node-a', T0 + 2, TTL), undefined, "a stale release must not free node-b's claim");
      assert.ok(await other.renew(b, T0 + 3, TTL));
    }));

    it('completes a verification: failures saved, the rest committed, VERIFIED, the claim released', withRepo(async ({ repo, other }) => {
      const references = refs(4);
      const { id } = await repo.record(request(references));
      const claim = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      assert.ok(claim);
      await repo.saveOutcomes(claim, [{ seq: 0, outcome: 'committed' }, { seq: 1, outcome: 'failed', failureReason: FailureReason.ClassInstanceConflict, storedSopClassUid: MR }]);
      assert.deepEqual((await repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).map((i) => i.seq), [2, 3]);
      const record = await repo.completeVerification(claim, [{ seq: 3, failureReason: FailureReason.NoSuchObjectInstance }], T0 + 50);
      assert.equal(record.state, 'VERIFIED');
      assert.equal(record.verifiedAt, T0 + 50);
      assert.equal(record.committedCount, 2);
      assert.equal(record.failedCount, 2);
      assert.equal(record.eventTypeId, EventType.SomeFailed);
      const verdict = await other.verdict(id);
      assert.deepEqual(verdict.committed, [references[0], references[2]]);
      assert.deepEqual(verdict.failed, [
        { ...references[1]!, failureReason: FailureReason.ClassInstanceConflict },
        { ...references[3]!, failureReason: FailureReason.NoSuchObjectInstance },
      ]);
      const counts = (await repo.outcomeCounts(id)).map((c) => `${c.outcome}:${c.failureReason ?? '-'}:${c.count}`).sort();
      assert.deepEqual(counts, ['committed:-:2', `failed:${FailureReason.ClassInstanceConflict}:1`, `failed:${FailureReason.NoSuchObjectInstance}:1`].sort());
      assert.equal(await repo.renew(claim, T0 + 60, TTL), undefined, 'completing released the claim');
      const deliver = await other.claim(id, 'deliver', 'node-b', T0 + 60, TTL);
      assert.ok(deliver, 'the report is anyone\'s to deliver at once');
    }));

    it('a verification may hand its claim over to the delivery, atomically: no other node can slip in', withRepo(async ({ repo, other }) => {
      const { id } = await repo.record(request(refs(2)));
      const v = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      assert.ok(v);
      const verified = await repo.completeVerification(v, [], T0 + 5, { ttlMs: TTL });
      assert.equal(verified.state, 'VERIFIED');
      const handed = verified.deliverClaim;
      assert.ok(handed);
      assert.deepEqual([handed.kind, handed.owner, handed.until], ['deliver', 'node-a', T0 + 5 + TTL]);
      assert.ok(handed.epoch > v.epoch);
      assert.equal((await other.get(id))?.leaseOwner, 'node-a');
      assert.equal(await other.claim(id, 'deliver', 'node-b', T0 + 6, TTL), undefined, 'held by node-a from the verdict on');
      assert.deepEqual(await other.claimDue('deliver', 'node-b', T0 + 6, TTL, 10), []);
      const reported = await repo.recordDelivery(handed, { at: T0 + 7, via: 'same-association', ok: true, error: null, durationMs: 1 }, undefined);
      assert.equal(reported.state, 'REPORTED');
    }));

    it('all committed: Event Type 1', withRepo(async ({ repo }) => {
      const id = await verified(repo, 3);
      const record = await repo.get(id);
      assert.equal(record!.eventTypeId, EventType.AllCommitted);
      assert.equal(record!.committedCount, 3);
      assert.equal(record!.failedCount, 0);
    }));

    it('a node whose verify claim was taken over can neither save nor complete', withRepo(async ({ repo, other }) => {
      const { id } = await repo.record(request(refs(2)));
      const a = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      assert.ok(a);
      const b = await other.claim(id, 'verify', 'node-b', T0 + TTL, TTL);
      assert.ok(b);
      await assert.rejects(repo.saveOutcomes(a, [{ seq: 0, outcome: 'committed' }]), LeaseLostError);
      await assert.rejects(repo.completeVerification(a, [{ seq: 1, failureReason: FailureReason.NoSuchObjectInstance }], T0 + TTL + 1), LeaseLostError);
      assert.equal((await repo.get(id))!.state, 'RECEIVED');
      assert.equal((await repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).length, 2);
      const record = await other.completeVerification(b, [], T0 + TTL + 2);
      assert.equal(record.committedCount, 2);
    }));

    it('deliver work: VERIFIED now, DELIVERY_RETRY when due, never RECEIVED or finished', withRepo(async ({ repo, other }) => {
      const received = (await repo.record(request(refs(1)))).id;
      const fresh = await verified(repo, 1);
      const retrying = await verified(repo, 1);
      const done = await verified(repo, 1);
      const retryClaim = await repo.claim(retrying, 'deliver', 'node-a', T0 + 20, TTL);
      assert.ok(retryClaim);
      const after = await repo.recordDelivery(retryClaim, { at: T0 + 21, via: 'new-association', ok: false, error: 'ECONNREFUSED', durationMs: 3, category: 'network' }, T0 + 5000);
      assert.equal(after.state, 'DELIVERY_RETRY');
      assert.equal(after.nextAttemptAt, T0 + 5000);
      assert.equal(after.lastError, 'ECONNREFUSED');
      assert.equal(after.lastErrorCategory, 'network');
      assert.equal(after.deliveryAttempts, 1);
      const doneClaim = await repo.claim(done, 'deliver', 'node-a', T0 + 20, TTL);
      assert.ok(doneClaim);
      const reported = await repo.recordDelivery(doneClaim, { at: T0 + 22, via: 'same-association', ok: true, error: null, durationMs: 4 }, undefined);
      assert.equal(reported.state, 'REPORTED');
      assert.equal(reported.reportedAt, T0 + 22);
      assert.equal(reported.lastError, null);

      assert.deepEqual((await other.claimDue('deliver', 'node-b', T0 + 100, TTL, 10)).map((c) => c.id), [fresh]);
      assert.deepEqual((await other.claimDue('deliver', 'node-b', T0 + 5000, TTL, 10)).map((c) => c.id), [retrying]);
      assert.equal(await other.claim(received, 'deliver', 'node-b', T0 + 5000, TTL), undefined);
      assert.equal(await other.claim(done, 'deliver', 'node-b', T0 + 5000, TTL), undefined);
      assert.equal(await other.claim(fresh, 'verify', 'node-b', T0 + 5000, TTL), undefined);
    }));

    it('a node whose deliver claim was taken over cannot record the delivery', withRepo(async ({ repo, other }) => {
      const id = await verified(repo, 1);
      const a = await repo.claim(id, 'deliver', 'node-a', T0 + 20, TTL);
      assert.ok(a);
      const b = await other.claim(id, 'deliver', 'node-b', T0 + 20 + TTL, TTL);
      assert.ok(b);
      assert.equal(await repo.renew(a, T0 + 21 + TTL, TTL), undefined, 'the stalled node learns it lost the report before it sends');
      await assert.rejects(repo.recordDelivery(a, { at: T0 + 21 + TTL, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined), LeaseLostError);
      const record = await repo.get(id);
      assert.equal(record!.state, 'VERIFIED');
      assert.equal(record!.deliveryAttempts, 0);
    }));

    it('expires reports not delivered within their lifetime, whoever holds them', withRepo(async ({ repo }) => {
      const pending = await verified(repo, 1);
      const received = (await repo.record(request(refs(1), { ttlMs: 10 }))).id;
      const held = await repo.claim(pending, 'deliver', 'node-a', T0 + 20, TTL);
      assert.ok(held);
      assert.deepEqual(await repo.expireOverdue(T0 + 3_599_999), []);
      const expired = await repo.expireOverdue(T0 + 3_600_000);
      assert.deepEqual(expired.map((r) => [r.id, r.state, r.expiredAt]), [[pending, 'EXPIRED', T0 + 3_600_000]]);
      assert.equal((await repo.get(received))!.state, 'RECEIVED', 'a request still being verified is not expired');
      await assert.rejects(repo.recordDelivery(held, { at: T0 + 3_600_001, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined));
      assert.equal((await repo.get(pending))!.state, 'EXPIRED');
    }));

    it('redeliver: a finished report goes back to VERIFIED with a longer lifetime', withRepo(async ({ repo, other }) => {
      const id = await verified(repo, 2, [{ seq: 1, failureReason: FailureReason.NoSuchObjectInstance }]);
      const claim = await repo.claim(id, 'deliver', 'node-a', T0 + 20, TTL);
      assert.ok(claim);
      await repo.recordDelivery(claim, { at: T0 + 30, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
      const again = await other.redeliver(id, T0 + 7_200_000, 3_600_000);
      assert.equal(again!.state, 'VERIFIED');
      assert.equal(again!.expiresAt, T0 + 10_800_000);
      assert.equal(again!.eventTypeId, EventType.SomeFailed);
      assert.ok(await repo.claim(id, 'deliver', 'node-a', T0 + 7_200_001, TTL));
      assert.equal(await repo.redeliver(id + 1000, T0, TTL), undefined);
    }));

    it('the modality re-sends a reported request: the report is delivered again', withRepo(async ({ repo }) => {
      const references = refs(1);
      const { id } = await repo.record(request(references, { transactionUid: '1.2.3.95' }));
      const v = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      await repo.completeVerification(v!, [], T0 + 1);
      const d = await repo.claim(id, 'deliver', 'node-a', T0 + 2, TTL);
      await repo.recordDelivery(d!, { at: T0 + 3, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
      const again = await repo.record(request(references, { transactionUid: '1.2.3.95', now: T0 + 10 }));
      assert.deepEqual(again, { kind: 'repeated', id });
      assert.equal((await repo.get(id))!.state, 'VERIFIED');
      assert.ok(await repo.claim(id, 'deliver', 'node-a', T0 + 11, TTL));
    }));

    it('an owed report is claimable before its retry is due, and never from under a live claim', withRepo(async ({ repo, other }) => {
      const id = await verified(repo, 1);
      const first = await repo.claim(id, 'deliver', 'node-a', T0 + 20, TTL);
      await repo.recordDelivery(first!, { at: T0 + 21, via: 'new-association', ok: false, error: 'ECONNREFUSED', durationMs: 1, category: 'network' }, T0 + 600_000);
      assert.equal(await repo.claim(id, 'deliver', 'node-a', T0 + 22, TTL), undefined, 'not due for the usual path');
      const owed = await repo.claim(id, 'owed', 'node-a', T0 + 22, TTL);
      assert.ok(owed, 'due for an association the modality opened');
      assert.equal(owed.kind, 'owed');
      assert.equal(await other.claim(id, 'owed', 'node-b', T0 + 23, TTL), undefined, "node-a's claim is live");
      const reported = await repo.recordDelivery(owed, { at: T0 + 24, via: 'same-association', ok: true, error: null, durationMs: 1 }, undefined);
      assert.equal(reported.state, 'REPORTED');
      assert.equal(await other.claim(id, 'owed', 'node-b', T0 + 25, TTL), undefined, 'nothing owed once reported');
    }));

    it('work due: free or own claims only, oldest first, up to the limit', withRepo(async ({ repo, other }) => {
      const a = (await repo.record(request(refs(1)))).id;
      const b = (await repo.record(request(refs(1)))).id;
      const c = (await repo.record(request(refs(1)))).id;
      assert.ok(await repo.claim(b, 'verify', 'node-a', T0, TTL));
      assert.deepEqual(await other.workDue('verify', 'node-b', T0 + 1, 10), [a, c]);
      assert.deepEqual(await repo.workDue('verify', 'node-a', T0 + 1, 10), [a, b, c]);
      assert.deepEqual(await other.workDue('verify', 'node-b', T0 + TTL, 2), [a, b]);
      assert.deepEqual(await other.workDue('deliver', 'node-b', T0 + TTL, 10), []);
    }));

    it("a restarted node drops its previous run's claims, and only those", withRepo(async ({ repo, other }) => {
      const a = (await repo.record(request(refs(1)))).id;
      const b = (await repo.record(request(refs(1)))).id;
      assert.ok(await repo.claim(a, 'verify', 'node-a', T0, TTL));
      const held = await other.claim(b, 'verify', 'node-b', T0, TTL);
      assert.ok(held);
      assert.equal(await repo.releaseOwnedBy('node-a'), 1);
      assert.ok(await other.claim(a, 'verify', 'node-b', T0 + 1, TTL));
      assert.ok(await other.renew(held, T0 + 2, TTL), "node-b's claims are untouched");
    }));

    it('pending reports of one AE: verified or retrying, not expired, oldest first', withRepo(async ({ repo }) => {
      const first = await verified(repo, 1);
      const second = await verified(repo, 1);
      await repo.record(request(refs(1)));
      const delivered = await verified(repo, 1);
      const claim = await repo.claim(delivered, 'deliver', 'node-a', T0 + 20, TTL);
      await repo.recordDelivery(claim!, { at: T0 + 21, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
      await repo.record(request(refs(1), { callingAeTitle: 'OTHER_AE' }));
      assert.deepEqual(await repo.pendingReports('MODALITY', T0 + 30), [first, second]);
      assert.deepEqual(await repo.pendingReports('OTHER_AE', T0 + 30), []);
      assert.deepEqual(await repo.pendingReports('MODALITY', T0 + 3_600_000), []);
    }));

    it('indexes a transaction for search a slice at a time, and knows which are not done', withRepo(async ({ repo, other }) => {
      const a = (await repo.record(request(refs(5)))).id;
      const b = (await repo.record(request(refs(1)))).id;
      assert.deepEqual((await other.unindexedIds()).filter((id) => id === a || id === b), [a, b]);
      const after = await repo.indexForSearch(a, -1, 2);
      assert.equal(after, 1);
      assert.equal(await repo.indexForSearch(a, 1, 2), 3);
      assert.equal(await repo.indexForSearch(a, 3, 2), undefined);
      assert.equal(await repo.indexForSearch(a, -1, 2), undefined, 'done is done');
      assert.deepEqual((await other.unindexedIds()).filter((id) => id === a || id === b), [b]);
    }));

    it('pages instances by outcome', withRepo(async ({ repo }) => {
      const id = await verified(repo, 5, [{ seq: 1, failureReason: FailureReason.NoSuchObjectInstance }, { seq: 3, failureReason: FailureReason.NoSuchObjectInstance }]);
      const page = async (outcome: 'all' | 'committed' | 'failed', afterSeq = -1, limit = 10) => (await repo.instancePage(id, { outcome, afterSeq, limit })).map((i) => i.seq);
      assert.deepEqual(await page('committed'), [0, 2, 4]);
      assert.deepEqual(await page('failed'), [1, 3]);
      assert.deepEqual(await page('all', 1, 2), [2, 3]);
      const [failed] = await repo.instancePage(id, { outcome: 'failed', afterSeq: -1, limit: 1 });
      assert.deepEqual([failed?.outcome, failed?.failureReason], ['failed', FailureReason.NoSuchObjectInstance]);
    }));

    it('protection: marked on a VERIFIED report; instances gone meanwhile fail with 0112H and the counts follow', withRepo(async ({ repo }) => {
      const id = await verified(repo, 3);
      await repo.markProtected(id, T0 + 40, [2]);
      const record = await repo.get(id);
      assert.deepEqual([record?.protectedAt, record?.committedCount, record?.failedCount, record?.eventTypeId], [T0 + 40, 2, 1, EventType.SomeFailed]);
      assert.deepEqual((await repo.verdict(id)).failed.map((f) => f.failureReason), [FailureReason.NoSuchObjectInstance]);
    }));

    it('the watch: reported transactions, their committed instances a page at a time, vanished ones recorded once', withRepo(async ({ repo, other }) => {
      const id = await verified(repo, 3, [{ seq: 0, failureReason: FailureReason.NoSuchObjectInstance }]);
      const claim = await repo.claim(id, 'deliver', 'node-a', T0 + 20, TTL);
      await repo.recordDelivery(claim!, { at: T0 + 30, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
      assert.deepEqual(await other.transactionsToWatch(T0 + 31, 10), []);
      assert.deepEqual(await other.transactionsToWatch(T0, 10), [{ id, afterSeq: -1 }]);
      assert.deepEqual((await other.committedToWatch(id, -1, 1)).map((i) => i.seq), [1]);
      assert.equal(await other.recordWatch(id, [2], 1, T0 + 50), 1);
      assert.deepEqual(await other.transactionsToWatch(T0, 10), [{ id, afterSeq: 1 }]);
      assert.equal(await other.recordWatch(id, [2], null, T0 + 60), 0, 'already recorded');
      const record = await repo.get(id);
      assert.deepEqual([record?.vanishedCount, record?.watchedAt], [1, T0 + 60]);
      assert.deepEqual((await repo.instancePage(id, { outcome: 'vanished', afterSeq: -1, limit: 10 })).map((i) => [i.seq, i.vanishedAt]), [[2, T0 + 50]]);
    }));

    it('purges finished transactions received before the cutoff, and nothing else', withRepo(async ({ repo }) => {
      const old = await verified(repo, 1);
      const claim = await repo.claim(old, 'deliver', 'node-a', T0 + 20, TTL);
      await repo.recordDelivery(claim!, { at: T0 + 30, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
      const pending = await verified(repo, 1);
      const fresh = (await repo.record(request(refs(1), { now: T0 + 1000 }))).id;
      assert.equal(await repo.purgeFinished(T0 + 1), 1);
      assert.equal(await repo.get(old), undefined);
      assert.ok(await repo.get(pending));
      assert.ok(await repo.get(fresh));
    }));

    it('keeps the last peer list, replaced whole', withRepo(async ({ repo, other }) => {
      await repo.savePeers([{ aeTitle: 'CT1', host: '10.0.0.5', port: 104, tls: false, source: 'orthanc' }, { aeTitle: 'MR1', host: 'mr.local', port: 11112, tls: true, source: 'file' }]);
      await repo.savePeers([{ aeTitle: 'CT1', host: '10.0.0.6', port: 104, tls: false, source: 'orthanc' }]);
      assert.deepEqual(await other.loadPeers(), [{ aeTitle: 'CT1', host: '10.0.0.6', port: 104, tls: false, source: 'orthanc' }]);
      assert.equal((await repo.health()).ok, true);
    }));

    it('a claim is exclusive, even against the node holding it', withRepo(async ({ repo }) => {
      const { id } = await repo.record(request(refs(1)));
      assert.ok(await repo.claim(id, 'verify', 'node-a', T0, TTL));
      assert.equal(await repo.claim(id, 'verify', 'node-a', T0 + 1, TTL), undefined);
      assert.deepEqual(await repo.claimDue('verify', 'node-a', T0 + 1, TTL, 10), []);
    }));

    it('a request re-sent during a delivery ends that delivery: its record is refused, and the report is due again', withRepo(async ({ repo, other }) => {
      const references = refs(1);
      const { id } = await repo.record(request(references, { transactionUid: '1.2.3.94' }));
      const v = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      await repo.completeVerification(v!, [], T0 + 1);
      const inFlight = await repo.claim(id, 'deliver', 'node-a', T0 + 2, TTL);
      assert.ok(inFlight);
      assert.deepEqual(await other.record(request(references, { transactionUid: '1.2.3.94', now: T0 + 3 })), { kind: 'repeated', id });
      await assert.rejects(repo.recordDelivery(inFlight, { at: T0 + 4, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined), LeaseLostError);
      const again = await other.claim(id, 'deliver', 'node-b', T0 + 5, TTL);
      assert.ok(again, 'the report is due again, for any node');
      assert.ok(again.epoch > inFlight.epoch);
    }));

    it('a new request recorded with a claim is the recording node\'s from the first moment: no other node finds or takes it until the claim ends', withRepo(async ({ repo, other }) => {
      const recorded = await repo.record(request(refs(2)), { owner: 'node-a', ttlMs: TTL });
      assert.equal(recorded.kind, 'created');
      const claim = recorded.claim;
      assert.ok(claim, 'claimed as it was recorded');
      assert.deepEqual([claim.id, claim.kind, claim.owner, claim.until], [recorded.id, 'verify', 'node-a', T0 + TTL]);
      assert.equal(claim.record.state, 'RECEIVED');
      assert.equal((await other.get(recorded.id))?.leaseOwner, 'node-a');
      // Another node's periodic pass, between the N-ACTION-RSP and the recording node's own start.
      assert.deepEqual(await other.workDue('verify', 'node-b', T0 + 1, 10), []);
      assert.equal(await other.claim(recorded.id, 'verify', 'node-b', T0 + 1, TTL), undefined);
      assert.deepEqual(await other.claimDue('verify', 'node-b', T0 + 1, TTL, 10), []);
      assert.deepEqual(await repo.workDue('verify', 'node-a', T0 + 1, 10), [recorded.id], 'its own');
      const renewed = await repo.renew(claim, T0 + 2, TTL);
      assert.ok(renewed, 'renewed like any claim');
      const verified = await repo.completeVerification(renewed, [], T0 + 3);
      assert.equal(verified.state, 'VERIFIED');
      // Without a claim asked for, nothing changes: free for any node.
      const plain = await repo.record(request(refs(1)));
      assert.equal(plain.claim, undefined);
      assert.ok(await other.claim(plain.id, 'verify', 'node-b', T0 + 1, TTL));
    }));

    it('a claim taken with the record runs out like any other: a node that died right after recording is taken over', withRepo(async ({ repo, other }) => {
      const recorded = await repo.record(request(refs(1)), { owner: 'node-a', ttlMs: TTL });
      assert.ok(recorded.claim);
      const taken = await other.claim(recorded.id, 'verify', 'node-b', T0 + TTL, TTL);
      assert.ok(taken, 'free once the claim ran out');
      assert.ok(taken.epoch > recorded.claim.epoch);
      await assert.rejects(repo.completeVerification(recorded.claim, [], T0 + TTL + 1), LeaseLostError);
    }));

    it('a re-sent request that reopens its report is claimed for delivery by the recording node in the same step', withRepo(async ({ repo, other }) => {
      const references = refs(1);
      const { id } = await repo.record(request(references, { transactionUid: '1.2.3.93' }));
      const v = await repo.claim(id, 'verify', 'node-a', T0, TTL);
      await repo.completeVerification(v!, [], T0 + 1);
      const d = await repo.claim(id, 'deliver', 'node-a', T0 + 2, TTL);
      await repo.recordDelivery(d!, { at: T0 + 3, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
      const again = await other.record(request(references, { transactionUid: '1.2.3.93', now: T0 + 10 }), { owner: 'node-b', ttlMs: TTL });
      assert.equal(again.kind, 'repeated');
      assert.deepEqual([again.claim?.kind, again.claim?.owner, again.claim?.record.state], ['deliver', 'node-b', 'VERIFIED']);
      assert.equal(await repo.claim(id, 'deliver', 'node-a', T0 + 11, TTL), undefined, 'held by the node that has the modality\'s association');
      assert.deepEqual(await repo.workDue('deliver', 'node-a', T0 + 11, 10), []);
      // Re-sent while still being verified: the verification goes on; no claim is taken from under it.
      const pending = await repo.record(request(refs(1), { transactionUid: '1.2.3.92' }), { owner: 'node-a', ttlMs: TTL });
      const resent = await other.record(request(refs(1), { transactionUid: '1.2.3.92', now: T0 + 1 }), { owner: 'node-b', ttlMs: TTL });
      assert.equal(resent.claim, undefined);
      assert.equal((await repo.get(pending.id))?.leaseOwner, 'node-a');
    }));

    it('two nodes claiming the same 40 transactions at once never share one', withRepo(async ({ repo, other }) => {
      for (let i = 0; i < 40; i++) await repo.record(request(refs(1)));
      const rounds: Claim[][] = [];
      for (let round = 0; round < 4; round++) {
        rounds.push(...(await Promise.all([repo.claimDue('verify', 'node-a', T0, TTL, 7), other.claimDue('verify', 'node-b', T0, TTL, 7)])));
      }
      const ids = rounds.flat().map((c) => c.id);
      assert.equal(new Set(ids).size, ids.length, 'no transaction claimed twice');
      assert.equal(ids.length, 40);
    }));
  });
}
