/**
 * A strict reader of the A-ASSOCIATE-RQ PDU body (PS3.8 9.3.2). We read it ourselves instead of letting
 * dcmjs-dimse do it because dcmjs-dimse (0.3.3) renumbers a presentation context whose ID is not above all
 * earlier ones (so a legal RQ proposing 3 then 1 is dropped, and two contexts with ID 255 become 255 and
 * 257, which then throws while writing the A-ASSOCIATE-AC), and trusts every length field. Pure: bytes in,
 * a typed request or the A-ABORT reason out.
 */

/** PS3.8 9.3.8 A-ABORT reasons (source: service provider) that a malformed RQ earns. */
export const AbortReasonFor = {
  UnrecognizedPduParameter: 4,
  UnexpectedPduParameter: 5,
  InvalidPduParameterValue: 6,
} as const;

export const DICOM_APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';

export interface ProposedPresentationContext {
  readonly id: number;
  readonly abstractSyntax: string;
  readonly transferSyntaxes: readonly string[];
  /** SCP/SCU Role Selection sub-item for this abstract syntax (PS3.7 D.3.3.4), if proposed. */
  readonly roles?: { readonly scu: boolean; readonly scp: boolean };
}

export interface AssociateRq {
  readonly protocolVersion: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly applicationContext: string | undefined;
  readonly contexts: readonly ProposedPresentationContext[];
  /** Largest PDU the requestor accepts; 0 means no limit. */
  readonly maxPduLength: number;
  readonly implementationClassUid: string | undefined;
  readonly implementationVersion: string | undefined;
}

export type AssociateRqResult =
  | { readonly ok: true; readonly rq: AssociateRq }
  | { readonly ok: false; readonly abortReason: number; readonly why: string };

/** Odd IDs from 1 to 255: at most 128 presentation contexts (PS3.8 9.3.2.2). */
export const MAX_PRESENTATION_CONTEXTS = 128;

const FIXED_PART = 2 + 2 + 16 + 16 + 32;

class Malformed extends Error {
  constructor(
    readonly abortReason: number,
    message: string,
  ) {
    super(message);
  }
}

/** Text of a UID or AE field: trailing NULs and spaces are padding. */
function text(buffer: Buffer, start: number, end: number): string {
  return buffer.toString('latin1', start, end).replace(/[\0 ]+$/u, '').replace(/^ +/u, '');
}

/** Walks `[start, end)` as a list of items with a 1-byte type, 1 reserved byte and a 2-byte length. */
function* items(buffer: Buffer, start: number, end: number, what: string): Generator<{ type: number; start: number; end: number }> {
  let offset = start;
  while (offset < end) {
    if (offset + 4 > end) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `${what}: item header crosses the end`);
    const type = buffer.readUInt8(offset);
    const length = buffer.readUInt16BE(offset + 2);
    const valueStart = offset + 4;
    if (valueStart + length > end) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `${what}: item 0x${type.toString(16)} of ${length} bytes overruns its parent`);
    yield { type, start: valueStart, end: valueStart + length };
    offset = valueStart + length;
  }
}

export function parseAssociateRq(body: Buffer): AssociateRqResult {
  try {
    return { ok: true, rq: read(body) };
  } catch (error) {
    if (error instanceof Malformed) return { ok: false, abortReason: error.abortReason, why: error.message };
    throw error;
  }
}

function read(body: Buffer): AssociateRq {
  if (body.length < FIXED_PART) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `A-ASSOCIATE-RQ of ${body.length} bytes is shorter than its fixed part`);
  const protocolVersion = body.readUInt16BE(0);
  const calledAeTitle = text(body, 4, 20);
  const callingAeTitle = text(body, 20, 36);

  let applicationContext: string | undefined;
  const contexts = new Map<number, { id: number; abstractSyntax: string | undefined; transferSyntaxes: string[] }>();
  const roleItems = new Map<string, { scu: boolean; scp: boolean }>();
  let maxPduLength = 0;
  let implementationClassUid: string | undefined;
  let implementationVersion: string | undefined;

  for (const item of items(body, FIXED_PART, body.length, 'A-ASSOCIATE-RQ')) {
    if (item.type === 0x10) {
      if (applicationContext !== undefined) throw new Malformed(AbortReasonFor.UnexpectedPduParameter, 'second Application Context item');
      applicationContext = text(body, item.start, item.end);
    } else if (item.type === 0x20) {
      if (item.end - item.start < 4) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, 'presentation context item shorter than 4 bytes');
      const id = body.readUInt8(item.start);
      if (id % 2 === 0) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `presentation context ID ${id} is not an odd number from 1 to 255`);
      if (contexts.has(id)) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `presentation context ID ${id} proposed twice`);
      const context = { id, abstractSyntax: undefined as string | undefined, transferSyntaxes: [] as string[] };
      for (const sub of items(body, item.start + 4, item.end, `presentation context ${id}`)) {
        if (sub.type === 0x30) {
          if (context.abstractSyntax !== undefined) throw new Malformed(AbortReasonFor.UnexpectedPduParameter, `presentation context ${id} has two abstract syntaxes`);
          context.abstractSyntax = text(body, sub.start, sub.end);
        } else if (sub.type === 0x40) {
          context.transferSyntaxes.push(text(body, sub.start, sub.end));
        } else {
          throw new Malformed(AbortReasonFor.UnrecognizedPduParameter, `presentation context ${id}: sub-item type 0x${sub.type.toString(16)}`);
        }
      }
      if (context.abstractSyntax === undefined) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `presentation context ${id} has no abstract syntax`);
      if (context.transferSyntaxes.length === 0) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `presentation context ${id} has no transfer syntax`);
      contexts.set(id, context);
    } else if (item.type === 0x50) {
      for (const sub of items(body, item.start, item.end, 'user information')) {
        const length = sub.end - sub.start;
        if (sub.type === 0x51) {
          if (length !== 4) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `maximum length sub-item of ${length} bytes`);
          maxPduLength = body.readUInt32BE(sub.start);
        } else if (sub.type === 0x52) {
          implementationClassUid = text(body, sub.start, sub.end);
        } else if (sub.type === 0x55) {
          implementationVersion = text(body, sub.start, sub.end);
        } else if (sub.type === 0x54) {
          if (length < 4) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, 'role selection sub-item too short');
          const uidLength = body.readUInt16BE(sub.start);
          if (2 + uidLength + 2 !== length) throw new Malformed(AbortReasonFor.InvalidPduParameterValue, 'role selection sub-item lengths disagree');
          const uid = text(body, sub.start + 2, sub.start + 2 + uidLength);
          roleItems.set(uid, { scu: body.readUInt8(sub.start + 2 + uidLength) === 1, scp: body.readUInt8(sub.start + 3 + uidLength) === 1 });
        }
        // Other sub-items (asynchronous operations, extended negotiation, user identity) are optional
        // services we do not offer: PS3.7 D.3.3 lets an acceptor answer without them.
      }
    }
    // Items of other types are ignored (PS3.8 9.3.1: an unrecognized item does not invalidate the PDU).
  }
  if (contexts.size > MAX_PRESENTATION_CONTEXTS) {
    throw new Malformed(AbortReasonFor.InvalidPduParameterValue, `${contexts.size} presentation contexts (at most ${MAX_PRESENTATION_CONTEXTS})`);
  }
  return {
    protocolVersion,
    calledAeTitle,
    callingAeTitle,
    applicationContext,
    contexts: [...contexts.values()].map((c) => ({
      id: c.id,
      abstractSyntax: c.abstractSyntax!,
      transferSyntaxes: c.transferSyntaxes,
      ...(roleItems.has(c.abstractSyntax!) ? { roles: roleItems.get(c.abstractSyntax!)! } : {}),
    })),
    maxPduLength,
    implementationClassUid,
    implementationVersion,
  };
}
