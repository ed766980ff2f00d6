/**
 * What the API and the dashboard call a transaction's situation (situationOf): one per thing an
 * administrator must tell apart, each with the time it dates from.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { situationOf } from '../../src/http/app.js';
import type { TransactionRecord } from '../../src/transactions/records.js';

const T0 = Date.UTC(2026, 0, 5, 8, 0, 0);
const base: TransactionRecord = {
  id: 1,
  transactionUid: '2.25.1',
  callingAeTitle: 'CT1',
  calledAeTitle: 'STGCMT',
  remoteAddress: '127.0.0.1',
  state: 'RECEIVED',
  instanceCount: 3,
  committedCount: null,
  failedCount: null,
  eventTypeId: null,
  receivedAt: T0,
  arrivalDeadline: T0 + 30_000,
  verifyDeadline: T0 + 600_000,
  expiresAt: T0 + 86_400_000,
  verifiedAt: null,
  reportedAt: null,
  expiredAt: null,
  deliveryAttempts: 0,
  nextAttemptAt: null,
  lastError: null,
  lastErrorCategory: null,
  protectedAt: null,
  vanishedCount: 0,
  watchedAt: null,
  leaseOwner: null,
  leaseUntil: null,
};
const verified = { ...base, state: 'VERIFIED', committedCount: 2, failedCount: 1, eventTypeId: 2, verifiedAt: T0 + 500 } as const;
const retrying = { ...verified, state: 'DELIVERY_RETRY', deliveryAttempts: 2, nextAttemptAt: T0 + 60_000, lastError: 'ECONNREFUSED', lastErrorCategory: 'network' } as const;

it('tells every situation apart, each dated from when it began', () => {
  const cases: Array<[string, TransactionRecord, number, boolean, boolean, string, number | null]> = [
    ['just received', base, T0 + 100, true, false, 'verifying', T0],
    ['past the grace, inside the arrival window', base, T0 + 5000, true, false, 'waiting-for-arrivals', T0],
    ['past the arrival window, still undecided', base, T0 + 40_000, true, false, 'verifying', T0],
    ['Orthanc cannot be asked', base, T0 + 5000, false, false, 'orthanc-unreachable', T0],
    ['verdict reached', verified, T0 + 600, true, false, 'delivering', T0 + 500],
    ['verdict reached, the modality cannot be called back', verified, T0 + 600, true, true, 'waiting-for-modality', T0 + 500],
    ['delivery failed on the network', retrying, T0 + 9000, true, false, 'modality-unreachable', T0 + 500],
    ['delivery failed, the modality cannot be called back', retrying, T0 + 9000, true, true, 'waiting-for-modality', T0 + 500],
    ['refused by configuration', { ...retrying, lastErrorCategory: 'configuration', lastError: 'role refused' }, T0 + 9000, true, false, 'role-refused', T0 + 500],
    ['reported, with failures', { ...verified, state: 'REPORTED', reportedAt: T0 + 700 }, T0 + 9000, true, false, 'reported-with-failures', T0 + 700],
    ['reported, all committed', { ...verified, state: 'REPORTED', committedCount: 3, failedCount: 0, eventTypeId: 1, reportedAt: T0 + 700 }, T0 + 9000, true, false, 'reported-all-committed', T0 + 700],
    ['expired', { ...retrying, state: 'EXPIRED', expiredAt: T0 + 86_400_000 }, T0 + 86_400_001, true, false, 'expired', T0 + 86_400_000],
    ['expired, the modality could not be called back', { ...retrying, state: 'EXPIRED', expiredAt: T0 + 86_400_000 }, T0 + 86_400_001, true, true, 'expired', T0 + 86_400_000],
    ['reported, the modality could not be called back', { ...verified, state: 'REPORTED', reportedAt: T0 + 700 }, T0 + 9000, true, true, 'reported-with-failures', T0 + 700],
  ];
  for (const [what, record, now, orthancOk, waitingForModality, situation, since] of cases) {
    assert.deepEqual(situationOf(record, now, orthancOk, waitingForModality), { situation, since }, what);
  }
  const seen = new Set(cases.map((c) => c[5]));
  assert.equal(seen.size, 10, 'all ten situations');
});
