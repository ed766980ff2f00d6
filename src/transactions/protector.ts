/**
 * STGCMT_PROTECT: before a report says "committed", what it commits is protected in Orthanc, so that
 * recycling (MaximumStorageSize, MaximumPatientCount: the oldest unprotected patients go first) never
 * removes it. PS3.4 J.3.3.1.2: an SCP that reports an instance committed keeps it.
 *
 * Orthanc protects patients, not instances. From each committed instance we climb, batched, to its patient:
 * instance -> series (the lookup answers carry ParentSeries) -> study (bulk-content of the series) ->
 * patient (bulk-content of the studies), then PUT /patients/{id}/protected. Then the series are read again:
 * an instance recycled before its patient was protected is gone for good, and is reported failed (0112H)
 * rather than committed. Any failure to ask Orthanc throws: the caller keeps the report back and retries.
 */
import type { Logger } from 'pino';
import type { OrthancClient } from '../orthanc/client.js';
import type { TransactionRepository } from './repository.js';

export interface ProtectorDeps {
  readonly repo: Pick<TransactionRepository, 'instancePage' | 'markProtected'>;
  readonly orthanc: OrthancClient;
  /** UID -> Orthanc ID hints (the UID index), saving searches on the classic lookup path. */
  readonly hints?: ((uids: readonly string[]) => Map<string, string>) | undefined;
  readonly logger: Logger;
  readonly now: () => number;
}

/** Committed instances read, looked up and held in memory together (seq -> Orthanc ID is kept for all). */
const SLICE = 5000;

export interface ProtectionResult {
  readonly patients: number;
  /** Committed instances found gone before their patient was protected: now failed with 0112H. */
  readonly vanished: number;
}

/** What climbing from instances to patients needs, kept apart from I/O so that it can be tested alone. */
export class ProtectionPlan {
  /** seq -> Orthanc instance ID of each committed instance Orthanc still holds. */
  readonly instanceIds = new Map<number, string>();
  readonly series = new Set<string>();
  /** Committed instances not found at all. */
  readonly missing: number[] = [];

  addLookup(slice: ReadonlyArray<{ seq: number; sopInstanceUid: string }>, found: ReadonlyMap<string, { orthancId: string; parentSeries?: string | undefined }>): void {
    for (const { seq, sopInstanceUid } of slice) {
      const hit = found.get(sopInstanceUid);
      if (!hit) {
        this.missing.push(seq);
        continue;
      }
      // Both lookup paths ask Orthanc for it; without it we cannot know which patient to protect.
      if (!hit.parentSeries) throw new Error('Orthanc did not name the series of a committed instance');
      this.instanceIds.set(seq, hit.orthancId);
      this.series.add(hit.parentSeries);
    }
  }

  /** The seqs of committed instances not (or no longer) among `present` Orthanc instance IDs, with the missing ones. */
  vanished(present: ReadonlySet<string>): number[] {
    const gone = [...this.missing];
    for (const [seq, orthancId] of this.instanceIds) if (!present.has(orthancId)) gone.push(seq);
    return gone.sort((a, b) => a - b);
  }
}

export async function protectCommitted(deps: ProtectorDeps, id: number): Promise<ProtectionResult> {
  const plan = new ProtectionPlan();
  for (let after = -1; ; ) {
    const slice = await deps.repo.instancePage(id, { outcome: 'committed', afterSeq: after, limit: SLICE });
    if (slice.length === 0) break;
    after = slice[slice.length - 1]!.seq;
    const uids = slice.map((i) => i.sopInstanceUid);
    plan.addLookup(slice, await deps.orthanc.lookupInstances(uids, deps.hints?.(uids)));
  }
  const series = await deps.orthanc.seriesContent([...plan.series]);
  const studies = [...new Set(series.map((s) => s.parentStudy))];
  const patientOfStudy = await deps.orthanc.studyPatients(studies);
  if (patientOfStudy.size < studies.length) throw new Error('a study of committed instances disappeared while climbing to its patient');
  const patients = [...new Set(patientOfStudy.values())];
  await deps.orthanc.protectPatients(patients);
  // Protected now: whatever is still there stays. What went before this point is not committed any more.
  const present = new Set<string>();
  for (const s of await deps.orthanc.seriesContent([...plan.series])) for (const instance of s.instances) present.add(instance);
  const vanished = plan.vanished(present);
  await deps.repo.markProtected(id, deps.now(), vanished);
  return { patients: patients.length, vanished: vanished.length };
}
