/**
 * The whole test bed on loopback: a PACS Orthanc behind the sidecar, a second Orthanc acting as the
 * modality (a real Storage Commitment SCU), and the sidecar process between them. A peers file adds the
 * test suite's own DICOM peers (dcmjs-based SCU, strict acceptor).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReportReceiver } from '../../src/cli/report-receiver.js';
import { log as dimseLog } from '../../src/dicom/dimse.js';
import { freePort, startOrthanc, type OrthancServer } from './orthanc.js';
import { startOrthancProxy, type OrthancProxy } from './orthanc-proxy.js';
import { startSidecar, type SidecarProcess } from './sidecar.js';

// dcmjs-dimse traces every PDU of the test's own SCUs to the console; DIMSE_LOG=info brings them back.
dimseLog.setLevel((process.env['DIMSE_LOG'] as 'info' | undefined) ?? 'silent');

export interface TestPeer {
  readonly aet: string;
  readonly port: number;
  /** false: the sidecar must never dial it (peer file `"callback": false`). */
  readonly callback?: boolean;
}

export interface Stack {
  readonly pacs: OrthancServer;
  readonly modality: OrthancServer;
  readonly sidecar: SidecarProcess;
  /** With `orthancProxy`: the proxy between the sidecar and the PACS, to inject wrong answers. */
  readonly proxy: OrthancProxy | undefined;
  /** Name of the sidecar in the modality Orthanc's DicomModalities. */
  readonly sidecarModalityName: string;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Extra peers for the sidecar's peers file (the test SCUs / acceptors), all on 127.0.0.1. */
  readonly peers?: readonly TestPeer[];
  readonly sidecarEnv?: Record<string, string>;
  readonly pacsConfig?: Record<string, unknown>;
  /** Which sidecar entry to run (see SidecarOptions.entry). */
  readonly sidecarEntry?: 'src' | 'dist';
  /** Put an HTTP proxy (test/harness/orthanc-proxy.ts) between the sidecar and the PACS's REST API. */
  readonly orthancProxy?: boolean;
  /** The Orthanc executable for both servers (see OrthancOptions.binary). */
  readonly orthancBinary?: string;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const [pacsDicom, modalityDicom, sidecarDicom] = [await freePort(), await freePort(), await freePort()];
  const [pacs, modality] = await Promise.all([
    startOrthanc({
      name: 'pacs',
      aet: 'PACS',
      ...(options.orthancBinary ? { binary: options.orthancBinary } : {}),
      dicomPort: pacsDicom,
      // The sidecar learns its peers from here: the administrator declares the modality once, in Orthanc.
      dicomModalities: { modality: { aet: 'MODALITY', host: '127.0.0.1', port: modalityDicom } },
      ...(options.pacsConfig ? { extraConfig: options.pacsConfig } : {}),
    }),
    startOrthanc({
      name: 'modality',
      aet: 'MODALITY',
      ...(options.orthancBinary ? { binary: options.orthancBinary } : {}),
      dicomPort: modalityDicom,
      // Orthanc accepts the report only from a calling AE title it knows.
      dicomModalities: { stgcmt: { aet: 'STGCMT', host: '127.0.0.1', port: sidecarDicom }, pacs: { aet: 'PACS', host: '127.0.0.1', port: pacsDicom } },
    }),
  ]);
  const peersDir = mkdtempSync(join('/dev/shm', 'stgcmt-peers-'));
  const peersFile = join(peersDir, 'peers.json');
  writeFileSync(peersFile, JSON.stringify({ peers: (options.peers ?? []).map((p) => ({ aet: p.aet, host: '127.0.0.1', port: p.port, ...(p.callback === undefined ? {} : { callback: p.callback }) })) }));
  const proxy = options.orthancProxy ? await startOrthancProxy(pacs.url) : undefined;
  let sidecar: SidecarProcess;
  try {
    sidecar = await startSidecar({ orthancUrl: proxy?.url ?? pacs.url, dicomPort: sidecarDicom, entry: options.sidecarEntry, env: { STGCMT_PEERS_FILE: peersFile, ...options.sidecarEnv } });
  } catch (error) {
    await Promise.all([pacs.stop(), modality.stop(), proxy?.close()]);
    throw error;
  }
  return {
    pacs,
    modality,
    sidecar,
    proxy,
    sidecarModalityName: 'stgcmt',
    async stop() {
      try {
        await sidecar.stop();
        sidecar.cleanup();
      } finally {
        // Even after a failed sidecar stop: Orthanc servers left running would hold the test file open.
        await Promise.all([pacs.stop(), modality.stop(), proxy?.close()]);
      }
    },
  };
}

/** A started ReportReceiver for `aeTitle` on a free loopback port (its `port` is what the peers file needs). */
export async function startReportReceiver(aeTitle: string, strictRoles = false): Promise<ReportReceiver> {
  const receiver = new ReportReceiver({ aeTitle, port: await freePort(), strictRoles });
  await receiver.start();
  return receiver;
}
