/**
 * Watches the raw byte stream of an incoming association (PS3.8 9.3) and says when to abort it, before
 * dcmjs-dimse buffers anything: dcmjs-dimse trusts every length field, and keeps appending the fragments
 * of one DIMSE message until the last one arrives. The guard refuses
 * - a PDU of unknown type, one a requestor never sends, or one out of order (no A-ASSOCIATE-RQ first);
 * - a P-DATA-TF longer than the Maximum Length we advertise;
 * - a PDV item that does not fit its PDU;
 * - a command set or data set larger than any valid Storage Commitment message can be.
 */

const PDU_HEADER_LENGTH = 6;
/** PDV item header: 4-byte item length, presentation context ID, message control header. */
const PDV_HEADER_LENGTH = 6;

const A_ASSOCIATE_RQ = 0x01;
const A_ASSOCIATE_AC = 0x02;
const A_ASSOCIATE_RJ = 0x03;
const P_DATA_TF = 0x04;
const A_RELEASE_RP = 0x06;
const KNOWN_PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
/** Association negotiation PDUs carry no DIMSE data; generous headroom for many presentation contexts. */
const MAX_ASSOCIATION_PDU_LENGTH = 1024 * 1024;
/** A-RELEASE-RQ/RP and A-ABORT have a fixed 4-byte body. */
const FIXED_BODY_LENGTH = 4;

export interface PduLimits {
  /** The Maximum Length we advertise for P-DATA-TF PDUs we receive. */
  readonly maxPduLength: number;
  /** Largest command set (all its fragments). */
  readonly maxCommandBytes: number;
  /** Largest data set (all its fragments). */
  readonly maxDatasetBytes: number;
}

/** A Referenced SOP item with two 64-character UIDs is 152 bytes; round up for headroom. */
const BYTES_PER_REFERENCE = 200;

export function limitsFor(maxPduLength: number, maxInstances: number): PduLimits {
  return { maxPduLength, maxCommandBytes: 64 * 1024, maxDatasetBytes: maxInstances * BYTES_PER_REFERENCE + 1024 * 1024 };
}

export class PduGuard {
  private readonly header = Buffer.alloc(PDU_HEADER_LENGTH);
  private headerFill = 0;
  private pduType = 0;
  private bodyRemaining = 0;
  private associationRequested = false;

  private readonly pdvHeader = Buffer.alloc(PDV_HEADER_LENGTH);
  private pdvHeaderFill = 0;
  private pdvValueRemaining = 0;
  private commandBytes = 0;
  private datasetBytes = 0;

  constructor(private readonly limits: PduLimits) {}

  /** Feeds the next chunk; returns why the stream must be refused, or undefined while it is acceptable. */
  inspect(chunk: Buffer): string | undefined {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.bodyRemaining > 0) {
        const result = this.pduType === P_DATA_TF ? this.readPdvs(chunk, offset) : this.skipBody(chunk, offset);
        if (typeof result === 'string') return result;
        offset = result;
        continue;
      }
      const take = Math.min(PDU_HEADER_LENGTH - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill < PDU_HEADER_LENGTH) break;
      this.headerFill = 0;
      this.pduType = this.header.readUInt8(0);
      const length = this.header.readUInt32BE(2);
      const problem = this.checkPdu(this.pduType, length);
      if (problem) return problem;
      this.bodyRemaining = length;
    }
    return undefined;
  }

  private skipBody(chunk: Buffer, offset: number): number {
    const take = Math.min(this.bodyRemaining, chunk.length - offset);
    this.bodyRemaining -= take;
    return offset + take;
  }

  /** Walks the PDV items of a P-DATA-TF body, adding up each message's fragments. */
  private readPdvs(chunk: Buffer, offset: number): number | string {
    if (this.pdvValueRemaining > 0) {
      const take = Math.min(this.pdvValueRemaining, this.bodyRemaining, chunk.length - offset);
      this.pdvValueRemaining -= take;
      this.bodyRemaining -= take;
      return offset + take;
    }
    const take = Math.min(PDV_HEADER_LENGTH - this.pdvHeaderFill, this.bodyRemaining, chunk.length - offset);
    chunk.copy(this.pdvHeader, this.pdvHeaderFill, offset, offset + take);
    this.pdvHeaderFill += take;
    this.bodyRemaining -= take;
    offset += take;
    if (this.pdvHeaderFill < PDV_HEADER_LENGTH) {
      return this.bodyRemaining === 0 ? 'PDV item header crosses the end of its PDU' : offset;
    }
    this.pdvHeaderFill = 0;
    const itemLength = this.pdvHeader.readUInt32BE(0);
    const valueLength = itemLength - 2;
    if (itemLength < 2 || valueLength > this.bodyRemaining) return `PDV item of ${itemLength} bytes does not fit its PDU`;
    const control = this.pdvHeader.readUInt8(5);
    const isCommand = (control & 0x01) !== 0;
    const isLast = (control & 0x02) !== 0;
    if (isCommand) {
      this.commandBytes += valueLength;
      if (this.commandBytes > this.limits.maxCommandBytes) return `command set over ${this.limits.maxCommandBytes} bytes`;
      if (isLast) this.commandBytes = 0;
    } else {
      this.datasetBytes += valueLength;
      if (this.datasetBytes > this.limits.maxDatasetBytes) return `data set over ${this.limits.maxDatasetBytes} bytes (more than STGCMT_MAX_INSTANCES can need)`;
      if (isLast) this.datasetBytes = 0;
    }
    this.pdvValueRemaining = valueLength;
    return offset;
  }

  private checkPdu(type: number, length: number): string | undefined {
    if (!KNOWN_PDU_TYPES.has(type)) return `unknown PDU type 0x${type.toString(16).padStart(2, '0')}`;
    if (type === A_ASSOCIATE_AC || type === A_ASSOCIATE_RJ || type === A_RELEASE_RP) return `PDU type ${type} is never sent to an acceptor`;
    if (type === A_ASSOCIATE_RQ) {
      if (this.associationRequested) return 'second A-ASSOCIATE-RQ on one connection';
      this.associationRequested = true;
    } else if (!this.associationRequested) {
      return `PDU type ${type} before any A-ASSOCIATE-RQ`;
    }
    if (type === P_DATA_TF) {
      if (length > this.limits.maxPduLength) return `P-DATA-TF of ${length} bytes exceeds our maximum of ${this.limits.maxPduLength}`;
      if (length < PDV_HEADER_LENGTH) return `P-DATA-TF of ${length} bytes holds no PDV item`;
      return undefined;
    }
    if (type >= 0x05) return length !== FIXED_BODY_LENGTH ? `PDU type ${type} with length ${length} (expected 4)` : undefined;
    return length > MAX_ASSOCIATION_PDU_LENGTH ? `association PDU of ${length} bytes is implausibly large` : undefined;
  }
}
