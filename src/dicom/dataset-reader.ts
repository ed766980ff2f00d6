/**
 * Linear-time reader for the two Storage Commitment datasets (N-ACTION Action Information, N-EVENT-REPORT
 * Event Information), in Implicit or Explicit VR Little Endian. dcmjs needs ~2.4 s to naturalize 100,000
 * Referenced SOP items and blocks the event loop meanwhile; this reads them in tens of milliseconds and
 * keeps only the attributes Annex J defines, in dcmjs's naturalized shape (keyword -> value).
 */
import { Interner } from '../util/intern.js';
import { IMPLICIT_VR_LITTLE_ENDIAN } from './dataset-writer.js';
import { rawDatasetBytes, type Dataset } from './dimse.js';

export class DatasetParseError extends Error {}

type Kind = 'UI' | 'AE' | 'US' | 'SQ';
const KNOWN: ReadonlyMap<number, readonly [string, Kind]> = new Map([
  [0x00080054, ['RetrieveAETitle', 'AE']],
  [0x00081150, ['ReferencedSOPClassUID', 'UI']],
  [0x00081155, ['ReferencedSOPInstanceUID', 'UI']],
  [0x00081195, ['TransactionUID', 'UI']],
  [0x00081197, ['FailureReason', 'US']],
  [0x00081198, ['FailedSOPSequence', 'SQ']],
  [0x00081199, ['ReferencedSOPSequence', 'SQ']],
]);

/** Explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED_LENGTH = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIMITATION = 0xfffee00d;
const SEQUENCE_DELIMITATION = 0xfffee0dd;

interface Header {
  readonly tag: number;
  readonly vr: string | undefined;
  readonly length: number;
}

const SOP_CLASS_TAG = 0x00081150;

class Reader {
  offset = 0;
  /** SOP Class UIDs repeat in every item: keep one string per class. */
  readonly sopClasses = new Interner();
  constructor(
    private readonly buffer: Buffer,
    private readonly explicit: boolean,
  ) {}

  get atEnd(): boolean {
    return this.offset >= this.buffer.length;
  }

  private need(bytes: number): void {
    if (this.offset + bytes > this.buffer.length) throw new DatasetParseError(`dataset truncated at byte ${this.offset}`);
  }

  private tag(): number {
    this.need(4);
    const group = this.buffer.readUInt16LE(this.offset);
    const element = this.buffer.readUInt16LE(this.offset + 2);
    this.offset += 4;
    return ((group << 16) | element) >>> 0;
  }

  header(): Header {
    const tag = this.tag();
    // Item and delimitation tags never carry a VR, in either transfer syntax.
    if (tag === ITEM || tag === ITEM_DELIMITATION || tag === SEQUENCE_DELIMITATION || !this.explicit) {
      this.need(4);
      const length = this.buffer.readUInt32LE(this.offset);
      this.offset += 4;
      return { tag, vr: undefined, length };
    }
    this.need(4);
    const vr = this.buffer.toString('latin1', this.offset, this.offset + 2);
    if (LONG_VRS.has(vr)) {
      this.need(8);
      const length = this.buffer.readUInt32LE(this.offset + 4);
      this.offset += 8;
      return { tag, vr, length };
    }
    const length = this.buffer.readUInt16LE(this.offset + 2);
    this.offset += 4;
    return { tag, vr, length };
  }

  text(length: number): string {
    this.need(length);
    const value = this.buffer.toString('latin1', this.offset, this.offset + length);
    this.offset += length;
    return value.replace(/[\0 ]+$/u, '').replace(/^ +/u, '');
  }

  uint16(length: number): number {
    this.need(length);
    const value = length >= 2 ? this.buffer.readUInt16LE(this.offset) : 0;
    this.offset += length;
    return value;
  }

  skip(length: number): void {
    this.need(length);
    this.offset += length;
  }
}

/** Reads elements until `end` (an offset) or, for undefined lengths, the matching delimitation tag. */
function readElements(reader: Reader, end: number, delimiter: number | undefined): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  while (reader.offset < end) {
    const header = reader.header();
    if (delimiter !== undefined && header.tag === delimiter) return result;
    const known = KNOWN.get(header.tag);
    const isSequence = known?.[1] === 'SQ' || header.vr === 'SQ' || (header.vr === undefined && header.length === UNDEFINED_LENGTH);
    if (isSequence) {
      const items = readSequence(reader, header.length);
      if (known) result[known[0]] = items;
      continue;
    }
    if (header.length === UNDEFINED_LENGTH) throw new DatasetParseError(`undefined length on non-sequence element ${header.tag.toString(16)}`);
    if (!known) reader.skip(header.length);
    else if (known[1] === 'US') result[known[0]] = reader.uint16(header.length);
    else if (header.tag === SOP_CLASS_TAG) result[known[0]] = reader.sopClasses.intern(reader.text(header.length));
    else result[known[0]] = reader.text(header.length);
  }
  if (reader.offset > end) throw new DatasetParseError('element runs past its container');
  return result;
}

function readSequence(reader: Reader, length: number): Array<Record<string, unknown>> {
  const items: Array<Record<string, unknown>> = [];
  const end = length === UNDEFINED_LENGTH ? Infinity : reader.offset + length;
  while (reader.offset < end) {
    if (end === Infinity && reader.atEnd) throw new DatasetParseError('sequence without delimitation');
    const header = reader.header();
    if (header.tag === SEQUENCE_DELIMITATION) return items;
    if (header.tag !== ITEM) throw new DatasetParseError(`expected an item, found tag ${header.tag.toString(16)}`);
    if (header.length === UNDEFINED_LENGTH) items.push(readElements(reader, Infinity, ITEM_DELIMITATION));
    else items.push(readElements(reader, reader.offset + header.length, undefined));
  }
  return items;
}

/** Reads a Storage Commitment dataset; throws DatasetParseError on malformed input. */
export function readCommitmentDataset(buffer: Buffer, transferSyntaxUid: string): Record<string, unknown> {
  const reader = new Reader(buffer, transferSyntaxUid !== IMPLICIT_VR_LITTLE_ENDIAN);
  return readElements(reader, buffer.length, undefined);
}

/**
 * The naturalized elements of a received Storage Commitment dataset: read by us when it was received with
 * DEFER_PARSING, else as dcmjs naturalized it. Undefined when the message carried no dataset.
 */
export function commitmentElements(dataset: Dataset | undefined): Record<string, unknown> | undefined {
  if (!dataset) return undefined;
  const raw = rawDatasetBytes(dataset);
  return raw ? readCommitmentDataset(raw, dataset.getTransferSyntaxUid()) : (dataset.getElements() as Record<string, unknown>);
}
