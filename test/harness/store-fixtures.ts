/** A recordable request for store-level unit tests, with the timings they share. */
import type { NewRequest } from '../../src/transactions/records.js';

export const CT = '1.2.840.10008.5.1.4.1.1.2';

export const ctRefs = (...uids: string[]): Array<{ sopClassUid: string; sopInstanceUid: string }> => uids.map((sopInstanceUid) => ({ sopClassUid: CT, sopInstanceUid }));

export function newRequest(overrides: Partial<NewRequest> = {}, uids: readonly string[] = ['1.1', '1.2'], transactionUid = '9.9.1'): NewRequest {
  return {
    request: { transactionUid, references: ctRefs(...uids) },
    callingAeTitle: 'CT1',
    calledAeTitle: 'STGCMT',
    remoteAddress: '127.0.0.1',
    now: 1000,
    arrivalWaitMs: 10,
    verifyTimeoutMs: 100,
    ttlMs: 10_000,
    ...overrides,
  };
}
