/**
 * Checks a RECEIVED transaction's undecided instances against Orthanc and saves every final judgement.
 * Instances that may still arrive, or that Orthanc could not be asked about, stay undecided until their
 * window closes (STGCMT_ARRIVAL_WAIT, STGCMT_VERIFY_TIMEOUT).
 */
import type { Logger } from 'pino';
import { judgeInstance, type InstanceFinding, type Judgement } from '../commitment/verdict.js';
import type { Integrity, OrthancClient, StoredInstance } from '../orthanc/client.js';
import type { UidIndex } from '../orthanc/uid-index.js';
import type { FailureRecord, InstanceRecord, TransactionStore } from '../store/transaction-store.js';

export interface VerifierDeps {
  readonly store: TransactionStore;
  readonly orthanc: OrthancClient;
  /** UID -> Orthanc ID hints, and a way to bring them up to date first (the changes follower). */
  readonly index?: { readonly uids: UidIndex; readonly catchUp: () => Promise<void> };
  readonly policy: 'exists' | 'md5';
  readonly logger: Logger;
  readonly now: () => number;
}

/** How long a verification waits for the changes feed before looking up with the hints it has. */
const CATCH_UP_LIMIT_MS = 2000;
/** Instances asked about and judged together; bounds the memory one large transaction needs. */
const VERIFY_SLICE = 5000;

export type VerificationProgress =
  /** verifiedNow: this call completed the verdict (false when there was nothing left to do). */
  | { readonly done: true; readonly verifiedNow: boolean }
  | { readonly done: false; readonly waitingFor: 'arrival' | 'orthanc'; readonly undecided: number; readonly recheckAt: number };

/** What Orthanc holds for the undecided instances, or undefined when Orthanc could not be asked. */
interface Holdings {
  readonly stored: Map<string, StoredInstance>;
  readonly integrity: Map<string, Integrity> | undefined;
}

async function askOrthanc(deps: VerifierDeps, undecided: readonly InstanceRecord[]): Promise<Holdings | undefined> {
  try {
    const uids = undecided.map((i) => i.sopInstanceUid);
    const hints = deps.index?.uids.find(uids);
    const stored = await deps.orthanc.lookupInstances(uids, hints);
    if (hints) {
      const stale = [...hints].filter(([uid, id]) => stored.get(uid)?.orthancId !== id).map(([uid]) => uid);
      if (stale.length > 0) deps.index!.uids.forget(stale);
    }
    let integrity: Map<string, Integrity> | undefined;
    if (deps.policy === 'md5') {
      // Only instances that would otherwise be committed need their file re-read.
      const candidates = undecided.filter((i) => stored.get(i.sopInstanceUid)?.sopClassUid === i.sopClassUid);
      integrity = await deps.orthanc.verifyMd5Many(candidates.map((i) => stored.get(i.sopInstanceUid)!.orthancId));
      const unverifiable = [...integrity.values()].filter((v) => v === 'unverifiable').length;
      if (unverifiable > 0) {
        deps.logger.warn({ unverifiable }, 'Orthanc recorded no MD5 for these instances (StoreMD5ForAttachments is off?): they fail with 0110H under STGCMT_VERIFY=md5');
      }
    }
    return { stored, integrity };
  } catch (error) {
    deps.logger.warn({ err: (error as Error).message }, 'Orthanc lookup failed; instances stay undecided');
    return undefined;
  }
}

function findingFor(holdings: Holdings | undefined, instance: InstanceRecord): InstanceFinding {
  if (!holdings) return { kind: 'unknown' };
  const hit = holdings.stored.get(instance.sopInstanceUid);
  if (!hit) return { kind: 'absent' };
  return { kind: 'stored', sopClassUid: hit.sopClassUid, integrity: holdings.integrity?.get(hit.orthancId) };
}

export async function verifyTransaction(deps: VerifierDeps, id: number): Promise<VerificationProgress> {
  const record = deps.store.get(id);
  if (!record || record.state !== 'RECEIVED') return { done: true, verifiedNow: false };
  const undecided = deps.store.undecidedInstances(id);
  if (deps.index && undecided.length > 0) {
    // Index what Orthanc received up to now (bounded), so that just-stored instances need no search.
    await Promise.race([deps.index.catchUp(), new Promise((resolve) => setTimeout(resolve, CATCH_UP_LIMIT_MS).unref())]);
  }

  // Ask and judge slice by slice: what Orthanc says about 100,000 instances need not be in memory at once.
  const committed: number[] = [];
  const failures: FailureRecord[] = [];
  let waitingFor: 'arrival' | 'orthanc' | undefined;
  let stillUndecided = 0;
  let now = deps.now();
  let orthancAnswered = true;
  for (let start = 0; start < undecided.length; start += VERIFY_SLICE) {
    const slice = undecided.slice(start, start + VERIFY_SLICE);
    // Once Orthanc failed us, the rest of this round is undecided too: no point asking again now.
    const holdings: Holdings | undefined = orthancAnswered ? await askOrthanc(deps, slice) : undefined;
    orthancAnswered = holdings !== undefined;
    // Judge with the clock read after the lookup: an instance found absent is given the benefit of the
    // doubt only if the arrival deadline had not passed when we looked.
    now = deps.now();
    const windows = { arrivalOpen: now < record.arrivalDeadline, verifyOpen: now < record.verifyDeadline };
    for (const instance of slice) {
      const finding = findingFor(holdings, instance);
      const judgement: Judgement = judgeInstance(instance, finding, windows);
      if (judgement.outcome === 'pending') {
        stillUndecided++;
        waitingFor = waitingFor === 'orthanc' ? 'orthanc' : judgement.waitingFor;
      } else if (judgement.outcome === 'committed') {
        committed.push(instance.seq);
      } else {
        // Say under which class it is stored: what an integrator needs to fix a 0119H.
        const storedSopClassUid = finding.kind === 'stored' && finding.sopClassUid !== instance.sopClassUid ? finding.sopClassUid : undefined;
        failures.push({ seq: instance.seq, failureReason: judgement.reason, storedSopClassUid });
      }
    }
  }
  if (stillUndecided === 0) {
    // Everything not failed is committed: one statement instead of one per instance.
    deps.store.saveFinalOutcomes(id, failures);
    deps.store.completeVerification(id, deps.now());
    return { done: true, verifiedNow: true };
  }
  deps.store.saveOutcomes(id, [...committed.map((seq) => ({ seq, outcome: 'committed' as const })), ...failures.map((f) => ({ ...f, outcome: 'failed' as const }))]);
  const recheckAt = waitingFor === 'arrival' ? record.arrivalDeadline : Math.min(record.verifyDeadline, now + 5000);
  return { done: false, waitingFor: waitingFor ?? 'arrival', undecided: stillUndecided, recheckAt };
}
