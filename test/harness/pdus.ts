/**
 * Raw PDUs (PS3.8 9.3) built byte by byte, for hostile-input and fuzz tests: what a broken modality or a
 * scanner would send, without any DICOM library deciding for us what is allowed.
 */
import { encodeCommitmentDataset, IMPLICIT_VR_LITTLE_ENDIAN } from '../../src/dicom/dataset-writer.js';

export const APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';
export const VERIFICATION = '1.2.840.10008.1.1';
export const STORAGE_COMMITMENT = '1.2.840.10008.1.20.1';

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

/** An item of an association PDU: type, reserved, 16-bit length, value. */
export function item(type: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt8(type, 0);
  header.writeUInt16BE(value.length, 2);
  return Buffer.concat([header, value]);
}

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');
const ae = (title: string): Buffer => Buffer.from(title.padEnd(16, ' ').slice(0, 16), 'latin1');

export interface RqContext {
  readonly id: number;
  readonly abstractSyntax: string;
  readonly transferSyntaxes?: readonly string[];
  readonly roles?: { scu: boolean; scp: boolean };
}

export interface RqSpec {
  readonly called: string;
  readonly calling: string;
  readonly contexts: readonly RqContext[];
  readonly maxPduLength?: number;
  readonly applicationContext?: string;
  readonly protocolVersion?: number;
}

export function presentationContextItem(context: RqContext): Buffer {
  const head = Buffer.from([context.id, 0, 0, 0]);
  const syntaxes = (context.transferSyntaxes ?? [IMPLICIT_VR_LITTLE_ENDIAN]).map((ts) => item(0x40, ascii(ts)));
  return item(0x20, Buffer.concat([head, item(0x30, ascii(context.abstractSyntax)), ...syntaxes]));
}

export function roleItem(abstractSyntax: string, roles: { scu: boolean; scp: boolean }): Buffer {
  const uid = ascii(abstractSyntax);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(uid.length, 0);
  return item(0x54, Buffer.concat([length, uid, Buffer.from([roles.scu ? 1 : 0, roles.scp ? 1 : 0])]));
}

/** The body of an A-ASSOCIATE-RQ (without the 6-byte PDU header). */
export function associateRqBody(spec: RqSpec): Buffer {
  const fixed = Buffer.alloc(68);
  fixed.writeUInt16BE(spec.protocolVersion ?? 1, 0);
  ae(spec.called).copy(fixed, 4);
  ae(spec.calling).copy(fixed, 20);
  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(spec.maxPduLength ?? 16384, 0);
  const userInfo = item(
    0x50,
    Buffer.concat([
      item(0x51, maxLength),
      item(0x52, ascii('1.2.3.4.5.6.7')),
      ...spec.contexts.filter((c) => c.roles).map((c) => roleItem(c.abstractSyntax, c.roles!)),
      item(0x55, ascii('FUZZ_SCU')),
    ]),
  );
  return Buffer.concat([fixed, item(0x10, ascii(spec.applicationContext ?? APPLICATION_CONTEXT)), ...spec.contexts.map(presentationContextItem), userInfo]);
}

export function associateRq(spec: RqSpec): Buffer {
  const body = associateRqBody(spec);
  return Buffer.concat([pduHeader(0x01, body.length), body]);
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

const uid = (text: string): Buffer => Buffer.from(text.length % 2 === 0 ? text : `${text}\0`, 'latin1');
const us = (value: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value, 0);
  return b;
};

function commandSet(elements: Buffer[]): Buffer {
  const body = Buffer.concat(elements);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length, 0);
  return Buffer.concat([implicitElement(0x0000, groupLength), body]);
}

/** A Storage Commitment N-ACTION-RQ command set (implicit VR little endian, PS3.7 10.1.4) announcing a data set. */
export function nActionCommand(messageId: number, options: { sopClass?: string; sopInstance?: string; actionTypeId?: number } = {}): Buffer {
  return commandSet([
    implicitElement(0x0003, uid(options.sopClass ?? STORAGE_COMMITMENT)), // Requested SOP Class UID
    implicitElement(0x0100, us(0x0130)), // Command Field: N-ACTION-RQ
    implicitElement(0x0110, us(messageId)), // Message ID
    implicitElement(0x0800, us(0x0000)), // Command Data Set Type: a data set follows
    implicitElement(0x1001, uid(options.sopInstance ?? '1.2.840.10008.1.20.1.1')), // Requested SOP Instance UID
    implicitElement(0x1008, us(options.actionTypeId ?? 1)), // Action Type ID
  ]);
}

/** A C-ECHO-RQ command set. */
export function cEchoCommand(messageId: number): Buffer {
  return commandSet([
    implicitElement(0x0002, uid(VERIFICATION)), // Affected SOP Class UID
    implicitElement(0x0100, us(0x0030)), // Command Field: C-ECHO-RQ
    implicitElement(0x0110, us(messageId)),
    implicitElement(0x0800, us(0x0101)), // no data set
  ]);
}

/** The N-ACTION's Action Information in implicit VR little endian. */
export function actionInformation(transactionUid: string, references: ReadonlyArray<{ sopClassUid: string; sopInstanceUid: string }>): Buffer {
  return encodeCommitmentDataset({ transactionUid, retrieveAeTitle: undefined, referenced: references, failed: [] }, IMPLICIT_VR_LITTLE_ENDIAN);
}

/** A whole N-ACTION-RQ on presentation context 1: its command set, then its Action Information (two P-DATA-TF PDUs). */
export function nActionPdus(messageId: number, transactionUid: string, references: ReadonlyArray<{ sopClassUid: string; sopInstanceUid: string }>): Buffer {
  return Buffer.concat([pDataTf(1, 0x03, nActionCommand(messageId)), pDataTf(1, 0x02, actionInformation(transactionUid, references))]);
}

/** An A-ABORT PDU (PS3.8 9.3.8) from the service user, reason not specified. */
export function abortPdu(): Buffer {
  return Buffer.from([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00]);
}

/** An N-EVENT-REPORT-RSP command set answering message `respondingTo` with `status` (default Success). */
export function nEventReportResponse(respondingTo: number, eventTypeId: number, status = 0x0000): Buffer {
  return commandSet([
    implicitElement(0x0002, uid(STORAGE_COMMITMENT)), // Affected SOP Class UID
    implicitElement(0x0100, us(0x8100)), // Command Field: N-EVENT-REPORT-RSP
    implicitElement(0x0120, us(respondingTo)), // Message ID Being Responded To
    implicitElement(0x0800, us(0x0101)), // no data set
    implicitElement(0x0900, us(status)), // Status
    implicitElement(0x1000, uid('1.2.840.10008.1.20.1.1')), // Affected SOP Instance UID
    implicitElement(0x1002, us(eventTypeId)), // Event Type ID
  ]);
}

export const A_RELEASE_RQ = Buffer.concat([pduHeader(0x05, 4), Buffer.alloc(4)]);
