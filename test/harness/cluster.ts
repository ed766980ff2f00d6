/**
 * Several sidecars on one PostgreSQL, as a hospital runs them for high availability: a real PostgreSQL
 * (test/harness/postgres.ts), a PACS Orthanc, a modality Orthanc (the Storage Commitment SCU, which knows
 * every node under the AE title STGCMT), and N sidecar processes sharing STGCMT_DATABASE_URL, each with
 * its own data directory (UID index) and STGCMT_NODE_ID. Everything on 127.0.0.1.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startOrthanc, type OrthancServer } from './orthanc.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { startSidecar, type SidecarProcess } from './sidecar.js';
import type { TestPeer } from './stack.js';

export interface Cluster {
  readonly pg: PostgresServer;
  readonly pacs: OrthancServer;
  readonly modality: OrthancServer;
  readonly nodes: readonly SidecarProcess[];
  /** Node ids, in the order of `nodes` (node-a, node-b, ...). */
  readonly nodeIds: readonly string[];
  /** The name of node i in the modality Orthanc's DicomModalities (for POST /modalities/{name}/storage-commitment). */
  modalityNameOf(index: number): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  readonly nodes?: number;
  /** STGCMT_LEASE_TTL of every node (default 3s, the shortest allowed, so that takeovers are quick). */
  readonly leaseTtl?: string;
  readonly sidecarEnv?: Record<string, string>;
  readonly peers?: readonly TestPeer[];
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const count = options.nodes ?? 3;
  const nodeIds = Array.from({ length: count }, (_, i) => `node-${String.fromCharCode(97 + i)}`);
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  const [pacsDicom, modalityDicom] = [await freePort(), await freePort()];
  const pg = await startPostgres();
  let pacs: OrthancServer | undefined;
  let modality: OrthancServer | undefined;
  const nodes: SidecarProcess[] = [];
  try {
    [pacs, modality] = await Promise.all([
      startOrthanc({ name: 'pacs', aet: 'PACS', dicomPort: pacsDicom, dicomModalities: { modality: { aet: 'MODALITY', host: '127.0.0.1', port: modalityDicom } } }),
      startOrthanc({
        name: 'modality',
        aet: 'MODALITY',
        dicomPort: modalityDicom,
        // Every node answers as STGCMT: Orthanc accepts the report from any of them.
        dicomModalities: Object.fromEntries([...nodeIds.map((id, i) => [id, { aet: 'STGCMT', host: '127.0.0.1', port: ports[i]! }]), ['pacs', { aet: 'PACS', host: '127.0.0.1', port: pacsDicom }]]),
      }),
    ]);
    const peersDir = mkdtempSync(join('/dev/shm', 'stgcmt-peers-'));
    const peersFile = join(peersDir, 'peers.json');
    writeFileSync(peersFile, JSON.stringify({ peers: (options.peers ?? []).map((p) => ({ aet: p.aet, host: '127.0.0.1', port: p.port, ...(p.callback === undefined ? {} : { callback: p.callback }) })) }));
    // One after the other: the first applies the migrations (the others would wait on its advisory lock).
    for (let i = 0; i < count; i++) {
      nodes.push(
        await startSidecar({
          orthancUrl: pacs.url,
          dicomPort: ports[i]!,
          env: {
            STGCMT_DATABASE_URL: pg.url,
            STGCMT_NODE_ID: nodeIds[i]!,
            STGCMT_LEASE_TTL: options.leaseTtl ?? '3s',
            STGCMT_PEERS_FILE: peersFile,
            ...options.sidecarEnv,
          },
        }),
      );
    }
  } catch (error) {
    await Promise.allSettled([...nodes.map((n) => n.stop()), pacs?.stop(), modality?.stop()]);
    await pg.stop();
    throw error;
  }
  const [pacsServer, modalityServer] = [pacs, modality];
  return {
    pg,
    pacs: pacsServer,
    modality: modalityServer,
    nodes,
    nodeIds,
    modalityNameOf: (index) => nodeIds[index]!,
    async stop() {
      await Promise.allSettled(nodes.map(async (n) => {
        signal(n, 'SIGCONT'); // a node a test left paused must be able to stop
        await n.stop();
        n.cleanup();
      }));
      await Promise.allSettled([pacsServer.stop(), modalityServer.stop()]);
      await pg.stop();
    },
  };
}

/** Sends a signal without waiting for anything (SIGSTOP, SIGCONT); a process already gone is ignored. */
export function signal(node: SidecarProcess, name: NodeJS.Signals): void {
  try {
    process.kill(node.pid, name);
  } catch {
    // exited already
  }
}
