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
}

export interface ApiTransactionDetail extends ApiTransaction {
  instanceOutcomes: Array<{ sopClassUid: string; sopInstanceUid: string; outcome: 'committed' | 'failed' | 'pending'; failureReason?: number }>;
  deliveryAttemptLog: Array<{ at: string; via: string; ok: boolean; error: string | null; durationMs: number }>;
}

/** GET /api/transactions/{uid}; undefined on 404. */
export async function apiTransaction(sidecar: SidecarProcess, uid: string): Promise<ApiTransactionDetail | undefined> {
  const { status, body } = await sidecar.api<ApiTransactionDetail>('GET', `/api/transactions/${encodeURIComponent(uid)}`);
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET /api/transactions/${uid} -> ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** Polls the API until the transaction satisfies `predicate`; returns it. */
export async function waitForTransaction(
  sidecar: SidecarProcess,
  uid: string,
  predicate: (t: ApiTransactionDetail) => boolean,
  timeoutMs: number,
): Promise<ApiTransactionDetail> {
  const deadline = Date.now() + timeoutMs;
  let last: ApiTransactionDetail | undefined;
  for (;;) {
    last = await apiTransaction(sidecar, uid);
    if (last && predicate(last)) return last;
    if (Date.now() > deadline) {
      const summary = last ? { state: last.state, deliveryAttempts: last.deliveryAttempts, lastError: last.lastError } : 'not found';
      throw new Error(`transaction ${uid} did not reach the expected condition within ${timeoutMs} ms (last seen: ${JSON.stringify(summary)})`);
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

/** A PDU header (PS3.8 9.3.1): type, reserved byte, 32-bit big-endian length. */
export function pduHeader(type: number, length: number): Buffer {
  const header = Buffer.alloc(6);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(length, 2);
  return header;
}

/** `total` bytes of filler in 1 MiB chunks. */
export function* filler(total: number, chunkSize = 1024 * 1024): Generator<Buffer> {
  const chunk = Buffer.alloc(chunkSize, 0x5a);
  for (let sent = 0; sent < total; sent += chunkSize) yield sent + chunkSize <= total ? chunk : chunk.subarray(0, total - sent);
}

/** A P-DATA-TF PDU carrying one PDV (PS3.8 9.3.5, E.2): flags bit 0 = command, bit 1 = last fragment. */
export function pDataTf(presentationContextId: number, flags: number, value: Buffer): Buffer {
  const pdv = Buffer.alloc(6);
  pdv.writeUInt32BE(value.length + 2, 0);
  pdv.writeUInt8(presentationContextId, 4);
  pdv.writeUInt8(flags, 5);
  return Buffer.concat([pduHeader(0x04, value.length + 6), pdv, value]);
}

function implicitElement(element: number, value: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(0x0000, 0);
  header.writeUInt16LE(element, 2);
  header.writeUInt32LE(value.length, 4);
  return Buffer.concat([header, value]);
}

/** A Storage Commitment N-ACTION-RQ command set (implicit VR little endian, PS3.7 10.1.4) announcing a data set. */
export function nActionCommand(messageId: number): Buffer {
  const uid = (text: string): Buffer => Buffer.from(text.length % 2 === 0 ? text : `${text}\0`, 'latin1');
  const us = (value: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value, 0);
    return b;
  };
  const body = Buffer.concat([
    implicitElement(0x0003, uid('1.2.840.10008.1.20.1')), // Requested SOP Class UID
    implicitElement(0x0100, us(0x0130)), // Command Field: N-ACTION-RQ
    implicitElement(0x0110, us(messageId)), // Message ID
    implicitElement(0x0800, us(0x0000)), // Command Data Set Type: a data set follows
    implicitElement(0x1001, uid('1.2.840.10008.1.20.1.1')), // Requested SOP Instance UID
    implicitElement(0x1008, us(1)), // Action Type ID
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length, 0);
  return Buffer.concat([implicitElement(0x0000, groupLength), body]);
}
