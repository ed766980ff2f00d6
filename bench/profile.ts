/**
 * `node --import tsx bench/profile.ts`: CPU profiles of the sidecar process (V8's sampling profiler, started
 * by bench/lib/cpu-profile-hook.mjs preloaded through NODE_OPTIONS) for the 20,000-instance case (Orthanc's
 * SCU) and the 100,000-instance case (our dcmjs SCU), each in a fresh sidecar process. Only samples taken
 * while the case ran are summarised (the sidecar's start-up and the tsx compilation are left out).
 * Profiles go to BENCH_PROFILE_DIR (default /tmp/stgcmt-cpuprof-<time>); the summaries are printed and
 * written to bench/results/profile-latest.json.
 */
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { SopReference } from '../src/commitment/types.js';
import { ingest, orthancScuCommit, prepareEntry, progress, startBed, waitForUidIndex, type Bed } from './lib/bed.js';
import { formatSummary, monotonicMicros, summariseProfile, type ProfileSummary } from './lib/cpuprofile.js';
import { reportCommitsAll, timedCommitment } from './lib/scu.js';
import { fmtMs } from './lib/stats.js';

const ROOT = resolve(import.meta.dirname, '..');
const PROFILE_DIR = process.env['BENCH_PROFILE_DIR'] ?? `/tmp/stgcmt-cpuprof-${Date.now()}`;
const WATCHDOG_MS = 10 * 60_000;
/** Node 20 refuses --cpu-prof in NODE_OPTIONS; this preload starts the profiler through node:inspector. */
const HOOK = join(ROOT, 'bench', 'lib', 'cpu-profile-hook.mjs');

interface Case {
  readonly name: string;
  readonly client: string;
  run(bed: Bed): Promise<string>;
}

function newestProfile(dir: string): string {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!files[0]) throw new Error(`no .cpuprofile in ${dir}`);
  return files[0];
}

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    process.stderr.write('profile: giving up after 10 min\n');
    process.exit(3);
  }, WATCHDOG_MS);
  watchdog.unref();

  const sidecarEntry = prepareEntry();
  progress(`sidecar: ${sidecarEntry.note}`);
  const bed = await startBed(sidecarEntry.entry);
  const summaries: Array<{ name: string; client: string; outcome: string; summary: ProfileSummary }> = [];
  try {
    const large: SopReference[] = (await ingest(bed, 20_000, '20k')).refs;
    const huge: SopReference[] = (await ingest(bed, 100_000, '100k')).refs;
    await waitForUidIndex(bed);
    const cases: Case[] = [
      {
        name: '20k',
        client: 'modality Orthanc (SCU), 2 runs',
        async run(b) {
          const times: number[] = [];
          for (let i = 0; i < 2; i++) times.push((await orthancScuCommit(b, b.stack.sidecarModalityName, large, 180_000)).elapsedMs);
          return `end to end ${times.map((t) => fmtMs(t)).join(', ')}`;
        },
      },
      {
        name: '100k',
        client: 'dcmjs SCU, 1 run, report on the same association',
        async run(b) {
          const r = await timedCommitment(b.scuTarget(), huge, { reportTimeoutMs: 300_000, dimseTimeoutMs: 300_000 });
          return `end to end ${fmtMs(r.endToEndMs)}, N-ACTION-RSP ${fmtMs(r.rspMs)}, report ${reportCommitsAll(r.report, huge) ? 'correct' : 'WRONG/MISSING'}`;
        },
      },
    ];
    for (const c of cases) {
      const dir = join(PROFILE_DIR, c.name);
      mkdirSync(dir, { recursive: true });
      progress(`${c.name}: restarting the sidecar with the CPU profiler (${dir})`);
      await bed.stack.sidecar.restart({ NODE_OPTIONS: `--import ${HOOK}`, BENCH_CPU_PROFILE_DIR: dir });
      await waitForUidIndex(bed);
      // Warm-up outside the window: JIT, Orthanc connections, the peer list.
      await orthancScuCommit(bed, bed.stack.sidecarModalityName, large.slice(0, 200), 60_000);
      const fromUs = monotonicMicros();
      const outcome = await c.run(bed);
      const toUs = monotonicMicros();
      progress(`${c.name}: ${outcome}`);
      // The profile is written when the process exits.
      await bed.stack.sidecar.restart({ NODE_OPTIONS: '', BENCH_CPU_PROFILE_DIR: '' });
      const summary = summariseProfile(newestProfile(dir), ROOT, { fromUs, toUs }, 20);
      summaries.push({ name: c.name, client: c.client, outcome, summary });
      console.log(`\n=== sidecar CPU profile, ${c.name} (${c.client}): ${outcome}\n${summary.file}\n${formatSummary(summary)}`);
    }
  } finally {
    await bed.stack.stop();
  }
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const out = join(ROOT, 'bench', 'results', 'profile-latest.json');
  writeFileSync(out, `${JSON.stringify({ at: new Date().toISOString(), orthancVersion: bed.orthancVersion, sidecarEntry: sidecarEntry.note, profileDir: PROFILE_DIR, cases: summaries }, null, 2)}\n`);
  progress(`summaries written to ${out}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`profile failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
