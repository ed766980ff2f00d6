/**
 * A DICOM peer that speaks raw bytes over one TCP connection, from any loopback address: for hostile and
 * odd-but-legal input that no DICOM library would send, and to read exactly what the sidecar answers.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { associateRq, cEchoCommand, pDataTf, type RqSpec } from './pdus.js';

export interface ReceivedPdu {
  readonly type: number;
  readonly body: Buffer;
}

export class RawPeer {
  private buffer = Buffer.alloc(0);
  private readonly pdus: ReceivedPdu[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 6) {
        const length = this.buffer.readUInt32BE(2);
        if (this.buffer.length < 6 + length) break;
        this.pdus.push({ type: this.buffer.readUInt8(0), body: Buffer.from(this.buffer.subarray(6, 6 + length)) });
        this.buffer = this.buffer.subarray(6 + length);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static open(port: number, localAddress = '127.0.0.1'): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port, localAddress });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawPeer(socket));
      });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  send(bytes: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    return this.socket.write(bytes);
  }

  /** The next PDU received (in order), or undefined if the connection closed or the time ran out. */
  async nextPdu(timeoutMs: number): Promise<ReceivedPdu | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.pdus.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.pdus.shift();
  }

  /** The next N-EVENT-REPORT-RQ command (skipping other PDUs, such as its data set), or undefined. */
  async nextEventReport(timeoutMs: number): Promise<{ messageId: number; eventTypeId: number } | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pdu = await this.nextPdu(Math.max(0, deadline - Date.now()));
      if (!pdu) return undefined;
      if (pdu.type === 0x04 && commandUs(pdu.body, 0x0100) === 0x0100) return { messageId: commandUs(pdu.body, 0x0110)!, eventTypeId: commandUs(pdu.body, 0x1002)! };
    }
  }

  /** Resolves true if the peer closed within the time. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    await Promise.race([this.closedPromise, new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Sends an A-ASSOCIATE-RQ and returns the answer (AC 0x02, RJ 0x03, A-ABORT 0x07), if any. */
  async associate(spec: RqSpec, timeoutMs = 5000): Promise<ReceivedPdu | undefined> {
    this.send(associateRq(spec));
    return this.nextPdu(timeoutMs);
  }

  /** Sends a C-ECHO-RQ on a context and returns the response's Status, or undefined. */
  async echo(contextId: number, messageId = 1, timeoutMs = 5000): Promise<number | undefined> {
    this.send(pDataTf(contextId, 0x03, cEchoCommand(messageId)));
    const pdu = await this.nextPdu(timeoutMs);
    return pdu?.type === 0x04 ? commandStatus(pdu.body) : undefined;
  }
}

/** The presentation contexts answered in an A-ASSOCIATE-AC body: ID -> result. */
export function acceptedContexts(acBody: Buffer): Map<number, number> {
  const contexts = new Map<number, number>();
  let offset = 68;
  while (offset + 4 <= acBody.length) {
    const type = acBody.readUInt8(offset);
    const length = acBody.readUInt16BE(offset + 2);
    if (type === 0x21) contexts.set(acBody.readUInt8(offset + 4), acBody.readUInt8(offset + 6));
    offset += 4 + length;
  }
  return contexts;
}

/** A US element (0000,xxxx) of a command set carried in a P-DATA-TF body (one PDV, implicit VR LE). */
export function commandUs(pDataBody: Buffer, wanted: number): number | undefined {
  if (pDataBody.length < 6 || (pDataBody.readUInt8(5) & 0x01) === 0) return undefined;
  const value = pDataBody.subarray(6);
  let offset = 0;
  while (offset + 8 <= value.length) {
    const group = value.readUInt16LE(offset);
    const element = value.readUInt16LE(offset + 2);
    const length = value.readUInt32LE(offset + 4);
    if (group === 0x0000 && element === wanted) return value.readUInt16LE(offset + 8);
    offset += 8 + length;
  }
  return undefined;
}

/** The Status (0000,0900) of a command set carried in a P-DATA-TF body. */
export function commandStatus(pDataBody: Buffer): number | undefined {
  return commandUs(pDataBody, 0x0900);
}

/** Opens `count` raw connections from `localAddress` (or one address each when given a function). */
export async function openMany(port: number, count: number, localAddress: string | ((i: number) => string)): Promise<RawPeer[]> {
  const peers: RawPeer[] = [];
  for (let i = 0; i < count; i++) {
    try {
      peers.push(await RawPeer.open(port, typeof localAddress === 'function' ? localAddress(i) : localAddress));
    } catch {
      // refused at connect time: counts as closed
    }
  }
  return peers;
}
