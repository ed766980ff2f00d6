/**
 * Section 11: several sidecar nodes on one PostgreSQL. A real PostgreSQL (test/harness/postgres.ts) run
 * durable (fsync, synchronous_commit and full_page_writes on, as in production; data on /dev/shm as the
 * harness keeps it), beside the bench's bed (PACS + modality Orthanc + one sidecar on SQLite).
 *
 *  - the burst of section 5 (20 calling AE titles x 1,000 instances at once, our dcmjs SCU) against 1, 2
 *    and 3 nodes sharing one fresh database per node count, modality i sent to node i mod N (what a TCP
 *    load balancer does);
 *  - per-transaction overhead, SQLite vs PostgreSQL: sequential small transactions on one sidecar each;
 *  - the N-ACTION-RSP latency of a 10,000-instance request on each (as section 4).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SopReference } from '../../src/commitment/types.js';
import { freePort } from '../../test/harness/orthanc.js';
import { startPostgres, type PostgresServer } from '../../test/harness/postgres.js';
import { startSidecar, type SidecarProcess } from '../../test/harness/sidecar.js';
import { BURST_AETS, progress, SCU_AET, SIDECAR_ENV, waitForUidIndexIn, type Bed, type SidecarEntry } from './bed.js';
import { reportCommitsAll, timedCommitment, type TimedCommitment } from './scu.js';
import { fmtInt, fmtMs, max, median, percentile, round } from './stats.js';

/** Production durability (the harness turns these off for the tests). */
export const DURABLE_SETTINGS = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' } as const;

export interface SeveralNodesPlan {
  readonly entry: SidecarEntry;
  /** Node counts to measure (1, 2, 3). */
  readonly nodeCounts: readonly number[];
  /** Instances per modality in a burst. */
  readonly burstEach: number;
  readonly burstRuns: number;
  /** Sequential small transactions, and their size. */
  readonly smallTransactions: number;
  readonly smallSize: number;
  /** The large request's size (N-ACTION-RSP latency) and its runs (after one warm-up). */
  readonly largeSize: number;
  readonly largeRuns: number;
}

export interface BurstFigure {
  readonly wallMs: number;
  readonly throughput: number;
  readonly latenciesMs: number[];
  readonly correctReports: number;
  readonly errors: string[];
}

export interface NodeCountFigure {
  readonly nodes: number;
  readonly bursts: BurstFigure[];
  /** The median burst by throughput. */
  readonly median: BurstFigure;
  /** Per node over the warm-up and all bursts: N-ACTIONs received, report deliveries by path and result. */
  readonly perNode: NodeCounters[];
}

export interface NodeCounters {
  readonly node: string;
  received: number;
  /** 'via=...,ok=...' -> attempts */
  readonly deliveries: Record<string, number>;
}

export interface OverheadFigure {
  readonly engine: 'sqlite' | 'postgresql';
  readonly transactions: number;
  readonly size: number;
  readonly endToEndMs: number[];
  readonly rspMs: number[];
  readonly failures: number;
  readonly largeRspMs: number[];
  readonly largeEndToEndMs: number[];
}

export interface SeveralNodesFigures {
  readonly postgresVersion: string;
  readonly counts: NodeCountFigure[];
  readonly overhead: OverheadFigure[];
}

interface Target {
  readonly port: number;
  readonly aeTitle: string;
}

function scuTarget(node: Target, callingAeTitle: string): { host: string; port: number; callingAeTitle: string; calledAeTitle: string } {
  return { host: '127.0.0.1', port: node.port, callingAeTitle, calledAeTitle: node.aeTitle };
}

async function burst(nodes: readonly Target[], refsPerAet: readonly SopReference[][]): Promise<BurstFigure> {
  const t0 = performance.now();
  const outcomes = await Promise.all(
    BURST_AETS.map((aet, i) => timedCommitment(scuTarget(nodes[i % nodes.length]!, aet), refsPerAet[i]!, { reportTimeoutMs: 120_000, dimseTimeoutMs: 120_000 }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))))),
  );
  const wallMs = performance.now() - t0;
  const errors: string[] = [];
  let correctReports = 0;
  const latenciesMs: number[] = [];
  outcomes.forEach((o, i) => {
    if (o instanceof Error) {
      errors.push(`${BURST_AETS[i]}: ${o.message}`);
      return;
    }
    latenciesMs.push(o.endToEndMs);
    if (o.status === 0 && reportCommitsAll(o.report, refsPerAet[i]!)) correctReports++;
    else errors.push(`${BURST_AETS[i]}: N-ACTION status 0x${o.status.toString(16)}, report ${o.report ? `${o.report.committed.length} committed / ${o.report.failed.length} failed` : 'missing'}`);
  });
  const throughput = (refsPerAet.length * refsPerAet[0]!.length) / (wallMs / 1000);
  return { wallMs, throughput, latenciesMs, correctReports, errors };
}

const medianBy = <T>(items: readonly T[], key: (t: T) => number): T => [...items].sort((a, b) => key(a) - key(b))[Math.floor(items.length / 2)]!;

/** Sequential small transactions, then the large request's N-ACTION-RSP (1 warm-up + runs), on one sidecar. */
async function overhead(engine: OverheadFigure['engine'], node: Target, smallRefs: readonly SopReference[][], largeRefs: readonly SopReference[], largeRuns: number): Promise<OverheadFigure> {
  const options = { reportTimeoutMs: 60_000, dimseTimeoutMs: 60_000 };
  // Warm-up: connections, prepared statements, JIT.
  for (let i = 0; i < 10; i++) await timedCommitment(scuTarget(node, SCU_AET), smallRefs[i % smallRefs.length]!, options);
  const endToEndMs: number[] = [];
  const rspMs: number[] = [];
  let failures = 0;
  for (const refs of smallRefs) {
    const r = await timedCommitment(scuTarget(node, SCU_AET), refs, options);
    if (r.status !== 0 || !reportCommitsAll(r.report, refs)) failures++;
    endToEndMs.push(r.endToEndMs);
    rspMs.push(r.rspMs);
  }
  progress(`  ${engine}: ${smallRefs.length} x ${smallRefs[0]!.length} inst. one at a time: end to end median ${fmtMs(median(endToEndMs))} p99 ${fmtMs(percentile(endToEndMs, 99))}, N-ACTION-RSP median ${fmtMs(median(rspMs))} p99 ${fmtMs(percentile(rspMs, 99))}${failures ? `, ${failures} WRONG/MISSING reports` : ''}`);
  const large: TimedCommitment[] = [];
  for (let i = 0; i <= largeRuns; i++) {
    const r = await timedCommitment(scuTarget(node, SCU_AET), largeRefs, { reportTimeoutMs: 240_000, dimseTimeoutMs: 240_000 });
    if (r.status !== 0 || !reportCommitsAll(r.report, largeRefs)) failures++;
    if (i > 0) large.push(r); // the first is a warm-up
  }
  const largeRspMs = large.map((r) => r.rspMs);
  progress(`  ${engine}: ${fmtInt(largeRefs.length)} inst. N-ACTION-RSP ${largeRspMs.map((v) => fmtMs(v)).join(', ')}`);
  return { engine, transactions: smallRefs.length, size: smallRefs[0]!.length, endToEndMs, rspMs, failures, largeRspMs, largeEndToEndMs: large.map((r) => r.endToEndMs) };
}

interface Nodes {
  readonly nodes: SidecarProcess[];
  stop(): Promise<void>;
}

/** `count` sidecars on `databaseUrl`, node-a, node-b, …, each with its own data directory and ports. */
async function startNodes(bed: Bed, entry: SidecarEntry, databaseUrl: string, count: number, peersFile: string): Promise<Nodes> {
  const nodes: SidecarProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(
      nodes.map(async (node) => {
        await node.stop();
        node.cleanup();
      }),
    );
  };
  try {
    // One after the other: the first applies the migrations.
    for (let i = 0; i < count; i++) {
      nodes.push(
        await startSidecar({
          orthancUrl: bed.stack.pacs.url,
          entry,
          env: { ...SIDECAR_ENV, STGCMT_PEERS_FILE: peersFile, STGCMT_DATABASE_URL: databaseUrl, STGCMT_NODE_ID: `node-${String.fromCharCode(97 + i)}` },
        }),
      );
    }
    for (const node of nodes) await waitForUidIndexIn(node.dataDir, bed.stack.pacs);
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, stop };
}

/** Per node, from its /metrics: N-ACTIONs received (transactions_total{outcome="received"}) and report deliveries by path and result. */
async function perNodeCounters(nodes: readonly SidecarProcess[]): Promise<NodeCounters[]> {
  const out: NodeCounters[] = [];
  for (const [i, node] of nodes.entries()) {
    const id = `node-${String.fromCharCode(97 + i)}`;
    const counters: NodeCounters = { node: id, received: Number.NaN, deliveries: {} };
    try {
      const { body } = await node.api<string>('GET', '/metrics');
      for (const line of String(body).split('\n')) {
        const received = /^stgcmt_transactions_total\{outcome="received"\} (\d+)/.exec(line);
        if (received) counters.received = Number(received[1]);
        const delivery = /^stgcmt_delivery_attempts_total\{([^}]*)\} (\d+)/.exec(line);
        if (delivery) counters.deliveries[delivery[1]!.replace(/"/g, '')] = Number(delivery[2]);
      }
    } catch {
      // the breakdown is a bonus
    }
    out.push(counters);
  }
  return out;
}

export async function severalNodes(bed: Bed, instances: readonly SopReference[], plan: SeveralNodesPlan): Promise<SeveralNodesFigures> {
  const { burstEach, burstRuns, smallTransactions, smallSize, largeSize, largeRuns } = plan;
  const refsPerAet = BURST_AETS.map((_, i) => instances.slice(i * burstEach, (i + 1) * burstEach));
  if (refsPerAet.some((r) => r.length !== burstEach)) throw new Error('11: not enough instances for the burst');
  const smallRefs = Array.from({ length: smallTransactions }, (_, i) => instances.slice((i * smallSize) % (instances.length - smallSize), ((i * smallSize) % (instances.length - smallSize)) + smallSize));
  const largeRefs = instances.slice(0, largeSize);
  if (largeRefs.length !== largeSize) throw new Error('11: not enough instances for the large request');

  // The same peers as the bed's sidecar: reports go back on the SCU's association, the port only fills the file.
  const dummyPort = await freePort();
  const peersDir = mkdtempSync(join('/dev/shm', 'stgcmt-bench-peers-'));
  const peersFile = join(peersDir, 'peers.json');
  writeFileSync(peersFile, JSON.stringify({ peers: [SCU_AET, ...BURST_AETS].map((aet) => ({ aet, host: '127.0.0.1', port: dummyPort })) }));

  progress('11. starting PostgreSQL (fsync, synchronous_commit, full_page_writes on; data on /dev/shm)');
  let pg: PostgresServer | undefined;
  try {
    pg = await startPostgres({ database: 'bench_overhead', settings: DURABLE_SETTINGS });
    const version = await pgVersion(pg);
    progress(`  PostgreSQL ${version} on port ${pg.port}`);

    // ---- per-transaction overhead: the bed's SQLite sidecar, then one node on PostgreSQL -----------------------
    progress(`11. per-transaction overhead: ${smallTransactions} x ${smallSize} inst. one at a time, then ${fmtInt(largeSize)} inst. x${largeRuns}, SQLite then PostgreSQL`);
    const sqlite = await overhead('sqlite', { port: bed.stack.sidecar.dicomPort, aeTitle: bed.stack.sidecar.aeTitle }, smallRefs, largeRefs, largeRuns);
    // The SQLite sidecar leaves the machine to the nodes from here on.
    await bed.stack.sidecar.stop();
    const one = await startNodes(bed, plan.entry, pg.url, 1, peersFile);
    let postgres: OverheadFigure;
    try {
      postgres = await overhead('postgresql', { port: one.nodes[0]!.dicomPort, aeTitle: one.nodes[0]!.aeTitle }, smallRefs, largeRefs, largeRuns);
    } finally {
      await one.stop();
    }

    // ---- the burst on 1, 2, 3 nodes ---------------------------------------------------------------------------
    const counts: NodeCountFigure[] = [];
    for (const count of plan.nodeCounts) {
      const url = await pg.createDatabase(`bench_nodes_${count}`);
      progress(`11. burst on ${count} node(s) (fresh database): ${BURST_AETS.length} AE titles x ${burstEach} inst., modality i -> node i mod ${count}, x${burstRuns}`);
      const cluster = await startNodes(bed, plan.entry, url, count, peersFile);
      try {
        const targets = cluster.nodes.map((node) => ({ port: node.dicomPort, aeTitle: node.aeTitle }));
        // Warm-up on every node: connections to PostgreSQL and Orthanc, JIT.
        await Promise.all(targets.map((t) => timedCommitment(scuTarget(t, SCU_AET), refsPerAet[0]!.slice(0, Math.min(100, burstEach)), { reportTimeoutMs: 60_000, dimseTimeoutMs: 60_000 })));
        const bursts: BurstFigure[] = [];
        for (let b = 0; b < burstRuns; b++) {
          const figure = await burst(targets, refsPerAet);
          bursts.push(figure);
          progress(`  ${count} node(s), burst ${b + 1}/${burstRuns}: ${figure.correctReports}/${BURST_AETS.length} reports correct, wall ${fmtMs(figure.wallMs)}, ${fmtInt(figure.throughput)} inst/s, p50 ${fmtMs(percentile(figure.latenciesMs, 50))}, p99 ${fmtMs(percentile(figure.latenciesMs, 99))}`);
          for (const e of figure.errors) progress(`  burst error: ${e}`);
        }
        const perNode = await perNodeCounters(cluster.nodes);
        counts.push({ nodes: count, bursts, median: medianBy(bursts, (b) => b.throughput), perNode });
      } finally {
        await cluster.stop();
      }
    }
    return { postgresVersion: version, counts, overhead: [sqlite, postgres] };
  } finally {
    await pg?.stop();
    rmSync(peersDir, { recursive: true, force: true });
  }
}

async function pgVersion(pg: PostgresServer): Promise<string> {
  const { default: postgres } = await import('pg');
  const client = new postgres.Client({ connectionString: pg.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0]?.server_version ?? '?';
  } finally {
    await client.end();
  }
}

/** The figures for the results JSON. */
export function severalNodesJson(f: SeveralNodesFigures, plan: SeveralNodesPlan): Record<string, unknown> {
  const burstJson = (b: BurstFigure): Record<string, unknown> => ({ wallMs: round(b.wallMs), throughputPerS: round(b.throughput, 0), p50Ms: round(percentile(b.latenciesMs, 50)), p99Ms: round(percentile(b.latenciesMs, 99)), correctReports: b.correctReports, errors: b.errors });
  return {
    postgres: { version: f.postgresVersion, settings: DURABLE_SETTINGS, dataOn: '/dev/shm' },
    client: 'dcmjs SCU (src/cli/commitment-scu.ts), report on the same association',
    burst: {
      modalities: BURST_AETS.length,
      instancesEach: plan.burstEach,
      spread: 'modality i -> node i mod N (round robin, as a TCP load balancer); one fresh database per node count',
      byNodes: f.counts.map((c) => ({
        nodes: c.nodes,
        bursts: c.bursts.map(burstJson),
        medianThroughputPerS: round(c.median.throughput, 0),
        p50Ms: round(percentile(c.median.latenciesMs, 50)),
        p99Ms: round(percentile(c.median.latenciesMs, 99)),
        allCorrect: c.bursts.every((b) => b.correctReports === BURST_AETS.length),
        perNode: c.perNode,
      })),
      note: 'summary is the median burst by throughput; p99 is nearest-rank over 20 latencies (the slowest modality)',
    },
    overhead: f.overhead.map((o) => ({
      engine: o.engine,
      transactions: o.transactions,
      instancesEach: o.size,
      endToEndMedianMs: round(median(o.endToEndMs), 2),
      endToEndP99Ms: round(percentile(o.endToEndMs, 99), 2),
      nActionRspMedianMs: round(median(o.rspMs), 2),
      nActionRspP99Ms: round(percentile(o.rspMs, 99), 2),
      failures: o.failures,
      large: { instances: plan.largeSize, nActionRspRunsMs: o.largeRspMs.map((v) => round(v)), nActionRspMedianMs: round(median(o.largeRspMs)), nActionRspMaxMs: round(max(o.largeRspMs)), endToEndMedianMs: round(median(o.largeEndToEndMs)) },
    })),
  };
}
