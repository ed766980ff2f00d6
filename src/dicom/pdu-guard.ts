/**
 * Sits between the socket and dcmjs-dimse on an incoming association (PS3.8 9.3) and decides, byte by
 * byte, what dcmjs-dimse gets to see. dcmjs-dimse trusts every length field and keeps appending the
 * fragments of one DIMSE message until the last one arrives; the guard refuses
 * - a PDU of unknown type, one a requestor never sends, or one out of order (no A-ASSOCIATE-RQ first);
 * - an A-ASSOCIATE-RQ larger than any sensible one (its body is kept whole and handed to our own strict
 *   reader, see associate-rq.ts: dcmjs-dimse never sees it);
 * - a P-DATA-TF longer than the Maximum Length we advertise, or before the association was accepted;
 * - a PDV item that does not fit its PDU, names a presentation context that was not accepted, or changes
 *   presentation context in the middle of a message (PS3.8 E.2);
 * - a command set or data set larger than any valid Storage Commitment message can be.
 * P-DATA-TF PDUs are not passed on as they came: the guard assembles each message itself (copied out of
 * the socket's read buffers into 1 MiB blocks, so that those small buffers are not pinned for the life of
 * a large message, then joined once at the end) and hands dcmjs-dimse one PDU with the whole command
 * set, then, for a data set, one PDU with an empty last fragment, the data set itself travelling beside it
 * in the step for the handler. dcmjs-dimse re-copies every fragment several times on its way to a
 * data set (four to five copies of a 20 MB N-ACTION), which is what made four large N-ACTIONs at once
 * cost half a gigabyte. The guard also tells how many bytes of unfinished messages it holds (the memory
 * budget); each step that ends a message part says on which presentation context it came.
 */
import { AbortReasonFor } from './associate-rq.js';

const PDU_HEADER_LENGTH = 6;
/** PDV item header: 4-byte item length, presentation context ID, message control header. */
const PDV_HEADER_LENGTH = 6;

const A_ASSOCIATE_RQ = 0x01;
const A_ASSOCIATE_AC = 0x02;
const A_ASSOCIATE_RJ = 0x03;
const P_DATA_TF = 0x04;
const A_RELEASE_RP = 0x06;
const KNOWN_PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
/**
 * 128 presentation contexts with a few 64-character transfer syntaxes each stay well under 64 KiB; twice
 * that is room for any real requestor and little for an attacker.
 */
export const MAX_ASSOCIATE_RQ_LENGTH = 128 * 1024;
/** A-RELEASE-RQ/RP and A-ABORT have a fixed 4-byte body. */
const FIXED_BODY_LENGTH = 4;

/** A-ABORT reasons (PS3.8 9.3.8, source: service provider). */
const UNRECOGNIZED_PDU = 1;
const UNEXPECTED_PDU = 2;

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

/** What to do with a chunk, in stream order. */
export type GuardStep =
  /**
   * Pass these bytes on to dcmjs-dimse. With `dataset`, they end a message whose data set the guard
   * assembled: dcmjs-dimse calls the handler while reading them (synchronously, see the contract test),
   * and the handler reads the data set from here rather than from dcmjs-dimse.
   */
  | { readonly kind: 'forward'; readonly bytes: Buffer; readonly contextId?: number; readonly dataset?: Buffer }
  /** A complete A-ASSOCIATE-RQ body, for our own reader; dcmjs-dimse does not get it. */
  | { readonly kind: 'associate-rq'; readonly body: Buffer }
  /** Abort the association (A-ABORT, source service provider, this reason) and close. */
  | { readonly kind: 'refuse'; readonly why: string; readonly abortReason: number };

export class PduGuard {
  private readonly header = Buffer.alloc(PDU_HEADER_LENGTH);
  private headerFill = 0;
  private pduType = 0;
  private bodyRemaining = 0;
  private associationRequested = false;
  private acceptedContexts: ReadonlySet<number> | undefined;
  private rqBody: Buffer | undefined;
  private rqFill = 0;

  private readonly pdvHeader = Buffer.alloc(PDV_HEADER_LENGTH);
  private pdvIsCommand = false;
  private pdvIsLast = false;
  private commandParts: Buffer[] = [];
  private readonly datasetParts = new BlockBuffer();
  private pdvHeaderFill = 0;
  private pdvValueRemaining = 0;
  private commandBytes = 0;
  private datasetBytes = 0;
  /** Presentation context of the message being received, from its first PDV. */
  private messageContext: number | undefined;
  /** The context of the last command that announced a data set, while that data set is owed. */
  private datasetOwedOn: number | undefined;
  private refused = false;
  private held: Buffer | undefined;

  constructor(private readonly limits: PduLimits) {}

  /** Bytes of the message being received, held until its last fragment arrives. */
  get bytesHeld(): number {
    return this.commandBytes + this.datasetBytes;
  }

  /** True while a message has begun and not ended: the peer owes us more. */
  get inMessage(): boolean {
    return this.messageContext !== undefined || this.pdvValueRemaining > 0 || this.bodyRemaining > 0 || this.headerFill > 0;
  }

  /** Called once the A-ASSOCIATE-AC is sent: P-DATA may now flow, on these contexts only. */
  associationAccepted(acceptedContextIds: Iterable<number>): void {
    this.acceptedContexts = new Set(acceptedContextIds);
  }

  /** Bytes that arrived after the A-ASSOCIATE-RQ in the same chunk, kept until the RQ is answered. */
  get holdsBytes(): boolean {
    return this.held !== undefined;
  }

  /**
   * Feeds the next chunk (an empty one to go on with held bytes); returns what to do with it, in order.
   * Stops after an 'associate-rq' step: the rest waits until the caller answered the RQ and calls again.
   * After a refusal nothing else follows.
   */
  inspect(next: Buffer): GuardStep[] {
    const steps: GuardStep[] = [];
    if (this.refused) return steps;
    const chunk = this.held ? Buffer.concat([this.held, next]) : next;
    this.held = undefined;
    const refuse = (why: string, abortReason: number = AbortReasonFor.InvalidPduParameterValue): GuardStep[] => {
      this.refused = true;
      steps.push({ kind: 'refuse', why, abortReason });
      return steps;
    };
    let offset = 0;
    let forwardFrom = -1;
    const flushForward = (until: number): void => {
      if (forwardFrom >= 0 && until > forwardFrom) steps.push({ kind: 'forward', bytes: chunk.subarray(forwardFrom, until) });
      forwardFrom = -1;
    };
    while (offset < chunk.length) {
      if (this.bodyRemaining > 0) {
        if (this.pduType === A_ASSOCIATE_RQ) {
          offset = this.collectRq(chunk, offset);
          if (this.bodyRemaining === 0) {
            steps.push({ kind: 'associate-rq', body: this.takeRq() });
            if (offset < chunk.length) this.held = Buffer.from(chunk.subarray(offset));
            return steps;
          }
          continue;
        }
        if (this.pduType === P_DATA_TF) {
          const result = this.readPdvs(chunk, offset, steps);
          if (typeof result === 'string') return refuse(result);
          offset = result;
          continue;
        }
        if (forwardFrom < 0) forwardFrom = offset;
        offset = this.skipBody(chunk, offset);
        continue;
      }
      // Header bytes are never forwarded in place (they may straddle chunks): a copy follows once whole.
      flushForward(offset);
      const take = Math.min(PDU_HEADER_LENGTH - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill < PDU_HEADER_LENGTH) break;
      this.headerFill = 0;
      this.pduType = this.header.readUInt8(0);
      const length = this.header.readUInt32BE(2);
      const problem = this.checkPdu(this.pduType, length);
      if (problem) return refuse(problem.why, problem.reason);
      this.bodyRemaining = length;
      if (this.pduType === A_ASSOCIATE_RQ) {
        this.rqBody = Buffer.alloc(length);
        this.rqFill = 0;
        if (length === 0) {
          steps.push({ kind: 'associate-rq', body: this.takeRq() });
          if (offset < chunk.length) this.held = Buffer.from(chunk.subarray(offset));
          return steps;
        }
      } else if (this.pduType !== P_DATA_TF) {
        steps.push({ kind: 'forward', bytes: Buffer.from(this.header) });
      }
    }
    flushForward(chunk.length);
    return steps;
  }

  private collectRq(chunk: Buffer, offset: number): number {
    const take = Math.min(this.bodyRemaining, chunk.length - offset);
    chunk.copy(this.rqBody!, this.rqFill, offset, offset + take);
    this.rqFill += take;
    this.bodyRemaining -= take;
    return offset + take;
  }

  private takeRq(): Buffer {
    const body = this.rqBody!;
    this.rqBody = undefined;
    return body;
  }

  private skipBody(chunk: Buffer, offset: number): number {
    const take = Math.min(this.bodyRemaining, chunk.length - offset);
    this.bodyRemaining -= take;
    return offset + take;
  }

  /**
   * Walks the PDV items of a P-DATA-TF body, collecting each message's fragments, and emits the assembled
   * command set (and the empty last data set fragment) for dcmjs-dimse.
   */
  private readPdvs(chunk: Buffer, offset: number, steps: GuardStep[]): number | string {
    if (this.pdvValueRemaining > 0) {
      const take = Math.min(this.pdvValueRemaining, this.bodyRemaining, chunk.length - offset);
      if (this.pdvIsCommand) this.commandParts.push(Buffer.from(chunk.subarray(offset, offset + take)));
      else this.datasetParts.append(chunk, offset, offset + take);
      this.pdvValueRemaining -= take;
      this.bodyRemaining -= take;
      if (this.pdvValueRemaining === 0) this.endOfPdv(steps);
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
    const contextId = this.pdvHeader.readUInt8(4);
    if (!this.acceptedContexts?.has(contextId)) return `PDV on presentation context ${contextId}, which was not accepted`;
    if (this.messageContext !== undefined && this.messageContext !== contextId) {
      return `PDV on presentation context ${contextId} in the middle of a message on context ${this.messageContext}`;
    }
    const control = this.pdvHeader.readUInt8(5);
    this.pdvIsCommand = (control & 0x01) !== 0;
    this.pdvIsLast = (control & 0x02) !== 0;
    this.messageContext = contextId;
    if (this.pdvIsCommand) {
      if (this.datasetBytes > 0) return 'command fragment in the middle of a data set';
      this.commandBytes += valueLength;
      if (this.commandBytes > this.limits.maxCommandBytes) return `command set over ${this.limits.maxCommandBytes} bytes`;
    } else {
      if (this.datasetOwedOn !== contextId) return `data set on presentation context ${contextId} without a command announcing it there`;
      this.datasetBytes += valueLength;
      if (this.datasetBytes > this.limits.maxDatasetBytes) return `data set over ${this.limits.maxDatasetBytes} bytes (more than STGCMT_MAX_INSTANCES can need)`;
    }
    this.pdvValueRemaining = valueLength;
    if (valueLength === 0) this.endOfPdv(steps);
    return offset;
  }

  /** A PDV's value is complete: if it was a message part's last fragment, hand the part on. */
  private endOfPdv(steps: GuardStep[]): void {
    if (!this.pdvIsLast) return;
    const contextId = this.messageContext!;
    if (this.pdvIsCommand) {
      const command = Buffer.concat(this.commandParts);
      this.commandParts = [];
      this.commandBytes = 0;
      // The data set a command announces (0000,0800) must follow on the same context; none may follow
      // a command that announced none (dcmjs-dimse would trip over it).
      this.datasetOwedOn = announcesDataset(command) ? contextId : undefined;
      this.messageContext = undefined;
      steps.push({ kind: 'forward', bytes: pDataPdu(contextId, 0x03, command), contextId });
    } else {
      const dataset = this.datasetParts.take();
      this.datasetBytes = 0;
      this.messageContext = undefined;
      this.datasetOwedOn = undefined;
      steps.push({ kind: 'forward', bytes: pDataPdu(contextId, 0x02, Buffer.alloc(0)), contextId, dataset });
    }
  }

  private checkPdu(type: number, length: number): { why: string; reason: number } | undefined {
    if (!KNOWN_PDU_TYPES.has(type)) return { why: `unknown PDU type 0x${type.toString(16).padStart(2, '0')}`, reason: UNRECOGNIZED_PDU };
    if (type === A_ASSOCIATE_AC || type === A_ASSOCIATE_RJ || type === A_RELEASE_RP) return { why: `PDU type ${type} is never sent to an acceptor`, reason: UNEXPECTED_PDU };
    if (type === A_ASSOCIATE_RQ) {
      if (this.associationRequested) return { why: 'second A-ASSOCIATE-RQ on one connection', reason: UNEXPECTED_PDU };
      this.associationRequested = true;
      return length > MAX_ASSOCIATE_RQ_LENGTH ? { why: `A-ASSOCIATE-RQ of ${length} bytes (at most ${MAX_ASSOCIATE_RQ_LENGTH})`, reason: AbortReasonFor.InvalidPduParameterValue } : undefined;
    }
    if (!this.associationRequested) return { why: `PDU type ${type} before any A-ASSOCIATE-RQ`, reason: UNEXPECTED_PDU };
    if (type === P_DATA_TF) {
      if (!this.acceptedContexts) return { why: 'P-DATA-TF before the association was accepted', reason: UNEXPECTED_PDU };
      if (length > this.limits.maxPduLength) return { why: `P-DATA-TF of ${length} bytes exceeds our maximum of ${this.limits.maxPduLength}`, reason: AbortReasonFor.InvalidPduParameterValue };
      if (length < PDV_HEADER_LENGTH) return { why: `P-DATA-TF of ${length} bytes holds no PDV item`, reason: AbortReasonFor.InvalidPduParameterValue };
      return undefined;
    }
    return length !== FIXED_BODY_LENGTH ? { why: `PDU type ${type} with length ${length} (expected 4)`, reason: AbortReasonFor.InvalidPduParameterValue } : undefined;
  }
}

/** A P-DATA-TF PDU with one PDV (PS3.8 9.3.5, E.2): what dcmjs-dimse is handed for each message part. */
function pDataPdu(contextId: number, control: number, value: Buffer): Buffer {
  const pdu = Buffer.allocUnsafe(PDU_HEADER_LENGTH + PDV_HEADER_LENGTH + value.length);
  pdu.writeUInt8(P_DATA_TF, 0);
  pdu.writeUInt8(0, 1);
  pdu.writeUInt32BE(PDV_HEADER_LENGTH + value.length, 2);
  pdu.writeUInt32BE(value.length + 2, 6);
  pdu.writeUInt8(contextId, 10);
  pdu.writeUInt8(control, 11);
  value.copy(pdu, 12);
  return pdu;
}

/**
 * Whether a command set (always implicit VR little endian, PS3.7 6.3.1) announces a data set: Command Data
 * Set Type (0000,0800) other than 0101H. An unreadable command counts as announcing one; dcmjs-dimse then
 * refuses the command itself.
 */
export function announcesDataset(command: Buffer): boolean {
  for (let offset = 0; offset + 8 <= command.length; ) {
    const group = command.readUInt16LE(offset);
    const element = command.readUInt16LE(offset + 2);
    const length = command.readUInt32LE(offset + 4);
    if (group === 0x0000 && element === 0x0800) return !(length === 2 && offset + 10 <= command.length && command.readUInt16LE(offset + 8) === 0x0101);
    if (group !== 0x0000 || length > command.length) return true;
    offset += 8 + length;
  }
  return true;
}

/**
 * Bytes appended in 1 MiB blocks and joined once. Large blocks are mapped and unmapped by the allocator as
 * a whole, so a finished message gives its memory back, where 64 KiB socket buffers held for seconds
 * would leave the heap fragmented.
 */
class BlockBuffer {
  private static readonly BLOCK = 1024 * 1024;
  private blocks: Buffer[] = [];
  private fill = 0;

  append(source: Buffer, start: number, end: number): void {
    while (start < end) {
      let block = this.blocks.at(-1);
      if (!block || this.fill === block.length) {
        block = Buffer.allocUnsafeSlow(BlockBuffer.BLOCK);
        this.blocks.push(block);
        this.fill = 0;
      }
      const copied = source.copy(block, this.fill, start, Math.min(end, start + block.length - this.fill));
      this.fill += copied;
      start += copied;
    }
  }

  take(): Buffer {
    const blocks = this.blocks;
    const last = blocks.length > 0 ? blocks.length - 1 : -1;
    const parts = blocks.map((b, i) => (i === last ? b.subarray(0, this.fill) : b));
    this.blocks = [];
    this.fill = 0;
    return parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
  }
}
