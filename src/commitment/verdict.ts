/**
 * What Orthanc holds -> the verdict for each requested instance. Pure: the verifier (a shell) does the
 * lookups and the waiting; this module only decides.
 */
import { sopClassSupport, type SopClassSupport } from './sop-classes.js';
import {
  FailureReason,
  type FailedSopReference,
  type FailureReasonCode,
  type SopReference,
  type Verdict,
} from './types.js';

/** What one lookup in Orthanc found for a requested SOP Instance UID. */
export type InstanceFinding =
  | {
      readonly kind: 'stored';
      readonly sopClassUid: string;
      /**
       * Only set when the verification policy re-reads the stored file: intact, damaged or missing, or
       * not checkable (Orthanc recorded no MD5). Only 'ok' supports a commitment.
       */
      readonly integrity?: 'ok' | 'corrupt' | 'unverifiable';
    }
  | { readonly kind: 'absent' }
  /** The lookup itself failed (Orthanc unreachable, error answer): we know nothing yet. */
  | { readonly kind: 'unknown' };

/** Which waiting windows are still open for a transaction when we judge it. */
export interface JudgementWindows {
  /** Late arrivals: an absent instance may still be on its way (STGCMT_ARRIVAL_WAIT). */
  readonly arrivalOpen: boolean;
  /** Orthanc outage: an undecidable instance may become decidable (STGCMT_VERIFY_TIMEOUT). */
  readonly verifyOpen: boolean;
}

export type Judgement =
  | { readonly outcome: 'committed' }
  | { readonly outcome: 'failed'; readonly reason: FailureReasonCode }
  | { readonly outcome: 'pending'; readonly waitingFor: 'arrival' | 'orthanc' };

/**
 * A "yes" needs positive evidence: indexed by Orthanc, under the requested SOP Class, and (when the policy
 * checks it) an intact file. Anything else is a failure, possibly after waiting. A private class that
 * Orthanc does not hold the instance under fails with 0122H rather than 0112H/0119H: we cannot claim to
 * store a class we have no evidence of storing (see sop-classes.ts).
 */
export function judgeInstance(
  reference: SopReference,
  finding: InstanceFinding | undefined,
  windows: JudgementWindows,
  support: SopClassSupport = sopClassSupport(reference.sopClassUid),
): Judgement {
  if (support === 'never-stored') return { outcome: 'failed', reason: FailureReason.ReferencedSopClassNotSupported };
  if (!finding || finding.kind === 'unknown') {
    return windows.verifyOpen
      ? { outcome: 'pending', waitingFor: 'orthanc' }
      : { outcome: 'failed', reason: FailureReason.ProcessingFailure };
  }
  if (finding.kind === 'absent') {
    if (windows.arrivalOpen) return { outcome: 'pending', waitingFor: 'arrival' };
    return { outcome: 'failed', reason: support === 'private' ? FailureReason.ReferencedSopClassNotSupported : FailureReason.NoSuchObjectInstance };
  }
  if (finding.sopClassUid !== reference.sopClassUid) {
    return { outcome: 'failed', reason: support === 'private' ? FailureReason.ReferencedSopClassNotSupported : FailureReason.ClassInstanceConflict };
  }
  if (finding.integrity !== undefined && finding.integrity !== 'ok') {
    return { outcome: 'failed', reason: FailureReason.ProcessingFailure };
  }
  return { outcome: 'committed' };
}

/** Splits final judgements into the two lists of the report, in request order. */
export function buildVerdict(
  references: readonly SopReference[],
  judgementOf: (reference: SopReference, index: number) => Judgement,
): Verdict {
  const committed: SopReference[] = [];
  const failed: FailedSopReference[] = [];
  references.forEach((reference, index) => {
    const judgement = judgementOf(reference, index);
    if (judgement.outcome === 'committed') committed.push(reference);
    else if (judgement.outcome === 'failed') failed.push({ ...reference, failureReason: judgement.reason });
    else throw new Error(`instance ${index} is still pending: a verdict needs final judgements`);
  });
  return { committed, failed };
}

/**
 * What can be decided from the request alone, before asking Orthanc (index in the request -> reason):
 * - a class that is never stored (Verification, Storage Commitment, ...) fails with 0122H;
 * - a SOP Instance UID listed under two different classes fails with 0119H in every listing: it cannot
 *   be both, and committing one listing while failing the other would put the same instance in both the
 *   Referenced and the Failed SOP Sequence. (The same class and instance listed twice is simply judged
 *   twice, with the same outcome.)
 */
export function judgeAtIntake(references: readonly SopReference[]): Map<number, FailureReasonCode> {
  const decided = new Map<number, FailureReasonCode>();
  const classOf = new Map<string, string>();
  const conflicting = new Set<string>();
  for (const { sopClassUid, sopInstanceUid } of references) {
    const seen = classOf.get(sopInstanceUid);
    if (seen === undefined) classOf.set(sopInstanceUid, sopClassUid);
    else if (seen !== sopClassUid) conflicting.add(sopInstanceUid);
  }
  references.forEach((reference, index) => {
    if (conflicting.has(reference.sopInstanceUid)) decided.set(index, FailureReason.ClassInstanceConflict);
    else if (sopClassSupport(reference.sopClassUid) === 'never-stored') decided.set(index, FailureReason.ReferencedSopClassNotSupported);
  });
  return decided;
}
