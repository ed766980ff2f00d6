/**
 * Helpers for the fault-injection tests (test/integration/faults.test.ts): Orthanc's Storage Commitment
 * SCU driven in two steps (send now, read the report later, so a process can be paused or killed in
 * between), the sidecar's transactions seen through its API and its SQLite store, its memory and its
 * open connections read from /proc, DICOM files built now and stored later, and raw TCP for hostile
 * input. Everything stays on 127.0.0.1.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { makeDicomFile, newUid, orthancInstanceId, SECONDARY_CAPTURE_SOP_CLASS, type CreatedInstance, type OrthancServer, type SopRef, type StorageCommitmentReport } from './orthanc.js';
import type { SidecarProcess } from './sidecar.js';

// ---------------------------------------------------------------------------
// Orthanc as Storage Commitment SCU, in two steps

/**
 * POST /modalities/{name}/storage-commitment: returns Orthanc's transaction UID as soon as the N-ACTION-RSP
 * arrived (Orthanc closes that association at once). The report is read later with awaitOrthancReport.
 */
export async function sendOrthancCommitment(scu: OrthancServer, modalityName: string, instances: readonly SopRef[], dicomTimeoutSec = 30): Promise<string> {
  const { ID } = await scu.rest<{ ID: string }>('POST', `/modalities/${encodeURIComponent(modalityName)}/storage-commitment`, {
    DicomInstances: instances.map((i) => ({ SOPClassUID: i.sopClassUid, SOPInstanceUID: i.sopInstanceUid })),
    Timeout: dicomTimeoutSec,
  });
  return ID;
}

/** Polls GET /storage-commitment/{id} until it is no longer Pending. */
export async function awaitOrthancReport(scu: OrthancServer, id: string, timeoutMs: number): Promise<StorageCommitmentReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await scu.rest<StorageCommitmentReport>('GET', `/storage-commitment/${id}`);
    if (report.Status !== 'Pending') return report;
    if (Date.now() > deadline) throw new Error(`storage commitment ${id} still Pending after ${timeoutMs} ms`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------
// The sidecar's view of a transaction

export interface ApiTransaction {
  transactionUid: string;
  callingAet: string;
  state: 'RECEIVED' | 'VERIFIED' | 'DELIVERY_RETRY' | 'REPORTED' | 'EXPIRED';
  instances: number;
  committed: number | null;
  failed: number | null;
  eventTypeId: number | null;
  deliveryAttempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  lastErrorCategory: 'network' | 'configuration' | 'peer-status' | null;
}

export interface ApiInstance {
  seq: number;
  sopClassUid: string;
  sopInstanceUid: string;
  outcome: 'committed' | 'failed' | 'pending';
  failureReason?: number;
}

export interface ApiTransactionDetail extends ApiTransaction {
  instanceCounts: { committed: number; failed: number; pending: number };
  /** The first page (100) of the instances only; apiInstances reads them all. */
  instanceOutcomes: ApiInstance[];
  instancesNextAfter: number | null;
  deliveryPending: boolean;
  deliveryAttemptLog: Array<{ at: string; via: string; ok: boolean; error: string | null; durationMs: number; category: 'network' | 'configuration' | 'peer-status' | null }>;
}

/**
 * A transaction as the API addresses it: calling AE title + Transaction UID (two AEs may reuse a UID). A
 * bare Transaction UID works while only one AE used it; the API answers 409 otherwise, and the helpers throw.
 */
export type TransactionRef = string | { readonly callingAet: string; readonly transactionUid: string };

export function transactionPath(ref: TransactionRef): string {
  return typeof ref === 'string'
    ? `/api/transactions/${encodeURIComponent(ref)}`
    : `/api/transactions/${encodeURIComponent(ref.callingAet)}/${encodeURIComponent(ref.transactionUid)}`;
}

const describeRef = (ref: TransactionRef): string => (typeof ref === 'string' ? ref : `${ref.transactionUid} from ${ref.callingAet}`);

/** GET /api/transactions/{callingAet}/{uid} (or by UID alone); undefined on 404. */
export async function apiTransaction(sidecar: SidecarProcess, ref: TransactionRef): Promise<ApiTransactionDetail | undefined> {
  const path = transactionPath(ref);
  const { status, body } = await sidecar.api<ApiTransactionDetail>('GET', path);
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET ${path} -> ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** Every instance of a transaction, page by page (GET .../instances, keyset on seq; the AE is needed here). */
export async function apiInstances(sidecar: SidecarProcess, ref: Exclude<TransactionRef, string>, outcome: 'all' | 'committed' | 'failed' | 'pending' | 'not-committed' = 'all'): Promise<ApiInstance[]> {
  type Page = { items: ApiInstance[]; nextAfter: number | null };
  const instances: ApiInstance[] = [];
  let after: number | null = null;
  do {
    const path: string = `${transactionPath(ref)}/instances?outcome=${outcome}&limit=1000${after === null ? '' : `&after=${after}`}`;
    const page: { status: number; body: Page } = await sidecar.api<Page>('GET', path);
    if (page.status !== 200) throw new Error(`GET ${path} -> ${page.status}: ${JSON.stringify(page.body)}`);
    instances.push(...page.body.items);
    after = page.body.nextAfter;
  } while (after !== null);
  return instances;
}

/** Polls the API until the transaction satisfies `predicate`; returns it. */
export async function waitForTransaction(
  sidecar: SidecarProcess,
  ref: TransactionRef,
  predicate: (t: ApiTransactionDetail) => boolean,
  timeoutMs: number,
): Promise<ApiTransactionDetail> {
  const deadline = Date.now() + timeoutMs;
  let last: ApiTransactionDetail | undefined;
  for (;;) {
    last = await apiTransaction(sidecar, ref);
    if (last && predicate(last)) return last;
    if (Date.now() > deadline) {
      const summary = last ? { state: last.state, deliveryAttempts: last.deliveryAttempts, lastError: last.lastError } : 'not found';
      throw new Error(`transaction ${describeRef(ref)} did not reach the expected condition within ${timeoutMs} ms (last seen: ${JSON.stringify(summary)})`);
    }
    await sleep(100);
  }
}

/** Every transaction the API lists with this Transaction UID (all pages). */
export async function apiTransactionsWithUid(sidecar: SidecarProcess, uid: string): Promise<ApiTransaction[]> {
  const found: ApiTransaction[] = [];
  for (let offset = 0; ; offset += 500) {
    const { status, body } = await sidecar.api<{ total: number; items: ApiTransaction[] }>('GET', `/api/transactions?limit=500&offset=${offset}`);
    if (status !== 200) throw new Error(`GET /api/transactions -> ${status}`);
    found.push(...body.items.filter((t) => t.transactionUid === uid));
    if (offset + body.items.length >= body.total || body.items.length === 0) return found;
  }
}

/** Rows of the sidecar's own SQLite store for this Transaction UID, read directly (read-only). */
export function storeRowsWithUid(sidecar: SidecarProcess, uid: string): Array<{ state: string; instance_count: number; delivery_attempts: number }> {
  const db = new Database(join(sidecar.dataDir, 'stgcmt.sqlite'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT state, instance_count, delivery_attempts FROM transactions WHERE transaction_uid = ?').all(uid) as Array<{
      state: string;
      instance_count: number;
      delivery_attempts: number;
    }>;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------
// /proc

/** Resident set size of a process, in KiB. */
export function rssKb(pid: number): number {
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // the fd closed in between
    }
  }
  return inodes;
}

/**
 * How many ESTABLISHED TCP connections process `pid` holds to remote port `remotePort` (from /proc/net/tcp
 * and tcp6): e.g. a report association the sidecar opened to a paused modality.
 */
export function establishedConnectionsTo(pid: number, remotePort: number): number {
  const inodes = socketInodes(pid);
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const remote = fields[2]!;
      const state = fields[3]!;
      const inode = fields[9]!;
      const port = parseInt(remote.slice(remote.lastIndexOf(':') + 1), 16);
      if (port === remotePort && state === '01' && inodes.has(inode)) count++;
    }
  }
  return count;
}

// ---------------------------------------------------------------------------
// Instances built now, stored later (late arrivals)

export interface PreparedInstance extends CreatedInstance {
  readonly file: Buffer;
}

/** Builds DICOM files (not yet stored anywhere) with known UIDs. */
export function prepareInstances(count: number, sopClassUid = SECONDARY_CAPTURE_SOP_CLASS): PreparedInstance[] {
  const studyInstanceUid = newUid();
  const seriesInstanceUid = newUid();
  const patientId = `LATE-${studyInstanceUid.slice(-8)}`;
  return Array.from({ length: count }, (_, i) => {
    const fields = { sopClassUid, sopInstanceUid: newUid(), studyInstanceUid, seriesInstanceUid, patientId, patientName: 'LATE^ARRIVAL', modality: 'OT', instanceNumber: i + 1 };
    return { sopClassUid, sopInstanceUid: fields.sopInstanceUid, orthancId: orthancInstanceId(fields), file: makeDicomFile(fields) };
  });
}

/** Stores prepared instances in Orthanc, one POST /instances each. */
export async function storePrepared(server: OrthancServer, instances: readonly PreparedInstance[]): Promise<void> {
  for (const instance of instances) {
    const answer = await server.rest<{ ID: string; Status: string }>('POST', '/instances', instance.file);
    if (answer.ID !== instance.orthancId) throw new Error(`stored ${answer.ID}, expected ${instance.orthancId}`);
  }
}

/** Where Orthanc keeps the DICOM file of an instance (StorageDirectory = <dir>/storage in the harness). */
export async function storedFilePath(server: OrthancServer, orthancId: string): Promise<string> {
  // 1.10.1 lists "uuid" among the attachment's routes but answers 404 to GET .../uuid; .../info has it.
  const info = await server.rest<{ Uuid: string }>('GET', `/instances/${orthancId}/attachments/dicom/info`);
  const uuid = info.Uuid;
  return join(server.dir, 'storage', uuid.slice(0, 2), uuid.slice(2, 4), uuid);
}

/** Hands out instances stored in a stack's PACS, each used by one test only. */
export class Pool {
  private next = 0;
  constructor(private readonly instances: CreatedInstance[]) {}
  take(count: number): CreatedInstance[] {
    if (this.next + count > this.instances.length) throw new Error('instance pool exhausted');
    const taken = this.instances.slice(this.next, this.next + count);
    this.next += count;
    return taken;
  }
}

export const refsOf = (instances: readonly CreatedInstance[]): SopRef[] => instances.map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopInstanceUid }));

// ---------------------------------------------------------------------------
// Raw TCP (hostile input)

export interface RawOutcome {
  /** The peer closed (FIN or RST) before we did. */
  readonly closedByPeer: boolean;
  /** Bytes the peer sent us (e.g. an A-ABORT). */
  readonly received: Buffer;
  /** Bytes we managed to hand to the kernel before the peer closed. */
  readonly written: number;
  readonly error: string | undefined;
}

/**
 * Connects to 127.0.0.1:port, writes `chunks` (a Buffer or a generator for streams), then either closes
 * (`then: 'close'`) or waits up to `waitMs` for the peer to close.
 */
export function rawExchange(
  port: number,
  chunks: Iterable<Buffer>,
  options: { then: 'close' | 'wait'; waitMs: number; socket?: Socket },
): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const socket = options.socket ?? netConnect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    let written = 0;
    let closedByPeer = false;
    let error: string | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      socket.destroy();
      resolve({ closedByPeer, received: Buffer.concat(received), written, error });
    };
    socket.on('data', (data: Buffer) => received.push(data));
    socket.on('error', (e: Error) => {
      error = e.message;
      closedByPeer = closedByPeer || /ECONNRESET|EPIPE/.test(e.message);
      finish();
    });
    socket.on('end', () => {
      closedByPeer = true;
    });
    socket.on('close', () => {
      if (!settled) closedByPeer = true;
      finish();
    });
    const pump = async (): Promise<void> => {
      for (const chunk of chunks) {
        if (settled || socket.destroyed || closedByPeer) return;
        const flushed = socket.write(chunk);
        written += chunk.length;
        if (!flushed) {
          await new Promise<void>((r) => {
            const done = (): void => {
              socket.off('drain', done);
              socket.off('close', done);
              r();
            };
            socket.once('drain', done);
            socket.once('close', done);
          });
        }
      }
      if (options.then === 'close') {
        socket.end();
        // Give the peer a moment to read what we sent before we go.
        timer = setTimeout(finish, 200);
      } else {
        timer = setTimeout(finish, options.waitMs);
      }
    };
    const start = (): void => {
      pump().catch((e: unknown) => {
        error = (e as Error).message;
        finish();
      });
    };
    if (options.socket) start();
    else socket.once('connect', start);
  });
}

export { filler, nActionCommand, pDataTf, pduHeader } from './pdus.js';
