/**
 * Linear-time encoder for the N-EVENT-REPORT dataset.
 *
 * Why not dcmjs: its writer rescans its output on every primitive write, so a report with 100,000
 * Referenced SOP items takes ~45 s and blocks the event loop. The report only ever holds four element
 * kinds (AE, UI, US, SQ), so we size the whole dataset first and write it into one buffer.
 */
import type { EventReport } from '../commitment/report.js';

export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

type Vr = 'AE' | 'UI' | 'US';

const TAG = {
  RetrieveAETitle: 0x00080054,
  TransactionUID: 0x00081195,
  FailedSOPSequence: 0x00081198,
  ReferencedSOPSequence: 0x00081199,
  ReferencedSOPClassUID: 0x00081150,
  ReferencedSOPInstanceUID: 0x00081155,
  FailureReason: 0x00081197,
} as const;

const ITEM_TAG = 0xfffee000;

/** Even-length value bytes: UI pads with NUL, AE with a space (PS3.5 6.2). */
function valueLength(vr: Vr, value: string | number): number {
  if (vr === 'US') return 2;
  const length = Buffer.byteLength(value as string, 'ascii');
  return length + (length % 2);
}

class Writer {
  private offset = 0;
  constructor(
    readonly buffer: Buffer,
    private readonly explicit: boolean,
  ) {}

  private tag(tag: number): void {
    this.offset = this.buffer.writeUInt16LE(tag >>> 16, this.offset);
    this.offset = this.buffer.writeUInt16LE(tag & 0xffff, this.offset);
  }

  element(tag: number, vr: Vr, value: string | number): void {
    const length = valueLength(vr, value);
    this.tag(tag);
    if (this.explicit) {
      this.offset += this.buffer.write(vr, this.offset, 'ascii');
      this.offset = this.buffer.writeUInt16LE(length, this.offset);
    } else {
      this.offset = this.buffer.writeUInt32LE(length, this.offset);
    }
    if (vr === 'US') {
      this.offset = this.buffer.writeUInt16LE(value as number, this.offset);
      return;
    }
    const written = this.buffer.write(value as string, this.offset, 'ascii');
    this.offset += written;
    if (written < length) this.buffer[this.offset++] = vr === 'UI' ? 0x00 : 0x20;
  }

  sequenceHeader(tag: number, length: number): void {
    this.tag(tag);
    if (this.explicit) {
      this.offset += this.buffer.write('SQ', this.offset, 'ascii');
      this.offset = this.buffer.writeUInt16LE(0, this.offset);
    }
    this.offset = this.buffer.writeUInt32LE(length, this.offset);
  }

  itemHeader(length: number): void {
    this.tag(ITEM_TAG);
    this.offset = this.buffer.writeUInt32LE(length, this.offset);
  }

  get position(): number {
    return this.offset;
  }
}

/** Encoded size of one element: header (8 bytes either way for these VRs) plus value. */
function elementSize(vr: Vr, value: string | number): number {
  return 8 + valueLength(vr, value);
}

function sequenceHeaderSize(explicit: boolean): number {
  return explicit ? 12 : 8;
}

type Reference = { readonly sopClassUid: string; readonly sopInstanceUid: string; readonly failureReason?: number };

/** Encoded size of one item's content: two UIDs, and the Failure Reason for a failed reference. */
function itemContentSize(reference: Reference): number {
  const size = elementSize('UI', reference.sopClassUid) + elementSize('UI', reference.sopInstanceUid);
  return reference.failureReason === undefined ? size : size + elementSize('US', reference.failureReason);
}

/** Size of a sequence's items, headers included (items are sized twice rather than stored: less memory). */
function itemsSize(references: readonly Reference[]): number {
  let size = 0;
  for (const reference of references) size += 8 + itemContentSize(reference);
  return size;
}

/** What both Storage Commitment datasets hold: the N-ACTION's Action Information and the report's Event Information. */
export type CommitmentDatasetContent = Pick<EventReport, 'transactionUid' | 'retrieveAeTitle' | 'referenced' | 'failed'>;

/** The report's Event Information (PS3.4 J.3.3). */
export function encodeEventReport(report: EventReport, transferSyntaxUid: string): Buffer {
  return encodeCommitmentDataset(report, transferSyntaxUid);
}

/**
 * Encodes in Implicit or Explicit VR Little Endian, with defined lengths; elements in ascending tag order
 * as PS3.5 7.1 requires. Empty sequences and an absent Retrieve AE Title are left out.
 */
export function encodeCommitmentDataset(report: CommitmentDatasetContent, transferSyntaxUid: string): Buffer {
  const explicit = transferSyntaxUid !== IMPLICIT_VR_LITTLE_ENDIAN;
  if (explicit && transferSyntaxUid !== EXPLICIT_VR_LITTLE_ENDIAN) {
    throw new Error(`unsupported transfer syntax for the report: ${transferSyntaxUid}`);
  }
  const sequences: Array<[number, readonly Reference[], number]> = [];
  if (report.failed.length > 0) sequences.push([TAG.FailedSOPSequence, report.failed, itemsSize(report.failed)]);
  if (report.referenced.length > 0) sequences.push([TAG.ReferencedSOPSequence, report.referenced, itemsSize(report.referenced)]);

  let total = elementSize('UI', report.transactionUid);
  if (report.retrieveAeTitle) total += elementSize('AE', report.retrieveAeTitle);
  for (const [, , size] of sequences) total += sequenceHeaderSize(explicit) + size;

  const writer = new Writer(Buffer.allocUnsafe(total), explicit);
  if (report.retrieveAeTitle) writer.element(TAG.RetrieveAETitle, 'AE', report.retrieveAeTitle);
  writer.element(TAG.TransactionUID, 'UI', report.transactionUid);
  for (const [tag, references, size] of sequences) {
    writer.sequenceHeader(tag, size);
    for (const reference of references) {
      writer.itemHeader(itemContentSize(reference));
      writer.element(TAG.ReferencedSOPClassUID, 'UI', reference.sopClassUid);
      writer.element(TAG.ReferencedSOPInstanceUID, 'UI', reference.sopInstanceUid);
      if (reference.failureReason !== undefined) writer.element(TAG.FailureReason, 'US', reference.failureReason);
    }
  }
  if (writer.position !== total) throw new Error(`report encoder wrote ${writer.position} of ${total} bytes`);
  return writer.buffer;
}
