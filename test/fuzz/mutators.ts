/**
 * Structure-aware mutation of the fuzz corpus: each case is a short conversation (the bytes a peer writes,
 * in order) built from valid PDUs with some of their structure broken the way scanners and broken
 * modalities break it: length fields, item types, presentation context IDs, PDV headers, command elements,
 * data set lengths, splitting, duplication, reordering, truncation, plus plain byte noise. Deterministic
 * for a seed, so a failing case replays exactly.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export interface Corpus {
  readonly associateRq: Buffer;
  readonly nActionCommand: Buffer;
  readonly nActionDataset: Buffer;
  readonly cEcho: Buffer;
  readonly releaseRq: Buffer;
}

export function loadCorpus(): Corpus {
  const read = (name: string): Buffer => readFileSync(resolve(import.meta.dirname, 'corpus', name));
  return {
    associateRq: read('associate-rq.bin'),
    nActionCommand: read('n-action-command.bin'),
    nActionDataset: read('n-action-dataset.bin'),
    cEcho: read('c-echo.bin'),
    releaseRq: read('release-rq.bin'),
  };
}

/** mulberry32: small, fast, good enough to spread mutations, and reproducible. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const INTERESTING_32 = [0, 1, 2, 3, 4, 5, 6, 0x7f, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const INTERESTING_16 = [0, 1, 2, 3, 4, 0x7f, 0xff, 0x100, 0x7fff, 0x8000, 0xffff];
const INTERESTING_8 = [0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff];

/** Offsets of the items of an association PDU body (after the 68-byte fixed part), and of their sub-items. */
function associationItems(pdu: Buffer): Array<{ offset: number; sub: boolean }> {
  const found: Array<{ offset: number; sub: boolean }> = [];
  let offset = 6 + 68;
  while (offset + 4 <= pdu.length) {
    const type = pdu.readUInt8(offset);
    const length = pdu.readUInt16BE(offset + 2);
    found.push({ offset, sub: false });
    const start = type === 0x20 ? offset + 8 : type === 0x50 ? offset + 4 : offset + 4 + length;
    for (let sub = start; sub + 4 <= Math.min(offset + 4 + length, pdu.length) && type !== 0x10; ) {
      found.push({ offset: sub, sub: true });
      sub += 4 + pdu.readUInt16BE(sub + 2);
    }
    offset += 4 + length;
  }
  return found;
}

function fixPduLength(pdu: Buffer): Buffer {
  pdu.writeUInt32BE(pdu.length - 6, 2);
  return pdu;
}

export function mutateAssociateRq(rng: Rng, original: Buffer): Buffer {
  let pdu: Buffer = Buffer.from(original);
  const items = associationItems(pdu);
  const item = rng.pick(items);
  switch (rng.int(9)) {
    case 0: // item or sub-item type
      pdu.writeUInt8(rng.pick([...INTERESTING_8, 0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x54, 0x55, 0x58]), item.offset);
      break;
    case 1: // item or sub-item length
      pdu.writeUInt16BE(rng.pick(INTERESTING_16), item.offset + 2);
      break;
    case 2: {
      // presentation context IDs: one set to a border value, two made equal (at a border value or not),
      // or all reversed (legal, but not ascending)
      const contexts = items.filter((i) => !i.sub && pdu.readUInt8(i.offset) === 0x20);
      const borders = [0, 1, 2, 3, 127, 128, 129, 253, 254, 255];
      const mode = rng.int(3);
      if (mode === 0) {
        pdu.writeUInt8(rng.pick(borders), rng.pick(contexts).offset + 4);
      } else if (mode === 1) {
        const id = rng.chance(0.5) ? rng.pick(borders) : pdu.readUInt8(rng.pick(contexts).offset + 4);
        pdu.writeUInt8(id, rng.pick(contexts).offset + 4);
        pdu.writeUInt8(id, rng.pick(contexts).offset + 4);
      } else {
        contexts.forEach((c, n) => pdu.writeUInt8(255 - 2 * n, c.offset + 4));
      }
      break;
    }
    case 3: {
      // many copies of one presentation context (up to 200, past the 128 allowed)
      const context = items.find((i) => !i.sub && pdu.readUInt8(i.offset) === 0x20)!;
      const length = pdu.readUInt16BE(context.offset + 2) + 4;
      const copy = pdu.subarray(context.offset, context.offset + length);
      // IDs counting up from 7 (wrapping past 255 onto the original ones), down from 255, all 255, or random
      const pattern = rng.int(4);
      const copies = Array.from({ length: 1 + rng.int(200) }, (_, n) => {
        const c = Buffer.from(copy);
        const id = [(2 * n + 7) % 256, (255 - 2 * n + 512) % 256, 255, rng.int(256)][pattern]!;
        c.writeUInt8(rng.chance(0.9) ? id : rng.int(256), 4);
        return c;
      });
      pdu = fixPduLength(Buffer.concat([pdu.subarray(0, context.offset), ...copies, pdu.subarray(context.offset)]));
      break;
    }
    case 4: // PDU length field lies
      pdu.writeUInt32BE(rng.pick([...INTERESTING_32, pdu.length - 6 + rng.int(9) - 4]), 2);
      break;
    case 5: // protocol version, AE titles
      if (rng.chance(0.3)) pdu.writeUInt16BE(rng.pick(INTERESTING_16), 6);
      else for (let k = 0; k < 1 + rng.int(16); k++) pdu.writeUInt8(rng.chance(0.5) ? rng.int(256) : 0, 10 + rng.int(32));
      break;
    case 6: // truncated
      pdu = fixPduLength(pdu.subarray(0, 6 + rng.int(pdu.length - 6)));
      if (rng.chance(0.5)) pdu.writeUInt32BE(original.length - 6, 2);
      break;
    case 7: // drop an item
      {
        const length = pdu.readUInt16BE(item.offset + 2) + 4;
        pdu = fixPduLength(Buffer.concat([pdu.subarray(0, item.offset), pdu.subarray(Math.min(pdu.length, item.offset + length))]));
      }
      break;
    default:
      pdu = noise(rng, pdu, 6);
  }
  return pdu;
}

/** A P-DATA-TF with one PDV: header fields, the command elements, or the data set inside broken. */
export function mutatePData(rng: Rng, original: Buffer): Buffer {
  if (original.length < 12) return noise(rng, original, 0);
  let pdu: Buffer = Buffer.from(original);
  switch (rng.int(8)) {
    case 0: // PDV item length
      pdu.writeUInt32BE(rng.pick([...INTERESTING_32, pdu.length - 6 + rng.int(5) - 2]), 6);
      break;
    case 1: // presentation context ID
      pdu.writeUInt8(rng.pick([...INTERESTING_8, 1, 3, 5, 7]), 10);
      break;
    case 2: // message control header: command/data set, last/not
      pdu.writeUInt8(rng.int(4) | (rng.chance(0.1) ? 0xf0 : 0), 11);
      break;
    case 3: {
      // an element's 32-bit length inside the command or data set (implicit VR: tag then length)
      const value = 12;
      const at = value + 4 + 2 * rng.int(Math.max(1, (pdu.length - value - 8) / 2));
      if (at + 4 <= pdu.length) pdu.writeUInt32LE(rng.pick(INTERESTING_32), at);
      break;
    }
    case 4: // truncated value, header still claiming the whole
      pdu = pdu.subarray(0, 12 + rng.int(pdu.length - 12));
      break;
    case 5: // the value split into many PDVs in one PDU, flags at random
      {
        const value = pdu.subarray(12);
        const parts: Buffer[] = [];
        for (let at = 0; at < value.length; ) {
          const size = 1 + rng.int(Math.max(1, value.length - at));
          const header = Buffer.alloc(6);
          header.writeUInt32BE(size + 2, 0);
          header.writeUInt8(pdu.readUInt8(10), 4);
          header.writeUInt8(rng.int(4), 5);
          parts.push(header, value.subarray(at, at + size));
          at += size;
        }
        pdu = fixPduLength(Buffer.concat([pdu.subarray(0, 6), ...parts]));
      }
      break;
    case 6: // PDU length lies
      pdu.writeUInt32BE(rng.pick(INTERESTING_32), 2);
      break;
    default:
      pdu = noise(rng, pdu, 12);
  }
  return pdu;
}

/** Byte noise past `from`: flips, interesting values, insertions, deletions. */
export function noise(rng: Rng, original: Buffer, from: number): Buffer {
  let bytes: Buffer = Buffer.from(original);
  for (let n = 0; n < 1 + rng.int(8); n++) {
    const at = from + rng.int(Math.max(1, bytes.length - from));
    switch (rng.int(4)) {
      case 0:
        if (at < bytes.length) bytes[at] = bytes[at]! ^ (1 << rng.int(8));
        break;
      case 1:
        if (at < bytes.length) bytes[at] = rng.pick(INTERESTING_8);
        break;
      case 2:
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(Array.from({ length: 1 + rng.int(16) }, () => rng.int(256))), bytes.subarray(at)]);
        break;
      default:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + rng.int(8))]);
    }
  }
  return bytes;
}

/** One case: what a peer writes, in order (each Buffer one write). */
export function makeCase(rng: Rng, corpus: Corpus): Buffer[] {
  const { associateRq, nActionCommand, nActionDataset, cEcho, releaseRq } = corpus;
  switch (rng.int(7)) {
    case 0:
      return [mutateAssociateRq(rng, associateRq)];
    case 1:
      return [associateRq, mutatePData(rng, nActionCommand), nActionDataset, releaseRq];
    case 2:
      return [associateRq, nActionCommand, mutatePData(rng, nActionDataset), releaseRq];
    case 3:
      return [associateRq, mutatePData(rng, cEcho), cEcho];
    case 4: {
      // corpus PDUs in a random order, some twice, some mutated
      const pool = [associateRq, nActionCommand, nActionDataset, cEcho, releaseRq];
      return Array.from({ length: 1 + rng.int(6) }, () => {
        const pdu = rng.pick(pool);
        return rng.chance(0.3) ? (pdu === associateRq ? mutateAssociateRq(rng, pdu) : mutatePData(rng, pdu)) : pdu;
      });
    }
    case 5: {
      // a valid conversation written in random fragments (PDU boundaries anywhere)
      const stream = Buffer.concat([associateRq, nActionCommand, nActionDataset, cEcho, releaseRq]);
      const parts: Buffer[] = [];
      for (let at = 0; at < stream.length; ) {
        const size = 1 + rng.int(64);
        parts.push(stream.subarray(at, at + size));
        at += size;
      }
      return parts;
    }
    default:
      return [noise(rng, Buffer.concat([associateRq, nActionCommand, nActionDataset]), 0)];
  }
}
