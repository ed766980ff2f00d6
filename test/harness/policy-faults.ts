/**
 * Which verification policy catches which fault of a stored file on Orthanc's disk (Orthanc 1.10.1, storage
 * cache off). test/integration/verification-policies.test.ts checks it against the real Orthanc, and
 * test/unit/conformance-statement.test.ts checks the Conformance Statement's table against it.
 */
import type { PolicyName } from '../../src/transactions/verification-policy.js';

export const FAULTS = ['deleted', 'truncated', 'flipped byte'] as const;
export type Fault = (typeof FAULTS)[number];

export const CATCHES: Record<PolicyName, Record<Fault, boolean>> = {
  exists: { deleted: false, truncated: false, 'flipped byte': false },
  size: { deleted: true, truncated: true, 'flipped byte': false },
  fetch: { deleted: true, truncated: true, 'flipped byte': false },
  md5: { deleted: true, truncated: true, 'flipped byte': true },
};
