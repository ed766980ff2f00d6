/**
 * Checks a RECEIVED transaction's undecided instances against Orthanc and saves every final judgement.
 * Instances that may still arrive, or that Orthanc could not be asked about, stay undecided until their
 * window closes (STGCMT_ARRIVAL_WAIT, STGCMT_VERIFY_TIMEOUT).
 */
import type { Logger } from 'pino';
import { collectGarbage, COLLECT_EVERY_INSTANCES } from '../util/collect-garbage.js';
import { judgeInstance, type InstanceFinding, type Judgement } from '../commitment/verdict.js';
import type { Integrity } from '../orthanc/client.js';
import type { CatalogEntry, InstanceCatalog } from './instance-catalog.js';
import type { HeldClaim } from './held-claim.js';
import type { FailureRecord, InstanceRecord } from './records.js';
import type { Claim, TransactionRepository } from './repository.js';
import type { PolicyName, PolicyRun, VerificationPolicy } from './verification-policy.js';
import type { StudyRecorder } from './study-recorder.js';

export interface VerifierDeps {
  readonly repo: TransactionRepository;
  /**
   * Set: the verdict and this node's claim on the delivery are taken together (for that long), so that
   * the node holding the modality's association keeps its report.
   */
  readonly handOverTtlMs?: number;
  /** What the PACS holds (Orthanc today: orthanc/catalog.ts). */
  readonly catalog: InstanceCatalog;
  /** The verification policy for a transaction's calling AE title, asked at each verification round. */
  readonly policyFor: (callingAeTitle: string) => VerificationPolicy;
  readonly logger: Logger;
  readonly now: () => number;
  /** Notes committed instances and, once the verdict is complete, reads their studies (unset: not at all). */
  readonly studies?: StudyRecorder | undefined;
}

/** Instances asked about and judged together; bounds the memory one large transaction needs. */
const VERIFY_SLICE = 5000;

export type VerificationProgress =
  /** verifiedNow: this call completed the verdict (false when there was nothing left to do). */
  /** deliverClaim: with handOverTtlMs, this node's claim on the delivery, taken with the verdict. */
  | { readonly done: true; readonly verifiedNow: boolean; readonly policy?: PolicyName; readonly deliverClaim?: Claim }
  | { readonly done: false; readonly waitingFor: 'arrival' | 'orthanc'; readonly undecided: number; readonly recheckAt: number };

/** What Orthanc holds for the undecided instances, or undefined when Orthanc could not be asked. */
interface Holdings {
  readonly stored: Map<string, CatalogEntry>;
  readonly integrity: Map<string, Integrity>;
}

/** Why a policy could not verify a file, for the warning (the instances fail with 0110H). */
const UNVERIFIABLE_BECAUSE: Record<PolicyName, string> = {
  exists: 'the policy gave no finding for these instances',
  size: 'the policy gave no finding for these instances',
  fetch: 'the round ran out of its read budget (STGCMT_VERIFY_FETCH_MAX_BYTES, STGCMT_VERIFY_FETCH_MAX_TIME)',
  md5: 'Orthanc recorded no MD5 for these instances (StoreMD5ForAttachments is off?)',
};

async function askOrthanc(deps: VerifierDeps, undecided: readonly InstanceRecord[], policy: VerificationPolicy, run: PolicyRun): Promise<Holdings | undefined> {
  try {
    const stored = await deps.catalog.find(undecided.map((i) => i.sopInstanceUid));
    // Only instances that would otherwise be committed need their file looked at.
    const candidates = undecided.filter((i) => stored.get(i.sopInstanceUid)?.sopClassUid === i.sopClassUid);
    const integrity = await run.check([...new Set(candidates.map((i) => stored.get(i.sopInstanceUid)!.id))]);
    const unverifiable = [...integrity.values()].filter((v) => v === 'unverifiable').length;
    if (unverifiable > 0) {
      deps.logger.warn({ unverifiable, policy: policy.name }, `${UNVERIFIABLE_BECAUSE[policy.name]}: they fail with 0110H under the ${policy.name} policy`);
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
  // A policy that gave no finding for an instance has not verified it.
  return { kind: 'stored', sopClassUid: hit.sopClassUid, integrity: holdings.integrity.get(hit.id) ?? 'unverifiable' };
}

/** SOP Instance UIDs added to the search index at a time. */
const SEARCH_SLICE = 5000;

/** Transactions whose images are being added to the search index (one run each). */
const searchIndexing = new Set<number>();

/**
 * Adds a transaction's SOP Instance UIDs to the search index a slice at a time, so that DICOM traffic and
 * the verification go on between slices. A crash midway leaves it unindexed: at the next start
 * CommitmentService.resume() starts it again from the beginning (INSERT OR IGNORE).
 */
export function startSearchIndexing(deps: VerifierDeps, id: number): void {
  if (!searchIndexing.has(id)) void indexForSearch(deps, id);
}

async function indexForSearch(deps: VerifierDeps, id: number): Promise<void> {
  searchIndexing.add(id);
  try {
    for (let after = await deps.repo.indexForSearch(id, -1, SEARCH_SLICE); after !== undefined; after = await deps.repo.indexForSearch(id, after, SEARCH_SLICE)) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  } catch (error) {
    deps.logger.warn({ err: (error as Error).message, transactionId: id }, 'could not add the images of a transaction to the search index; searching by image will not find it');
  } finally {
    searchIndexing.delete(id);
  }
}

/**
 * One verification round of a claimed RECEIVED transaction. Every write goes under the claim: a node that
 * lost it (another took the transaction over) stops at its next write with LeaseLostError.
 */
export async function verifyTransaction(deps: VerifierDeps, held: HeldClaim): Promise<VerificationProgress> {
  const { id, record } = held.claim;
  if (record.state !== 'RECEIVED') return { done: true, verifiedNow: false };
  // Off the N-ACTION-RSP path (the response has gone before verification starts) and beside the
  // verification, not before it: 100,000 random UIDs take ~2.5 s to index, which the report must not wait
  // for (measured: 100,000 end to end 9.1 s with the indexing first, against 6.3 s without it).
  startSearchIndexing(deps, id);
  if (deps.catalog.prepare && (await deps.repo.undecidedInstances(id, { afterSeq: -1, limit: 1 })).length > 0) await deps.catalog.prepare();

  // Read, ask and judge slice by slice, saving each slice's failures at once: what the store and Orthanc
  // say about 200,000 instances is never in memory at once. Committed instances are only counted: in the
  // usual case (nothing left undecided) one statement marks them all at the end.
  const committed: number[] = [];
  let failedCount = 0;
  let waitingFor: 'arrival' | 'orthanc' | undefined;
  let stillUndecided = 0;
  let now = deps.now();
  let orthancAnswered = true;
  let judged = 0;
  // The calling AE's policy as configured now; one run per round (a fetch budget covers the whole round).
  const policy = deps.policyFor(record.callingAeTitle);
  const run = policy.begin();
  for (let after = -1; ; ) {
    const slice = await deps.repo.undecidedInstances(id, { afterSeq: after, limit: VERIFY_SLICE });
    if (slice.length === 0) break;
    after = slice[slice.length - 1]!.seq;
    // Once Orthanc failed us, the rest of this round is undecided too: no point asking again now.
    const holdings: Holdings | undefined = orthancAnswered ? await askOrthanc(deps, slice, policy, run) : undefined;
    orthancAnswered = holdings !== undefined;
    // Judge with the clock read after the lookup: an instance found absent is given the benefit of the
    // doubt only if the arrival deadline had not passed when we looked.
    now = deps.now();
    const windows = { arrivalOpen: now < record.arrivalDeadline, verifyOpen: now < record.verifyDeadline };
    const failures: Array<FailureRecord & { readonly outcome: 'failed' }> = [];
    const committedIds: string[] = [];
    for (const instance of slice) {
      const finding = findingFor(holdings, instance);
      const judgement: Judgement = judgeInstance(instance, finding, windows);
      if (judgement.outcome === 'pending') {
        stillUndecided++;
        waitingFor = waitingFor === 'orthanc' ? 'orthanc' : judgement.waitingFor;
      } else if (judgement.outcome === 'committed') {
        committed.push(instance.seq);
        if (deps.studies && finding.kind === 'stored') committedIds.push(holdings!.stored.get(instance.sopInstanceUid)!.id);
      } else {
        // Say under which class it is stored: what an integrator needs to fix a 0119H.
        const storedSopClassUid = finding.kind === 'stored' && finding.sopClassUid !== instance.sopClassUid ? finding.sopClassUid : undefined;
        failures.push({ seq: instance.seq, outcome: 'failed', failureReason: judgement.reason, storedSopClassUid });
      }
    }
    await deps.repo.saveOutcomes(held.claim, failures);
    deps.studies?.note(id, committedIds);
    failedCount += failures.length;
    judged += slice.length;
    if (judged >= COLLECT_EVERY_INSTANCES) {
      judged = 0;
      collectGarbage();
    }
  }
  if (stillUndecided === 0) {
    // Everything not failed is committed: one statement instead of one per instance.
    held.ending();
    const verified = await deps.repo.completeVerification(held.claim, [], deps.now(), deps.handOverTtlMs === undefined ? undefined : { ttlMs: deps.handOverTtlMs });
    // Beside the delivery, not before it: the report does not wait for the dashboard's data.
    if (deps.studies) void deps.studies.finish(id);
    return { done: true, verifiedNow: true, policy: policy.name, ...(verified.deliverClaim ? { deliverClaim: verified.deliverClaim } : {}) };
  }
  await deps.repo.saveOutcomes(held.claim, committed.map((seq) => ({ seq, outcome: 'committed' as const })));
  deps.logger.debug({ committed: committed.length, failed: failedCount, undecided: stillUndecided }, 'verification round saved');
  const recheckAt = waitingFor === 'arrival' ? record.arrivalDeadline : Math.min(record.verifyDeadline, now + 5000);
  return { done: false, waitingFor: waitingFor ?? 'arrival', undecided: stillUndecided, recheckAt };
}
