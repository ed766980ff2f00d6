/**
 * The benchmark's test bed: the harness stack (PACS Orthanc, modality Orthanc, sidecar) with the sidecar
 * tuned for measuring, the peers our dcmjs SCUs call from, and small helpers shared by run.ts and
 * profile.ts. Everything listens on 127.0.0.1.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { loadConfig, type Config } from '../../src/config.js';
import type { SopReference } from '../../src/commitment/types.js';
import { OrthancClient } from '../../src/orthanc/client.js';
import { createInstances, freePort, storageCommitment, type CreatedInstance, type StorageCommitmentResult } from '../../test/harness/orthanc.js';
import { startStack, type Stack } from '../../test/harness/stack.js';

/** The sidecar's environment in the bench: quiet logs, short arrival wait (every instance exists). */
export const SIDECAR_ENV: Record<string, string> = {
  STGCMT_LOG_LEVEL: 'warn',
  STGCMT_ARRIVAL_WAIT: '1s',
  // A 100,000-item report takes a while to be read by the receiving SCU: no spurious retry.
  STGCMT_REPORT_TIMEOUT: '120s',
};

export const SCU_AET = 'BENCHSCU';
export const BURST_AETS = Array.from({ length: 20 }, (_, i) => `BENCHMOD${String(i + 1).padStart(2, '0')}`);

const ROOT = resolve(import.meta.dirname, '..', '..');
const started = performance.now();
export function progress(message: string): void {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
}

export type SidecarEntry = 'dist' | 'src';

/**
 * Which sidecar to run. BENCH_ENTRY=dist (default): the compiled `npm start` entry, built here first
 * (tsc -p tsconfig.json), as production runs it: tsx alone adds ~40 MB of RSS and compiles on the fly.
 * BENCH_ENTRY=src: the TypeScript entry through tsx, as the tests run it. A failed build falls back to src.
 */
export function prepareEntry(): { entry: SidecarEntry; note: string } {
  const wanted = process.env['BENCH_ENTRY'] ?? 'dist';
  if (wanted === 'src') return { entry: 'src', note: 'src/main.ts through tsx (BENCH_ENTRY=src)' };
  if (wanted !== 'dist') throw new Error('BENCH_ENTRY must be dist or src');
  progress('building the sidecar (tsc -p tsconfig.json -> dist/)');
  const build = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  if (build.status === 0 && existsSync(join(ROOT, 'dist', 'main.js'))) return { entry: 'dist', note: 'dist/main.js (compiled by this run, as npm start)' };
  const why = `${build.stdout ?? ''}${build.stderr ?? ''}`.trim().split('\n').slice(0, 5).join(' | ') || `exit ${build.status}`;
  progress(`build failed, falling back to src through tsx: ${why}`);
  return { entry: 'src', note: `src/main.ts through tsx (the build failed: ${why})` };
}

export interface Bed {
  readonly entry: SidecarEntry;
  readonly stack: Stack;
  readonly config: Config;
  readonly orthancVersion: string;
  /** An OrthancClient like the sidecar's (same batch size and concurrency), for the raw lookup cost. */
  readonly rawClient: OrthancClient;
  scuTarget(callingAeTitle?: string): { host: string; port: number; callingAeTitle: string; calledAeTitle: string };
}

/**
 * `orthancBinary`: another Orthanc for both servers (scripts/orthanc-1.12); default the harness's.
 * `pacsConfig`: merged into the PACS's Orthanc configuration (e.g. the shipped storage settings).
 */
export async function startBed(entry: SidecarEntry, extraSidecarEnv: Record<string, string> = {}, orthancBinary?: string, pacsConfig?: Record<string, unknown>): Promise<Bed> {
  // Reports come back on the SCU's own association (kept open), so these ports only fill the peers file.
  const dummyPort = await freePort();
  const peers = [SCU_AET, ...BURST_AETS].map((aet) => ({ aet, port: dummyPort }));
  const sidecarEnv = { ...SIDECAR_ENV, ...extraSidecarEnv };
  const stack = await startStack({ peers, sidecarEnv, sidecarEntry: entry, ...(orthancBinary ? { orthancBinary } : {}), ...(pacsConfig ? { pacsConfig } : {}) });
  const system = await stack.pacs.rest<{ Version: string }>('GET', '/system');
  // The same parsing as the sidecar's, so batch size and concurrency are its defaults (or overrides).
  const { config } = loadConfig({ ORTHANC_URL: stack.pacs.url, ...sidecarEnv });
  const rawClient = new OrthancClient({
    baseUrl: stack.pacs.url,
    timeoutMs: config.orthancTimeout,
    batchSize: config.lookupBatchSize,
    concurrency: config.lookupConcurrency,
  });
  return {
    entry,
    stack,
    config,
    orthancVersion: system.Version,
    rawClient,
    scuTarget: (callingAeTitle = SCU_AET) => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle, calledAeTitle: stack.sidecar.aeTitle }),
  };
}

export interface Ingested {
  readonly refs: SopReference[];
  /** SOP Instance UID -> Orthanc ID, as the sidecar's UID index learns them from the changes feed. */
  readonly hints: Map<string, string>;
}

export async function ingest(bed: Bed, count: number, label: string): Promise<Ingested> {
  const t0 = performance.now();
  const created: CreatedInstance[] = await createInstances(bed.stack.pacs, count);
  progress(`created ${count.toLocaleString('en-US')} instances (${label}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return {
    refs: created.map((c) => ({ sopClassUid: c.sopClassUid, sopInstanceUid: c.sopInstanceUid })),
    hints: new Map(created.map((c) => [c.sopInstanceUid, c.orthancId])),
  };
}

/**
 * Waits (bounded) until the sidecar's UID index has read Orthanc's changes feed up to now, so that a
 * measurement is not disturbed by the follower still indexing a fresh ingest. Reads the index's feed
 * position straight from its SQLite file (read-only). Returns the wait in ms, or undefined when this
 * version of the sidecar keeps no such index.
 */
export async function waitForUidIndex(bed: Bed, timeoutMs = 180_000): Promise<number | undefined> {
  return waitForUidIndexIn(bed.stack.sidecar.dataDir, bed.stack.pacs, timeoutMs);
}

/** waitForUidIndex for any sidecar: its data directory, and the PACS whose changes feed it follows. */
export async function waitForUidIndexIn(dataDir: string, pacs: Pick<Bed['stack']['pacs'], 'rest'>, timeoutMs = 180_000): Promise<number | undefined> {
  const file = join(dataDir, 'orthanc-uid-index.sqlite');
  if (!existsSync(file)) return undefined;
  const t0 = performance.now();
  const { Last: newest } = await pacs.rest<{ Last: number }>('GET', '/changes?last');
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const position = db.prepare('SELECT last_seq FROM feed_position WHERE id = 1');
    while (performance.now() - t0 < timeoutMs) {
      let seq = -1;
      try {
        seq = (position.get() as { last_seq: number } | undefined)?.last_seq ?? -1;
      } catch {
        return undefined; // another schema: not the index this helper knows
      }
      if (seq >= newest) return performance.now() - t0;
      await sleep(200);
    }
    throw new Error(`the sidecar's UID index did not reach change ${newest} within ${timeoutMs} ms`);
  } finally {
    db.close();
  }
}

/** Orthanc (the modality) as SCU against `modalityName`; throws unless every instance is committed. */
export async function orthancScuCommit(bed: Bed, modalityName: string, refs: readonly SopReference[], timeoutMs: number): Promise<StorageCommitmentResult> {
  const result = await storageCommitment(bed.stack.modality, modalityName, refs as SopReference[], { timeoutMs });
  const committed = result.raw.Success?.length ?? 0;
  if (result.status !== 'Success' || committed !== refs.length) {
    throw new Error(`${modalityName}: status ${result.status}, ${committed}/${refs.length} committed, ${result.raw.Failures?.length ?? 0} failures`);
  }
  return result;
}

export interface SidecarTimes {
  /** Wall clock (ms) when the N-ACTION was recorded, the verdict saved, the report acknowledged. */
  readonly receivedAt: number;
  readonly verifiedAt: number;
  readonly reportedAt: number;
  /** N-ACTION recorded -> verdict saved (the Orthanc lookups and the judging). */
  readonly verifyMs: number;
  /** Verdict saved -> N-EVENT-REPORT-RSP received (encoding, sending, the peer reading it). */
  readonly deliverMs: number;
}

/** The sidecar's own timestamps for recent transactions (HTTP API, millisecond resolution). */
export async function sidecarTimes(bed: Bed): Promise<Map<string, SidecarTimes>> {
  const times = new Map<string, SidecarTimes>();
  try {
    const { status, body } = await bed.stack.sidecar.api<{ items: Array<{ transactionUid: string; receivedAt: string; verifiedAt: string | null; reportedAt: string | null }> }>('GET', '/api/transactions?limit=500');
    if (status !== 200) return times;
    for (const item of body.items) {
      if (!item.verifiedAt || !item.reportedAt) continue;
      const receivedAt = Date.parse(item.receivedAt);
      const verifiedAt = Date.parse(item.verifiedAt);
      const reportedAt = Date.parse(item.reportedAt);
      times.set(item.transactionUid, { receivedAt, verifiedAt, reportedAt, verifyMs: verifiedAt - receivedAt, deliverMs: reportedAt - verifiedAt });
    }
  } catch {
    // the breakdown is a bonus; the API may have changed shape
  }
  return times;
}
