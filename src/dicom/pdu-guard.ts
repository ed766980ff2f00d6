/**
 * Watches the raw byte stream of an association for PDU headers (PS3.8 9.3) and refuses a PDU before it
 * is buffered when its type is unknown or its length exceeds what we advertised. dcmjs-dimse trusts the
 * 32-bit length field and buffers whatever a peer announces.
 */

const PDU_HEADER_LENGTH = 6;

/** PDU types of PS3.8 9.3: A-ASSOCIATE-RQ/AC/RJ, P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT. */
const KNOWN_PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
const P_DATA_TF = 0x04;
/** Association negotiation PDUs carry no DIMSE data; generous headroom for many presentation contexts. */
const MAX_ASSOCIATION_PDU_LENGTH = 1024 * 1024;
/** A-RELEASE-RQ/RP and A-ABORT have a fixed 4-byte body. */
const FIXED_BODY_LENGTH = 4;

export class PduGuard {
  private readonly header = Buffer.alloc(PDU_HEADER_LENGTH);
  private headerFill = 0;
  private bodyRemaining = 0;

  /** @param maxPduLength the Maximum Length we advertise for P-DATA-TF PDUs we receive */
  constructor(private readonly maxPduLength: number) {}

  /** Feeds the next chunk; returns why the stream must be refused, or undefined while it is well-formed. */
  inspect(chunk: Buffer): string | undefined {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.bodyRemaining > 0) {
        const take = Math.min(this.bodyRemaining, chunk.length - offset);
        this.bodyRemaining -= take;
        offset += take;
        continue;
      }
      const take = Math.min(PDU_HEADER_LENGTH - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill < PDU_HEADER_LENGTH) break;
      this.headerFill = 0;
      const problem = this.check(this.header.readUInt8(0), this.header.readUInt32BE(2));
      if (problem) return problem;
      this.bodyRemaining = this.header.readUInt32BE(2);
    }
    return undefined;
  }

  private check(type: number, length: number): string | undefined {
    if (!KNOWN_PDU_TYPES.has(type)) return `unknown PDU type 0x${type.toString(16).padStart(2, '0')}`;
    if (type === P_DATA_TF) {
      return length > this.maxPduLength ? `P-DATA-TF of ${length} bytes exceeds our maximum of ${this.maxPduLength}` : undefined;
    }
    if (type >= 0x05) {
      return length !== FIXED_BODY_LENGTH ? `PDU type ${type} with length ${length} (expected 4)` : undefined;
    }
    return length > MAX_ASSOCIATION_PDU_LENGTH ? `association PDU of ${length} bytes is implausibly large` : undefined;
  }
}
