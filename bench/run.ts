/**
 * `npm run bench`: one run starts its own real Orthanc servers (PACS + modality) and the sidecar on
 * 127.0.0.1, measures, prints a table and writes bench/results/<date>.json and bench/results/latest.json.
 *
 *   1. 3,000 instances through Orthanc's SCU: Orthanc's built-in Storage Commitment SCP vs the sidecar
 *   2. growth: the sidecar at 2,000 and 20,000 instances (Orthanc's SCU and our dcmjs SCU)
 *      (1 and 2 on a PACS that holds 25,000 instances: these 20,000 + 2,000 + 3,000)
 *   3. 100,000 instances in one N-ACTION (our SCU): end to end and the sidecar's peak RSS (VmHWM)
 *   4. N-ACTION-RSP latency for 10,000 instances (our SCU; clock starts once the request is built)
 *   5. 20 modalities (distinct calling AE titles) x 1,000 instances at once
 *   6. the raw Orthanc REST lookups (OrthancClient.lookupInstances) for 3,000 and 20,000 UIDs
 *   7. report encoding: our linear writer vs dcmjs's writer
 *   8. the changes follower's lag behind the 25,000-instance ingest; then 1, 2 and 8 again on Debian
 *      trixie's Orthanc 1.12.x when scripts/orthanc-1.12-root.sh has made its root
 *   9. verification policies (STGCMT_VERIFY exists / size / fetch / md5): 3,000 instances end to end on
 *      a fresh Orthanc 1.10.1 with the shipped storage settings (MD5s recorded, storage cache off)
 *  10. search (by SOP Instance UID, study, accession, patient, …) over a store of 1,000,000 instances
 *  11. several nodes on one PostgreSQL (run durable: fsync, synchronous_commit, full_page_writes on): the
 *      burst of 5 against 1, 2 and 3 sidecar nodes (modality i -> node i mod N), and the per-transaction
 *      overhead of PostgreSQL vs SQLite (200 x 10 instances one at a time; a 10,000-instance N-ACTION-RSP)
 *
 * Timings are printed, never asserted: the machine has two shared cores.
 * BENCH_SCALE=0.1 shrinks every instance count (for trying the bench out; results are then marked).
 * BENCH_ONLY=11 (or a list, BENCH_ONLY=7,10) runs only those sections, for development: sections 1-6 and 8
 * share one bed and run together when any of them is asked for. Such a run writes bench/results/only-…json
 * and leaves latest.json alone.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { SopReference } from '../src/commitment/types.js';
import { POLICY_NAMES } from '../src/transactions/verification-policy.js';
import { BURST_AETS, ingest, orthancScuCommit, prepareEntry, progress, SIDECAR_ENV, sidecarTimes, startBed, waitForUidIndex, type Bed, type Ingested, type SidecarEntry, type SidecarTimes } from './lib/bed.js';
import { encodeDcmjs, encodeLinear, type EncodingFigure } from './lib/encoding.js';
import { describeMachine } from './lib/machine.js';
import { severalNodes, severalNodesJson, type SeveralNodesPlan } from './lib/nodes.js';
import { benchSearch } from './lib/search.js';
import { maxRssBetween, readProcMemory, sampleRss } from './lib/proc.js';
import { reportCommitsAll, timedCommitment, type TimedCommitment } from './lib/scu.js';
import { fmtInt, fmtMb, fmtMs, fmtRatio, max, median, percentile, round } from './lib/stats.js';

const ROOT = resolve(import.meta.dirname, '..');
const RESULTS_DIR = join(ROOT, 'bench', 'results');
const STORAGE = '/dev/shm';
const WATCHDOG_MS = 30 * 60_000;

const scale = Number(process.env['BENCH_SCALE'] ?? '1');
if (!(scale > 0 && scale <= 1)) throw new Error('BENCH_SCALE must be in (0, 1]');
const n = (count: number): number => Math.max(20, Math.round(count * scale));

const SECTIONS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11'];
const only = (process.env['BENCH_ONLY'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
if (only.some((s) => !SECTIONS.includes(s))) throw new Error(`BENCH_ONLY must list sections among ${SECTIONS.join(', ')}`);
/** True when any of these sections is to run (all of them without BENCH_ONLY). */
const wanted = (...sections: string[]): boolean => only.length === 0 || sections.some((s) => only.includes(s));

const N_SIDE_BY_SIDE = n(3000);
const N_SMALL = n(2000);
const N_LARGE = n(20_000);
const N_HUGE = n(100_000);
const N_LATENCY = n(10_000);
const BURST_EACH = n(1000);
const SIDECAR_RUNS = 5;
const GROWTH_RUNS = 3;
const LATENCY_RUNS = 7;
const BURST_RUNS = 3;
const RAW_RUNS = 5;
const POLICY_RUNS = 3;
const NODE_COUNTS = [1, 2, 3];
const SMALL_TRANSACTIONS = n(200);
const SMALL_SIZE = 10;
const NODE_LARGE_RUNS = 5;

const TARGETS = {
  speedup: 50,
  growthRatio: 12,
  peakRssMb: 300,
  nActionRspMs: 100,
  sidecarOverRaw: 2,
} as const;

interface Row {
  readonly section: string;
  readonly measure: string;
  readonly value: string;
  readonly target?: string;
  readonly met?: boolean;
  readonly detail?: string;
}

const rows: Row[] = [];
const row = (r: Row): void => {
  rows.push(r);
};

const list = (values: readonly number[]): string => values.map((v) => fmtMs(v)).join(', ');

interface OrthancScuRuns {
  readonly runsMs: number[];
  readonly uids: string[];
  /** Wall clock at each POST, to place the sidecar's own timestamps inside the end-to-end time. */
  readonly startedAt: number[];
}

async function sidecarOrthancRuns(bed: Bed, refs: readonly SopReference[], runs: number, label: string): Promise<OrthancScuRuns> {
  const runsMs: number[] = [];
  const uids: string[] = [];
  const startedAt: number[] = [];
  for (let i = 0; i < runs; i++) {
    startedAt.push(Date.now());
    const result = await orthancScuCommit(bed, bed.stack.sidecarModalityName, refs, 180_000);
    runsMs.push(result.elapsedMs);
    uids.push(result.id);
    progress(`  ${label} run ${i + 1}/${runs}: ${fmtMs(result.elapsedMs)}`);
  }
  return { runsMs, uids, startedAt };
}

async function dcmjsRuns(bed: Bed, refs: readonly SopReference[], runs: number, label: string, callingAeTitle?: string): Promise<TimedCommitment[]> {
  const results: TimedCommitment[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await timedCommitment(bed.scuTarget(callingAeTitle), refs, { reportTimeoutMs: 240_000, dimseTimeoutMs: 240_000 });
    if (r.status !== 0 || !reportCommitsAll(r.report, refs)) throw new Error(`${label}: N-ACTION status 0x${r.status.toString(16)}, report ${r.report ? `${r.report.committed.length} committed / ${r.report.failed.length} failed` : 'missing'}`);
    results.push(r);
    progress(`  ${label} run ${i + 1}/${runs}: end to end ${fmtMs(r.endToEndMs)}, N-ACTION-RSP ${fmtMs(r.rspMs)}`);
  }
  return results;
}

/**
 * OrthancClient.lookupInstances as the sidecar calls it, from this process. Without hints: the search
 * path (/tools/find batches, then /tools/bulk-content). With hints (UID -> Orthanc ID, which the sidecar's
 * UID index learns from the changes feed): /tools/bulk-content by ID only, what a warm sidecar does.
 */
async function rawLookups(bed: Bed, data: Ingested, runs: number, label: string, withHints: boolean): Promise<number[]> {
  const uids = data.refs.map((r) => r.sopInstanceUid);
  const lookup = bed.rawClient.lookupInstances.bind(bed.rawClient) as (uids: readonly string[], hints?: ReadonlyMap<string, string>) => Promise<Map<string, unknown>>;
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const found = withHints ? await lookup(uids, data.hints) : await lookup(uids);
    runsMs.push(performance.now() - t0);
    if (found.size !== uids.length) throw new Error(`${label}: raw lookup found ${found.size} of ${uids.length}`);
  }
  progress(`  raw lookups ${label} (${withHints ? 'by ID, hinted' : 'search'}): ${list(runsMs)}`);
  return runsMs;
}

async function settle(bed: Bed, what: string): Promise<void> {
  const waited = await waitForUidIndex(bed);
  if (waited !== undefined) progress(`  sidecar UID index caught up with the changes feed (${what}) after ${fmtMs(waited)}`);
}

interface Breakdown {
  /** POST -> N-ACTION recorded by the sidecar (Orthanc SCU builds and sends the N-ACTION, we read and store it). */
  intakeMs?: number;
  verifyMs: number;
  deliverMs: number;
  /** Report acknowledged -> Orthanc's REST says no longer Pending (Orthanc stores the report; 50 ms polling). */
  afterMs?: number;
}

/** Medians of the sidecar's phases; with `runs`, also what happened before and after them (wall clock, ms resolution). */
function internal(times: Map<string, SidecarTimes>, uids: readonly string[], runs?: OrthancScuRuns): Breakdown | undefined {
  const found = uids.map((u, i) => ({ t: times.get(u), i })).filter((x): x is { t: SidecarTimes; i: number } => x.t !== undefined);
  if (found.length === 0) return undefined;
  const breakdown: Breakdown = { verifyMs: median(found.map((x) => x.t.verifyMs)), deliverMs: median(found.map((x) => x.t.deliverMs)) };
  if (runs) {
    breakdown.intakeMs = round(median(found.map((x) => x.t.receivedAt - runs.startedAt[x.i]!)), 0);
    breakdown.afterMs = round(median(found.map((x) => runs.startedAt[x.i]! + runs.runsMs[x.i]! - x.t.reportedAt)), 0);
  }
  return breakdown;
}

const fmtInternal = (t: Breakdown | undefined): string =>
  t ? `phases (median): ${t.intakeMs !== undefined ? `POST->N-ACTION recorded ${fmtMs(t.intakeMs)}, ` : ''}verify ${fmtMs(t.verifyMs)}, deliver ${fmtMs(t.deliverMs)}${t.afterMs !== undefined ? `, report acknowledged->REST not Pending ${fmtMs(t.afterMs)}` : ''}` : '';

/** The PACS for sections 1 and 2: 20,000 + 2,000 + 3,000 instances, so every figure is on a 25,000-instance PACS. */
interface FilledPacs {
  readonly largeData: Ingested;
  readonly smallData: Ingested;
  readonly sideBySideData: Ingested;
  readonly total: number;
  /** How long the sidecar's changes follower took to reach Orthanc's newest change after the ingest. */
  readonly followerLagMs: number | undefined;
}

async function fillPacs(bed: Bed): Promise<FilledPacs> {
  const largeData = await ingest(bed, N_LARGE, 'growth, large');
  const smallData = await ingest(bed, N_SMALL, 'growth, small');
  const sideBySideData = await ingest(bed, N_SIDE_BY_SIDE, 'side by side');
  const followerLagMs = await waitForUidIndex(bed);
  if (followerLagMs !== undefined) progress(`  the sidecar's changes follower reached Orthanc's newest change ${fmtMs(followerLagMs)} after the ingest`);
  return { largeData, smallData, sideBySideData, total: N_LARGE + N_SMALL + N_SIDE_BY_SIDE, followerLagMs };
}

/**
 * Sections 1 and 2 on one bed (one Orthanc version): Orthanc's built-in SCP against the sidecar at 3,000,
 * and the sidecar's growth from 2,000 to 20,000. `labelVersion` marks the rows and result keys of a second version.
 */
async function sideBySideAndGrowth(bed: Bed, pacs: FilledPacs, results: Record<string, unknown>, labelVersion: boolean) {
  const key = labelVersion ? `_${bed.orthancVersion}` : '';
  const v = labelVersion ? `[Orthanc ${bed.orthancVersion}] ` : '';
  // ---- 1. side by side, 3,000 instances, Orthanc's SCU -------------------------------------------------
  const { sideBySideData, smallData, largeData } = pacs;
  const sideBySide = sideBySideData.refs;
  progress('warm-up: 100 instances through the sidecar');
  await orthancScuCommit(bed, bed.stack.sidecarModalityName, sideBySide.slice(0, 100), 60_000);
  progress(`1. sidecar, ${N_SIDE_BY_SIDE} instances, Orthanc SCU x${SIDECAR_RUNS}`);
  const sidecar3k = await sidecarOrthancRuns(bed, sideBySide, SIDECAR_RUNS, `sidecar ${N_SIDE_BY_SIDE}`);
  progress(`1. Orthanc's built-in SCP, ${N_SIDE_BY_SIDE} instances, once (~21 s expected at 3,000)`);
  const builtin = await orthancScuCommit(bed, 'pacs', sideBySide, 300_000);
  progress(`  Orthanc built-in: ${fmtMs(builtin.elapsedMs)}`);
  const times1 = await sidecarTimes(bed);
  const sidecar3kMedian = median(sidecar3k.runsMs);
  const speedup = builtin.elapsedMs / sidecar3kMedian;
  results[`sideBySide${key}`] = {
    orthancVersion: bed.orthancVersion,
    pacsInstances: pacs.total,
    instances: N_SIDE_BY_SIDE,
    client: 'modality Orthanc (Storage Commitment SCU, REST POST /modalities/{name}/storage-commitment)',
    endToEnd: 'POST storage-commitment -> report no longer Pending (polled every 50 ms)',
    orthancBuiltinMs: round(builtin.elapsedMs),
    sidecarRunsMs: sidecar3k.runsMs.map((v) => round(v)),
    sidecarMedianMs: round(sidecar3kMedian),
    sidecarInternal: internal(times1, sidecar3k.uids, sidecar3k),
    speedup: round(speedup, 2),
    target: `>= ${TARGETS.speedup}x`,
    met: speedup >= TARGETS.speedup,
  };
  row({ section: '1', measure: `${v}Orthanc built-in SCP, ${fmtInt(N_SIDE_BY_SIDE)} inst. (Orthanc SCU, 1 run)`, value: fmtMs(builtin.elapsedMs) });
  row({ section: '1', measure: `${v}sidecar, same ${fmtInt(N_SIDE_BY_SIDE)} inst. (Orthanc SCU, median of ${SIDECAR_RUNS})`, value: fmtMs(sidecar3kMedian), detail: `runs ${list(sidecar3k.runsMs)}; ${fmtInternal(internal(times1, sidecar3k.uids, sidecar3k))}` });
  row({ section: '1', measure: `${v}speedup (built-in / sidecar)`, value: fmtRatio(speedup), target: `>= ${TARGETS.speedup}x`, met: speedup >= TARGETS.speedup });

  // ---- 2. growth, 2,000 vs 20,000 ------------------------------------------------------------------------
  const small = smallData.refs;
  const large = largeData.refs;
  progress(`2. sidecar growth, Orthanc SCU: ${N_SMALL} and ${N_LARGE} x${GROWTH_RUNS}`);
  const orthSmall = await sidecarOrthancRuns(bed, small, GROWTH_RUNS, `sidecar ${N_SMALL} (Orthanc SCU)`);
  const orthLarge = await sidecarOrthancRuns(bed, large, GROWTH_RUNS, `sidecar ${N_LARGE} (Orthanc SCU)`);
  progress(`2. sidecar growth, dcmjs SCU: ${N_SMALL} and ${N_LARGE} x${GROWTH_RUNS}`);
  const dcmSmall = await dcmjsRuns(bed, small, GROWTH_RUNS, `sidecar ${N_SMALL} (dcmjs SCU)`);
  const dcmLarge = await dcmjsRuns(bed, large, GROWTH_RUNS, `sidecar ${N_LARGE} (dcmjs SCU)`);
  const times2 = await sidecarTimes(bed);
  const orthRatio = median(orthLarge.runsMs) / median(orthSmall.runsMs);
  const dcmRatio = median(dcmLarge.map((r) => r.endToEndMs)) / median(dcmSmall.map((r) => r.endToEndMs));
  results[`growth${key}`] = {
    orthancVersion: bed.orthancVersion,
    orthancScu: {
      smallRunsMs: orthSmall.runsMs.map((v) => round(v)),
      largeRunsMs: orthLarge.runsMs.map((v) => round(v)),
      smallMedianMs: round(median(orthSmall.runsMs)),
      largeMedianMs: round(median(orthLarge.runsMs)),
      smallInternal: internal(times2, orthSmall.uids, orthSmall),
      largeInternal: internal(times2, orthLarge.uids, orthLarge),
      ratio: round(orthRatio, 2),
    },
    dcmjsScu: {
      smallRunsMs: dcmSmall.map((r) => round(r.endToEndMs)),
      largeRunsMs: dcmLarge.map((r) => round(r.endToEndMs)),
      smallMedianMs: round(median(dcmSmall.map((r) => r.endToEndMs))),
      largeMedianMs: round(median(dcmLarge.map((r) => r.endToEndMs))),
      smallInternal: internal(times2, dcmSmall.map((r) => r.transactionUid)),
      largeInternal: internal(times2, dcmLarge.map((r) => r.transactionUid)),
      ratio: round(dcmRatio, 2),
    },
    instances: { small: N_SMALL, large: N_LARGE },
    target: `t(${N_LARGE})/t(${N_SMALL}) <= ${TARGETS.growthRatio}`,
    met: orthRatio <= TARGETS.growthRatio,
  };
  row({ section: '2', measure: `${v}sidecar, ${fmtInt(N_SMALL)} inst. (Orthanc SCU, median of ${GROWTH_RUNS})`, value: fmtMs(median(orthSmall.runsMs)), detail: `runs ${list(orthSmall.runsMs)}; ${fmtInternal(internal(times2, orthSmall.uids, orthSmall))}` });
  row({ section: '2', measure: `${v}sidecar, ${fmtInt(N_LARGE)} inst. (Orthanc SCU, median of ${GROWTH_RUNS})`, value: fmtMs(median(orthLarge.runsMs)), detail: `runs ${list(orthLarge.runsMs)}; ${fmtInternal(internal(times2, orthLarge.uids, orthLarge))}` });
  row({ section: '2', measure: `${v}growth t(${fmtInt(N_LARGE)})/t(${fmtInt(N_SMALL)}), Orthanc SCU`, value: fmtRatio(orthRatio), target: `<= ${TARGETS.growthRatio}`, met: orthRatio <= TARGETS.growthRatio });
  row({ section: '2', measure: `${v}sidecar, ${fmtInt(N_SMALL)} inst. (dcmjs SCU, median of ${GROWTH_RUNS})`, value: fmtMs(median(dcmSmall.map((r) => r.endToEndMs))), detail: `runs ${list(dcmSmall.map((r) => r.endToEndMs))}` });
  row({ section: '2', measure: `${v}sidecar, ${fmtInt(N_LARGE)} inst. (dcmjs SCU, median of ${GROWTH_RUNS})`, value: fmtMs(median(dcmLarge.map((r) => r.endToEndMs))), detail: `runs ${list(dcmLarge.map((r) => r.endToEndMs))}` });
  row({ section: '2', measure: `${v}growth t(${fmtInt(N_LARGE)})/t(${fmtInt(N_SMALL)}), dcmjs SCU`, value: fmtRatio(dcmRatio), target: `<= ${TARGETS.growthRatio}`, met: dcmRatio <= TARGETS.growthRatio });
  return { sideBySideData, largeData, sidecar3k, times1, orthLarge, times2, dcmLarge };
}

function followerRow(bed: Bed, pacs: FilledPacs, results: Record<string, unknown>): void {
  results[`follower_${bed.orthancVersion}`] = { orthancVersion: bed.orthancVersion, ingested: pacs.total, lagMs: pacs.followerLagMs === undefined ? null : round(pacs.followerLagMs) };
  row({ section: '8', measure: `[Orthanc ${bed.orthancVersion}] changes follower behind a ${fmtInt(pacs.total)}-instance ingest`, value: pacs.followerLagMs === undefined ? 'n/a' : fmtMs(pacs.followerLagMs), detail: 'from the last upload to the follower at Orthanc\'s newest change' });
}

/**
 * Sections 1, 2 and 8 again on Debian trixie's Orthanc 1.12.x (scripts/orthanc-1.12-root.sh makes it), with
 * its own 25,000-instance PACS: 1.12's index is what makes the lookup path matter (see OrthancClient).
 */
async function onOrthanc112(entry: SidecarEntry, results: Record<string, unknown>): Promise<void> {
  const root = process.env['ORTHANC_ROOT'] ?? '/var/cache/stgcmt-orthanc-1.12';
  if (!existsSync(join(root, 'usr', 'sbin', 'Orthanc'))) {
    progress(`Orthanc 1.12: no root at ${root}; run scripts/orthanc-1.12-root.sh (as root) to measure it`);
    row({ section: '8', measure: 'Orthanc 1.12', value: 'not measured', detail: `no trixie root at ${root}: run scripts/orthanc-1.12-root.sh as root, then npm run bench` });
    return;
  }
  progress('starting Orthanc 1.12 x2 and a fresh sidecar');
  const bed = await startBed(entry, {}, join(ROOT, 'scripts', 'orthanc-1.12'));
  try {
    progress(`Orthanc ${bed.orthancVersion}`);
    const pacs = await fillPacs(bed);
    followerRow(bed, pacs, results);
    await sideBySideAndGrowth(bed, pacs, results, true);
  } finally {
    await bed.stack.stop();
  }
}

/**
 * 9. What each verification policy costs end to end, for the same 3,000 instances (our dcmjs SCU, report
 * on its association): the sidecar restarted with STGCMT_VERIFY=<policy> before each policy's runs. A
 * fresh 1.10.1 PACS with the storage settings we ship (orthanc-config/orthanc.json: MD5s recorded at
 * reception, which md5 needs; no storage cache, so every check reads the disk). The harness's files are
 * small (~0.6 KB): size, fetch and md5 grow with file size on real images, exists does not.
 */
async function policiesSection(entry: SidecarEntry, results: Record<string, unknown>): Promise<void> {
  const shipped = JSON.parse(readFileSync(join(ROOT, 'orthanc-config', 'orthanc.json'), 'utf8')) as Record<string, unknown>;
  progress('9. verification policies: a fresh Orthanc 1.10.1 with the shipped storage settings');
  const bed = await startBed(entry, {}, undefined, { MaximumStorageCacheSize: shipped['MaximumStorageCacheSize'], StoreMD5ForAttachments: shipped['StoreMD5ForAttachments'] });
  try {
    const data = await ingest(bed, N_SIDE_BY_SIDE, 'policies');
    const bytes = (await bed.stack.pacs.rest<{ TotalDiskSize: string }>('GET', '/statistics')).TotalDiskSize;
    const figures: Record<string, unknown> = {};
    for (const policy of POLICY_NAMES) {
      await bed.stack.sidecar.restart({ STGCMT_VERIFY: policy });
      await settle(bed, `STGCMT_VERIFY=${policy}`);
      await dcmjsRuns(bed, data.refs.slice(0, 100), 1, `${policy} warm-up`);
      const runs = await dcmjsRuns(bed, data.refs, POLICY_RUNS, `STGCMT_VERIFY=${policy}, ${N_SIDE_BY_SIDE}`);
      const endToEnd = runs.map((r) => r.endToEndMs);
      const phases = internal(await sidecarTimes(bed), runs.map((r) => r.transactionUid));
      figures[policy] = { runsMs: endToEnd.map((v) => round(v)), medianMs: round(median(endToEnd)), sidecarInternal: phases };
      row({ section: '9', measure: `STGCMT_VERIFY=${policy}, ${fmtInt(N_SIDE_BY_SIDE)} inst. (dcmjs SCU, median of ${POLICY_RUNS})`, value: fmtMs(median(endToEnd)), detail: `runs ${list(endToEnd)}; ${fmtInternal(phases)}` });
    }
    results['policies'] = {
      orthancVersion: bed.orthancVersion,
      instances: N_SIDE_BY_SIDE,
      pacsDiskBytes: Number(bytes),
      pacsConfig: { MaximumStorageCacheSize: shipped['MaximumStorageCacheSize'], StoreMD5ForAttachments: shipped['StoreMD5ForAttachments'] },
      client: 'dcmjs SCU, report on the same association; sidecar restarted with STGCMT_VERIFY=<policy> before each policy',
      figures,
    };
  } finally {
    await bed.stack.stop();
  }
}

/** Sections 1-6 and 8 on Orthanc 1.10.1: one bed, one PACS; they run together (later ones reuse earlier figures). Returns the Orthanc version. */
async function mainBed(sidecarEntry: { entry: SidecarEntry; note: string }, results: Record<string, unknown>): Promise<string> {
  progress(`starting Orthanc x2 and the sidecar (${sidecarEntry.note}; scale ${scale})`);
  const bed = await startBed(sidecarEntry.entry);
  progress(`Orthanc ${bed.orthancVersion}; sidecar pid ${bed.stack.sidecar.pid}; lookup batch ${bed.config.lookupBatchSize} x ${bed.config.lookupConcurrency} in flight`);

  try {
    const pacs = await fillPacs(bed);
    followerRow(bed, pacs, results);
    const { sideBySideData, largeData, sidecar3k, times1, orthLarge, times2, dcmLarge } = await sideBySideAndGrowth(bed, pacs, results, false);
    const large = largeData.refs;
    const sidecar3kMedian = median(sidecar3k.runsMs);
    progress(`6. raw lookups, ${N_SIDE_BY_SIDE} and ${N_LARGE} UIDs, search path and hinted path`);
    const raw3kSearch = await rawLookups(bed, sideBySideData, RAW_RUNS, String(N_SIDE_BY_SIDE), false);
    const raw3k = await rawLookups(bed, sideBySideData, RAW_RUNS, String(N_SIDE_BY_SIDE), true);
    const raw3kMedian = median(raw3k);
    const raw20kSearch = await rawLookups(bed, largeData, GROWTH_RUNS, String(N_LARGE), false);
    const raw20k = await rawLookups(bed, largeData, GROWTH_RUNS, String(N_LARGE), true);

    // ---- 6. raw lookup cost beside the sidecar's time -------------------------------------------------------
    const raw20kMedian = median(raw20k);
    const raw3kSearchMedian = median(raw3kSearch);
    const raw20kSearchMedian = median(raw20kSearch);
    const over3k = sidecar3kMedian / raw3kMedian;
    const over20k = median(orthLarge.runsMs) / raw20kMedian;
    const verify3k = internal(times1, sidecar3k.uids, sidecar3k)?.verifyMs;
    const verify20k = internal(times2, orthLarge.uids, orthLarge)?.verifyMs;
    const verifyNote = (verify: number | undefined, raw: number): string => (verify !== undefined ? `; verify phase alone ${fmtMs(verify)} = ${fmtRatio(verify / raw)} raw` : '');
    results['rawLookups'] = {
      batchSize: bed.config.lookupBatchSize,
      concurrency: bed.config.lookupConcurrency,
      paths: {
        hinted: 'lookupInstances(uids, hints): /tools/bulk-content by Orthanc ID (what the sidecar does once its UID index knows the instances)',
        search: 'lookupInstances(uids): /tools/find batches + /tools/bulk-content (the fallback for instances the index does not know)',
      },
      n3k: {
        instances: N_SIDE_BY_SIDE,
        hintedRunsMs: raw3k.map((v) => round(v)),
        hintedMedianMs: round(raw3kMedian),
        searchRunsMs: raw3kSearch.map((v) => round(v)),
        searchMedianMs: round(raw3kSearchMedian),
        sidecarEndToEndMedianMs: round(sidecar3kMedian),
        sidecarVerifyMedianMs: verify3k,
        ratioToHinted: round(over3k, 2),
        ratioToSearch: round(sidecar3kMedian / raw3kSearchMedian, 2),
      },
      n20k: {
        instances: N_LARGE,
        hintedRunsMs: raw20k.map((v) => round(v)),
        hintedMedianMs: round(raw20kMedian),
        searchRunsMs: raw20kSearch.map((v) => round(v)),
        searchMedianMs: round(raw20kSearchMedian),
        sidecarEndToEndMedianMs: round(median(orthLarge.runsMs)),
        sidecarVerifyMedianMs: verify20k,
        ratioToHinted: round(over20k, 2),
        ratioToSearch: round(median(orthLarge.runsMs) / raw20kSearchMedian, 2),
      },
      target: `sidecar end to end (Orthanc SCU) / raw hinted lookups < ${TARGETS.sidecarOverRaw}x`,
      met: over3k < TARGETS.sidecarOverRaw && over20k < TARGETS.sidecarOverRaw,
    };
    row({ section: '6', measure: `raw lookups by ID (hinted), ${fmtInt(N_SIDE_BY_SIDE)} UIDs (median of ${RAW_RUNS})`, value: fmtMs(raw3kMedian), detail: `runs ${list(raw3k)}; /tools/bulk-content by Orthanc ID, chunks of 1,000, ${bed.config.lookupConcurrency} in flight` });
    row({ section: '6', measure: `raw lookups by search, ${fmtInt(N_SIDE_BY_SIDE)} UIDs (median of ${RAW_RUNS})`, value: fmtMs(raw3kSearchMedian), detail: `runs ${list(raw3kSearch)}; /tools/find batches of ${bed.config.lookupBatchSize} + bulk-content, ${bed.config.lookupConcurrency} in flight` });
    row({ section: '6', measure: `sidecar end to end / raw hinted, ${fmtInt(N_SIDE_BY_SIDE)}`, value: fmtRatio(over3k), target: `< ${TARGETS.sidecarOverRaw}x`, met: over3k < TARGETS.sidecarOverRaw, detail: `${fmtMs(sidecar3kMedian)} / ${fmtMs(raw3kMedian)}${verifyNote(verify3k, raw3kMedian)}; vs search path ${fmtRatio(sidecar3kMedian / raw3kSearchMedian)}` });
    row({ section: '6', measure: `raw lookups by ID (hinted), ${fmtInt(N_LARGE)} UIDs (median of ${GROWTH_RUNS})`, value: fmtMs(raw20kMedian), detail: `runs ${list(raw20k)}` });
    row({ section: '6', measure: `raw lookups by search, ${fmtInt(N_LARGE)} UIDs (median of ${GROWTH_RUNS})`, value: fmtMs(raw20kSearchMedian), detail: `runs ${list(raw20kSearch)}` });
    row({ section: '6', measure: `sidecar end to end / raw hinted, ${fmtInt(N_LARGE)}`, value: fmtRatio(over20k), target: `< ${TARGETS.sidecarOverRaw}x`, met: over20k < TARGETS.sidecarOverRaw, detail: `${fmtMs(median(orthLarge.runsMs))} / ${fmtMs(raw20kMedian)}${verifyNote(verify20k, raw20kMedian)}; vs search path ${fmtRatio(median(orthLarge.runsMs) / raw20kSearchMedian)}` });
    // Orthanc's SCU spends ~90 ms before our N-ACTION arrives and ~90 ms after our report at 3,000 (over
    // 1 s at 20,000): with our own lean SCU the end-to-end time shows the sidecar's overhead more directly.
    const dcmOver20k = median(dcmLarge.map((r) => r.endToEndMs)) / raw20kMedian;
    row({ section: '6', measure: `sidecar end to end (dcmjs SCU) / raw hinted, ${fmtInt(N_LARGE)}`, value: fmtRatio(dcmOver20k), target: `< ${TARGETS.sidecarOverRaw}x`, met: dcmOver20k < TARGETS.sidecarOverRaw, detail: `${fmtMs(median(dcmLarge.map((r) => r.endToEndMs)))} / ${fmtMs(raw20kMedian)}` });

    // ---- 5. burst: 20 modalities x 1,000 at once --------------------------------------------------------------
    progress(`5. burst: ${BURST_AETS.length} calling AE titles x ${BURST_EACH} instances at once, x${BURST_RUNS}`);
    const burstRefs = BURST_AETS.map((_, i) => large.slice(i * BURST_EACH, (i + 1) * BURST_EACH));
    if (burstRefs.some((r) => r.length !== BURST_EACH)) throw new Error('burst: not enough instances');
    const bursts: Array<{ wallMs: number; latenciesMs: number[]; allCorrect: boolean; correctReports: number; throughput: number }> = [];
    for (let b = 0; b < BURST_RUNS; b++) {
      const t0 = performance.now();
      const outcomes = await Promise.all(
        BURST_AETS.map((aet, i) => timedCommitment(bed.scuTarget(aet), burstRefs[i]!, { reportTimeoutMs: 120_000, dimseTimeoutMs: 120_000 }).catch((error: unknown) => error as Error)),
      );
      const wallMs = performance.now() - t0;
      const ok = outcomes.filter((o): o is TimedCommitment => !(o instanceof Error) && o.status === 0 && reportCommitsAll(o.report, burstRefs[outcomes.indexOf(o)]!));
      const latenciesMs = outcomes.filter((o): o is TimedCommitment => !(o instanceof Error)).map((o) => o.endToEndMs);
      const throughput = (BURST_AETS.length * BURST_EACH) / (wallMs / 1000);
      bursts.push({ wallMs, latenciesMs, allCorrect: ok.length === BURST_AETS.length, correctReports: ok.length, throughput });
      progress(`  burst ${b + 1}/${BURST_RUNS}: ${ok.length}/${BURST_AETS.length} reports correct, wall ${fmtMs(wallMs)}, ${fmtInt(throughput)} inst/s, p50 ${fmtMs(percentile(latenciesMs, 50))}, p99 ${fmtMs(percentile(latenciesMs, 99))}`);
      for (const o of outcomes) if (o instanceof Error) progress(`  burst error: ${o.message}`);
    }
    const medianBurst = [...bursts].sort((a, b) => a.throughput - b.throughput)[Math.floor(bursts.length / 2)]!;
    results['burst'] = {
      modalities: BURST_AETS.length,
      instancesEach: BURST_EACH,
      client: 'dcmjs SCU (src/cli/commitment-scu.ts), one association per AE title, report on the same association',
      bursts: bursts.map((b) => ({ wallMs: round(b.wallMs), throughputPerS: round(b.throughput, 0), p50Ms: round(percentile(b.latenciesMs, 50)), p99Ms: round(percentile(b.latenciesMs, 99)), maxMs: round(max(b.latenciesMs)), correctReports: b.correctReports, allCorrect: b.allCorrect })),
      allCorrect: bursts.every((b) => b.allCorrect),
      note: 'p99 is nearest-rank over 20 latencies, i.e. the slowest modality; summary row is the median burst by throughput',
    };
    row({ section: '5', measure: `${BURST_AETS.length} modalities x ${fmtInt(BURST_EACH)} at once: correct reports`, value: `${bursts.map((b) => `${b.correctReports}/${BURST_AETS.length}`).join(', ')}`, target: 'all', met: bursts.every((b) => b.allCorrect) });
    row({ section: '5', measure: `burst throughput (median of ${BURST_RUNS} bursts)`, value: `${fmtInt(medianBurst.throughput)} inst/s`, detail: `all bursts: ${bursts.map((b) => `${fmtInt(b.throughput)}/s in ${fmtMs(b.wallMs)}`).join(', ')}` });
    row({ section: '5', measure: 'burst end-to-end latency p50 / p99 (same burst)', value: `${fmtMs(percentile(medianBurst.latenciesMs, 50))} / ${fmtMs(percentile(medianBurst.latenciesMs, 99))}`, detail: 'p99 of 20 = slowest modality' });

    // ---- 4. N-ACTION-RSP latency, 10,000 -------------------------------------------------------------------
    const huge = (await ingest(bed, N_HUGE, 'huge')).refs;
    await settle(bed, 'huge');
    const latencyRefs = huge.slice(0, N_LATENCY);
    progress(`4. N-ACTION-RSP latency, ${N_LATENCY} instances: 1 warm-up + ${LATENCY_RUNS}`);
    await dcmjsRuns(bed, latencyRefs, 1, 'latency warm-up');
    const latency = await dcmjsRuns(bed, latencyRefs, LATENCY_RUNS, `latency ${N_LATENCY}`);
    const rsp = latency.map((r) => r.rspMs);
    results['nActionRsp'] = {
      instances: N_LATENCY,
      client: 'dcmjs SCU; clock from request built (dataset pre-encoded) to N-ACTION-RSP received',
      runsMs: rsp.map((v) => round(v)),
      medianMs: round(median(rsp)),
      maxMs: round(max(rsp)),
      buildMsMedian: round(median(latency.map((r) => r.buildMs))),
      sendCallMsMedian: round(median(latency.map((r) => r.sendCallMs))),
      endToEndMedianMs: round(median(latency.map((r) => r.endToEndMs))),
      target: `< ${TARGETS.nActionRspMs} ms (median)`,
      met: median(rsp) < TARGETS.nActionRspMs,
    };
    row({ section: '4', measure: `N-ACTION-RSP latency, ${fmtInt(N_LATENCY)} inst. (median / max of ${LATENCY_RUNS})`, value: `${fmtMs(median(rsp))} / ${fmtMs(max(rsp))}`, target: `< ${TARGETS.nActionRspMs} ms`, met: median(rsp) < TARGETS.nActionRspMs, detail: `runs ${list(rsp)}; request build (not counted) ${fmtMs(median(latency.map((r) => r.buildMs)))}; dcmjs sendRequests call ${fmtMs(median(latency.map((r) => r.sendCallMs)))}` });

    // ---- 3. 100,000 in one N-ACTION, peak RSS -------------------------------------------------------------------
    progress('3. restarting the sidecar so that its VmHWM covers only the 100,000 run');
    await bed.stack.sidecar.restart();
    await settle(bed, 'after restart');
    const pid = bed.stack.sidecar.pid;
    const before = readProcMemory(pid);
    const sampler = sampleRss(pid, 100, 300_000);
    progress(`3. ${N_HUGE} instances in one N-ACTION (dcmjs SCU), sidecar pid ${pid}, RSS before ${fmtMb(before.rss)}`);
    const hugeRun = await timedCommitment(bed.scuTarget(), huge, { reportTimeoutMs: 300_000, dimseTimeoutMs: 300_000 });
    const sampled = sampler.stop();
    const after = readProcMemory(pid);
    const hugeOk = hugeRun.status === 0 && reportCommitsAll(hugeRun.report, huge);
    const times3 = await sidecarTimes(bed);
    const hugeInternal = internal(times3, [hugeRun.transactionUid]);
    progress(`  end to end ${fmtMs(hugeRun.endToEndMs)}, N-ACTION-RSP ${fmtMs(hugeRun.rspMs)}, VmHWM ${fmtMb(after.peakRss)}, report ${hugeOk ? 'correct' : 'WRONG/MISSING'}`);
    const peakMb = after.peakRss / 1024 / 1024;
    const hugeTimes = times3.get(hugeRun.transactionUid);
    const rssByPhase = hugeTimes
      ? {
          verifyMaxRssBytes: maxRssBetween(sampled.samples, hugeTimes.receivedAt, hugeTimes.verifiedAt),
          deliverMaxRssBytes: maxRssBetween(sampled.samples, hugeTimes.verifiedAt, hugeTimes.reportedAt),
        }
      : undefined;
    results['huge'] = {
      instances: N_HUGE,
      client: 'dcmjs SCU, report on the same association (kept open)',
      endToEndMs: round(hugeRun.endToEndMs),
      nActionRspMs: round(hugeRun.rspMs),
      reportAfterRequestBuiltMs: hugeRun.reportMs === undefined ? null : round(hugeRun.reportMs),
      sidecarInternal: hugeInternal,
      reportCorrect: hugeOk,
      rssBeforeBytes: before.rss,
      peakRssBytes: after.peakRss,
      peakRssSampledBytes: sampled.maxRss,
      rssByPhase,
      rssAfterBytes: after.rss,
      peakRssMb: round(peakMb, 0),
      target: `VmHWM < ${TARGETS.peakRssMb} MB`,
      met: peakMb < TARGETS.peakRssMb && hugeOk,
      note: 'fresh sidecar process (restarted just before), so VmHWM covers start-up plus this one transaction',
    };
    row({ section: '3', measure: `${fmtInt(N_HUGE)} inst. in one N-ACTION (dcmjs SCU), end to end`, value: fmtMs(hugeRun.endToEndMs), target: 'report correct', met: hugeOk, detail: `N-ACTION-RSP ${fmtMs(hugeRun.rspMs)}; ${fmtInternal(hugeInternal)}` });
    row({ section: '3', measure: `sidecar peak RSS (VmHWM) for ${fmtInt(N_HUGE)}`, value: fmtMb(after.peakRss), target: `< ${TARGETS.peakRssMb} MB`, met: peakMb < TARGETS.peakRssMb, detail: `RSS before ${fmtMb(before.rss)}, after ${fmtMb(after.rss)}, max sampled every 100 ms ${fmtMb(sampled.maxRss)}${rssByPhase ? ` (during verify ${fmtMb(rssByPhase.verifyMaxRssBytes)}, during delivery ${fmtMb(rssByPhase.deliverMaxRssBytes)})` : ''}` });
  } finally {
    progress('stopping the stack');
    await bed.stack.stop();
  }
  return bed.orthancVersion;
}

/** 7. Report encoding, in this process (no servers). */
function encodingSection(results: Record<string, unknown>): void {
  progress('7. report encoding: linear writer 10k and 100k, dcmjs 10k');
  const encoding: EncodingFigure[] = [];
  const linear10k = encodeLinear(n(10_000), 7);
  const linear100k = encodeLinear(n(100_000), 5);
  const dcmjs10k = encodeDcmjs(n(10_000), 3);
  encoding.push(linear10k, linear100k, dcmjs10k);
  results['encoding'] = {
    figures: encoding.map((e) => ({ ...e, runsMs: e.runsMs.map((v) => round(v, 2)), medianMs: round(e.medianMs, 2) })),
    dcmjsSameBytesAsLinear10k: dcmjs10k.sameBytesAsLinear,
    dcmjs100k: 'skipped: dcmjs rescans its output on every write (quadratic); ~45 s for 100,000 items',
    speedup10k: round(dcmjs10k.medianMs / linear10k.medianMs, 1),
  };
  row({ section: '7', measure: `encodeEventReport, ${fmtInt(linear10k.items)} items (median of 7)`, value: fmtMs(linear10k.medianMs), detail: `${(linear10k.bytes / 1024 / 1024).toFixed(2)} MiB encoded` });
  row({ section: '7', measure: `encodeEventReport, ${fmtInt(linear100k.items)} items (median of 5)`, value: fmtMs(linear100k.medianMs), detail: `${(linear100k.bytes / 1024 / 1024).toFixed(2)} MiB encoded` });
  row({ section: '7', measure: `dcmjs getDenaturalizedDataset, ${fmtInt(dcmjs10k.items)} items (median of 3)`, value: fmtMs(dcmjs10k.medianMs), detail: `${fmtRatio(dcmjs10k.medianMs / linear10k.medianMs)} slower than ours; byte-identical output: ${dcmjs10k.sameBytesAsLinear ? 'yes' : 'no'}` });
  row({ section: '7', measure: `dcmjs getDenaturalizedDataset, ${fmtInt(linear100k.items)} items`, value: 'skipped', detail: 'quadratic writer, ~45 s' });
}

/** 10. Search over 1,000,000 stored transaction instances, in this process (store API only). */
function searchSection(results: Record<string, unknown>): void {
  progress('10. search: filling a store with 1,000,000 instances, then timing each search');
  const search = benchSearch();
  results['search'] = { ...search, figures: search.figures.map((f) => ({ ...f, medianMs: round(f.medianMs, 3), p99Ms: round(f.p99Ms, 3), maxMs: round(f.maxMs, 3) })) };
  for (const f of search.figures) {
    row({ section: '10', measure: `search 1,000,000 inst. by ${f.search} (median / p99 of ${f.runs})`, value: `${f.medianMs.toFixed(2)} ms / ${f.p99Ms.toFixed(2)} ms`, detail: `list page of 50 with its total; last run matched ${f.matched}` });
  }
  row({ section: '10', measure: 'search store: fill 1,000,000 inst. (10,000 transactions)', value: fmtMs(search.fillMs), detail: `of which indexForSearch (paid by the verifier, after the N-ACTION-RSP) ${fmtMs(search.indexMs)}; ${fmtMb(search.storeBytes)} on disk with the search indexes` });
}

/**
 * 11. Several nodes on one PostgreSQL (bench/lib/nodes.ts): its own bed (PACS with 20 x 1,000 instances,
 * the SQLite sidecar for the overhead comparison), a durable PostgreSQL, then 1, 2 and 3 nodes.
 */
async function severalNodesSection(entry: SidecarEntry, results: Record<string, unknown>): Promise<string> {
  progress('11. several nodes on PostgreSQL: starting Orthanc x2 and a sidecar on SQLite');
  const bed = await startBed(entry);
  const plan: SeveralNodesPlan = { entry, nodeCounts: NODE_COUNTS, burstEach: BURST_EACH, burstRuns: BURST_RUNS, smallTransactions: SMALL_TRANSACTIONS, smallSize: SMALL_SIZE, largeSize: N_LATENCY, largeRuns: NODE_LARGE_RUNS };
  try {
    const data = await ingest(bed, Math.max(BURST_AETS.length * BURST_EACH, N_LATENCY), 'several nodes');
    await settle(bed, 'several nodes');
    const f = await severalNodes(bed, data.refs, plan);
    results['severalNodes'] = severalNodesJson(f, plan);
    const pgNote = `PostgreSQL ${f.postgresVersion}, fsync/synchronous_commit/full_page_writes on, data on /dev/shm`;
    for (const c of f.counts) {
      const correct = c.bursts.map((b) => `${b.correctReports}/${BURST_AETS.length}`).join(', ');
      const allCorrect = c.bursts.every((b) => b.correctReports === BURST_AETS.length);
      const spread = c.perNode.map((p) => `${p.node} received ${fmtInt(p.received)}, delivered ${Object.entries(p.deliveries).map(([k, v]) => `${k}: ${v}`).join(' / ') || 'none'}`).join('; ');
      row({ section: '11', measure: `${c.nodes} node${c.nodes > 1 ? 's' : ''}: ${BURST_AETS.length} modalities x ${fmtInt(BURST_EACH)} at once: correct reports`, value: correct, target: 'all', met: allCorrect, detail: spread });
      row({ section: '11', measure: `${c.nodes} node${c.nodes > 1 ? 's' : ''}: burst throughput (median of ${BURST_RUNS} bursts)`, value: `${fmtInt(c.median.throughput)} inst/s`, detail: `all bursts: ${c.bursts.map((b) => `${fmtInt(b.throughput)}/s in ${fmtMs(b.wallMs)}`).join(', ')}; ${pgNote}` });
      row({ section: '11', measure: `${c.nodes} node${c.nodes > 1 ? 's' : ''}: burst end-to-end latency p50 / p99 (same burst)`, value: `${fmtMs(percentile(c.median.latenciesMs, 50))} / ${fmtMs(percentile(c.median.latenciesMs, 99))}`, detail: `modality i -> node i mod ${c.nodes}; p99 of 20 = slowest modality` });
    }
    for (const o of f.overhead) {
      const engine = o.engine === 'sqlite' ? 'SQLite' : 'PostgreSQL';
      row({ section: '11', measure: `${engine}: ${fmtInt(o.transactions)} x ${o.size} inst. one at a time, end to end median / p99`, value: `${fmtMs(median(o.endToEndMs))} / ${fmtMs(percentile(o.endToEndMs, 99))}`, ...(o.failures ? { target: 'reports correct', met: false } : {}), detail: `N-ACTION-RSP median ${fmtMs(median(o.rspMs))}, p99 ${fmtMs(percentile(o.rspMs, 99))}${o.failures ? `; ${o.failures} wrong or missing reports` : ''}` });
      row({ section: '11', measure: `${engine}: ${fmtInt(o.transactions)} x ${o.size} inst. one at a time, N-ACTION-RSP median / p99`, value: `${fmtMs(median(o.rspMs))} / ${fmtMs(percentile(o.rspMs, 99))}` });
      row({ section: '11', measure: `${engine}: N-ACTION-RSP latency, ${fmtInt(N_LATENCY)} inst. (median / max of ${NODE_LARGE_RUNS})`, value: `${fmtMs(median(o.largeRspMs))} / ${fmtMs(max(o.largeRspMs))}`, detail: `runs ${list(o.largeRspMs)}; end to end median ${fmtMs(median(o.largeEndToEndMs))}` });
    }
  } finally {
    await bed.stack.stop();
  }
  return bed.orthancVersion;
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: still running after ${WATCHDOG_MS / 60_000} min, giving up\n`);
    process.exit(3);
  }, WATCHDOG_MS);
  watchdog.unref();

  const sidecarEntry = prepareEntry();
  const results: Record<string, unknown> = {};
  let orthancVersion: string | undefined;
  if (wanted('1', '2', '3', '4', '5', '6', '8')) orthancVersion = await mainBed(sidecarEntry, results);
  if (wanted('9')) await policiesSection(sidecarEntry.entry, results);
  if (wanted('1', '2', '8')) await onOrthanc112(sidecarEntry.entry, results);
  if (wanted('7')) encodingSection(results);
  if (wanted('10')) searchSection(results);
  if (wanted('11')) {
    // Not `orthancVersion ??= await …`: that would skip the section whenever an earlier one set the version.
    const version = await severalNodesSection(sidecarEntry.entry, results);
    orthancVersion ??= version;
  }
  const machine = describeMachine(ROOT, orthancVersion ?? 'not started', STORAGE);

  const finishedAt = new Date();
  const noise = 'Two shared vCPUs run Orthanc x2, the sidecar and this process at once: expect +-20-30% run to run. Figures are indicative; nothing is asserted.';
  printTable(machine, noise, finishedAt.getTime() - startedAt.getTime(), sidecarEntry.note);

  const document = {
    benchmark: 'orthanc-stgcmt-sidecar',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationS: round((finishedAt.getTime() - startedAt.getTime()) / 1000, 1),
    scale,
    ...(only.length > 0 ? { only } : {}),
    machine,
    sidecarEntry: sidecarEntry.note,
    sidecarEnv: SIDECAR_ENV,
    note: noise,
    results,
    table: rows,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = startedAt.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const complete = scale === 1 && only.length === 0;
  const file = join(RESULTS_DIR, `${only.length > 0 ? `only-${only.join('-')}-` : ''}${scale === 1 ? '' : `scale-${scale}-`}${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
  if (complete) writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(document, null, 2)}\n`);
  progress(`results written to ${file}${complete ? ' and bench/results/latest.json' : ` (${scale === 1 ? 'BENCH_ONLY' : 'scaled'} run: latest.json left alone)`}`);
}

function printTable(machine: ReturnType<typeof describeMachine>, noise: string, durationMs: number, entryNote: string): void {
  const header = ['#', 'measure', 'value', 'target', 'met'];
  const body = rows.map((r) => [r.section, r.measure, r.value, r.target ?? '', r.met === undefined ? '' : r.met ? 'yes' : 'NO']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out: string[] = [];
  out.push('');
  out.push(`Storage commitment benchmark: ${machine.cpuCount} x ${machine.cpuModel}, ${machine.totalMemory}, ${machine.os}`);
  out.push(`node ${machine.nodeVersion}, Orthanc ${machine.orthancVersion}, dcmjs-dimse ${machine.dcmjsDimseVersion}, storage ${machine.storage}, commit ${machine.gitCommit ?? '?'}${machine.gitDirty ? ' (dirty)' : ''}, ${(durationMs / 1000).toFixed(0)} s`);
  out.push(`sidecar: ${entryNote}`);
  out.push(noise);
  if (scale !== 1) out.push(`SCALED RUN (BENCH_SCALE=${scale}): instance counts are not the nominal ones.`);
  if (only.length > 0) out.push(`PARTIAL RUN (BENCH_ONLY=${only.join(',')}).`);
  out.push('');
  out.push(line(header));
  out.push(line(widths.map((w) => '-'.repeat(w))));
  for (const r of body) out.push(line(r));
  out.push('');
  out.push('details:');
  for (const r of rows) if (r.detail) out.push(`  [${r.section}] ${r.measure}: ${r.detail}`);
  out.push('');
  console.log(out.join('\n'));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
