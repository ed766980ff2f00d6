/**
 * The one place that imports dcmjs-dimse, and the only module that touches its private parts. Each
 * internal we rely on was read from dcmjs-dimse 0.3.3's source (the version is pinned exactly in
 * package.json); `checkInternals()` runs at load and test/unit/dcmjs-dimse-contract.test.ts exercises each
 * one, so an upgrade that renames or reshapes any of them fails loudly instead of silently degrading.
 *
 * Internals used, and why:
 * - `Network`: the base class of Scp and Client, not exported; reached as the prototype of Scp. The
 *   report requestor (requestor.ts) builds on it because Client drops role selection.
 * - `network.socket`, `network.association`, `network.logId`: to read the peer address, to install the
 *   association we parsed ourselves (associate-rq.ts), and for dcmjs-dimse's own log lines.
 * - `network.connected` / `connectedTime`: dcmjs-dimse's Server sets them; we run our own server.
 * - `network.pending`: requests awaiting a response, never pruned by dcmjs-dimse (see pruneWhenDone).
 * - The socket 'data' listener dcmjs-dimse installs in its constructor: we take it over so that the PDU
 *   guard decides what dcmjs-dimse reads (takeOverReceiving).
 * - `PresentationContext.userRole` / `providerRole`: cleared after an A-ASSOCIATE-RQ is written, so a role
 *   read back from the A-ASSOCIATE-AC is the acceptor's answer (clearProposedRoles).
 * - `Dataset.prototype._fromElementsBuffer`: patched for opt-in deferred parsing (DEFER_PARSING).
 * - `Implementation` statics (public, but process-wide): our Implementation Class UID, Version Name and
 *   the Maximum Length we advertise (configureImplementation).
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import dcmjsDimse from 'dcmjs-dimse';
import type { AssociateRq } from './associate-rq.js';

export const { Scp, Dataset, Implementation, association, requests, responses, constants, log } = dcmjsDimse;
export type Scp = InstanceType<typeof Scp>;
export type Association = InstanceType<typeof association.Association>;
export type PresentationContext = InstanceType<typeof association.PresentationContext>;
export type Request = InstanceType<typeof requests.Request>;
export type NActionRequest = InstanceType<typeof requests.NActionRequest>;
export type NEventReportRequest = InstanceType<typeof requests.NEventReportRequest>;
export type NEventReportResponse = InstanceType<typeof responses.NEventReportResponse>;
export type CEchoRequest = InstanceType<typeof requests.CEchoRequest>;
export type Dataset = InstanceType<typeof Dataset>;

/** The exact dcmjs-dimse version whose internals this module was written against. */
export const SUPPORTED_DCMJS_DIMSE_VERSION = '0.3.3';

/**
 * Our Implementation Class UID (PS3.7 D.3.3.2): a UUID-derived UID (PS3.5 B.2), fixed for this product so
 * that a peer's logs and conformance checks name the sidecar, not the library.
 */
export const IMPLEMENTATION_CLASS_UID = '2.25.99843995479432014877650453693976789995';
/** Implementation Version Name: SH, at most 16 characters. */
export const IMPLEMENTATION_VERSION_NAME = 'STGCMT_SIDECAR_1';

/** Fields of dcmjs-dimse's Network that are not in its typings but that we read or set. */
export interface NetworkInternals {
  socket: Socket;
  association: Association | undefined;
  /** Requests sent and awaiting a response; dcmjs-dimse never prunes it (we do, see pruneWhenDone). */
  pending: Request[];
  logId: string;
  connected: boolean;
  connectedTime: number | undefined;
}

/** Options every Network accepts (dcmjs-dimse's constructor `opts`). */
export interface NetworkOptions {
  connectTimeout?: number;
  associationTimeout?: number;
  pduTimeout?: number;
  logCommandDatasets?: boolean;
  logDatasets?: boolean;
  datasetReadOptions?: Record<string, unknown>;
}

export type NetworkInstance = Scp &
  NetworkInternals & {
    sendAssociationRequest(association: Association): void;
  };

/** dcmjs-dimse exports Scp and Client but not their common base, Network: it is the prototype of Scp. */
export const Network = Object.getPrototypeOf(Scp) as new (socket: Socket, opts?: NetworkOptions) => NetworkInstance;

export function internals(network: Scp): NetworkInternals {
  return network as unknown as NetworkInternals;
}

/** Sets the process-wide identity and the Maximum Length we advertise in every A-ASSOCIATE-RQ/AC. */
export function configureImplementation(options: { readonly maxPduLength: number }): void {
  Implementation.setImplementationClassUid(IMPLEMENTATION_CLASS_UID);
  Implementation.setImplementationVersion(IMPLEMENTATION_VERSION_NAME);
  Implementation.setMaxPduLength(options.maxPduLength);
}
configureImplementation({ maxPduLength: Implementation.getMaxPduLength() });

/** An incoming connection is connected from the start (dcmjs-dimse's Server does this; we replace Server). */
export function markConnected(network: Scp): void {
  internals(network).connected = true;
  internals(network).connectedTime = Date.now();
}

/**
 * Removes the socket 'data' listener dcmjs-dimse installed in its constructor and returns it, so that the
 * caller decides what dcmjs-dimse reads. Throws if there is not exactly one (the internal changed).
 */
export function takeOverReceiving(network: Scp): (bytes: Buffer) => void {
  const socket = internals(network).socket;
  const listeners = socket.listeners('data') as Array<(bytes: Buffer) => void>;
  if (listeners.length !== 1) throw new Error(`dcmjs-dimse internals changed: expected its one socket 'data' listener, found ${listeners.length}`);
  const receive = listeners[0]!;
  socket.off('data', receive);
  return receive;
}

/**
 * Builds dcmjs-dimse's Association from an A-ASSOCIATE-RQ we read ourselves and installs it on the network,
 * as dcmjs-dimse would after reading the RQ. Contexts are added in ascending ID order: dcmjs-dimse renumbers
 * a context whose ID is not above all earlier ones, and the IDs must stay exactly as proposed.
 */
export function installAssociation(network: Scp, rq: AssociateRq): Association {
  const built = new association.Association(rq.callingAeTitle, rq.calledAeTitle);
  for (const proposed of [...rq.contexts].sort((a, b) => a.id - b.id)) {
    const id = built.addPresentationContext(proposed.abstractSyntax, proposed.id);
    if (id !== proposed.id) throw new Error(`dcmjs-dimse internals changed: presentation context ${proposed.id} became ${id}`);
    for (const ts of proposed.transferSyntaxes) built.addTransferSyntaxToPresentationContext(id, ts);
    if (proposed.roles) {
      const context = built.getPresentationContext(id);
      context.setUserRole(proposed.roles.scu);
      context.setProviderRole(proposed.roles.scp);
    }
  }
  built.setMaxPduLength(rq.maxPduLength);
  if (rq.implementationClassUid) built.setImplementationClassUid(rq.implementationClassUid);
  if (rq.implementationVersion) built.setImplementationVersion(rq.implementationVersion);
  internals(network).association = built;
  internals(network).logId = rq.callingAeTitle;
  return built;
}

/**
 * Sends the A-ASSOCIATE-AC advertising our own Maximum Length, then keeps the requestor's for what we send.
 * dcmjs-dimse writes min(theirs, ours) into the AC, and 0 ("no limit") when the requestor sent 0, which
 * would invite PDUs larger than the PDU guard accepts.
 */
export function sendAssociationAccept(network: Scp, ourMaxPduLength: number): void {
  const association = internals(network).association;
  if (!association) throw new Error('no association to accept');
  const theirs = association.getMaxPduLength();
  association.setMaxPduLength(ourMaxPduLength);
  network.sendAssociationAccept();
  association.setMaxPduLength(theirs);
}

/** Forgets the roles proposed on a context, so a role read back from the A-ASSOCIATE-AC is the answer. */
export function clearProposedRoles(context: PresentationContext): void {
  const fields = context as unknown as { userRole: unknown; providerRole: unknown };
  fields.userRole = undefined;
  fields.providerRole = undefined;
}

/**
 * dcmjs-dimse keeps every request it sent in `pending` for the life of the association; on a long
 * association that grows without bound. Drop each request once its final response arrived.
 */
export function pruneWhenDone(network: Scp, request: Request): void {
  request.on('done', () => {
    const pending = internals(network).pending;
    const index = pending.indexOf(request);
    if (index >= 0) pending.splice(index, 1);
  });
}

/**
 * Opt-in deferred parsing, a small patch to dcmjs-dimse's Dataset: when a Network is created with
 * `datasetReadOptions: DEFER_PARSING`, a received dataset keeps its raw bytes instead of being naturalized
 * by dcmjs (superlinear in time for long sequences, and blocking). datasetElements() then reads it with
 * our linear reader. Other networks and datasets behave exactly as before.
 */
export const DEFER_PARSING = Object.freeze({ deferParsing: true });
const RAW = Symbol('raw dataset bytes');
type DeferrableDataset = Dataset & { [RAW]?: Buffer; _fromElementsBuffer(buffer: Buffer, ts: string, options: Record<string, unknown>): Record<string, unknown> };
const datasetPrototype = Dataset.prototype as DeferrableDataset;
const naturalize = datasetPrototype._fromElementsBuffer;
datasetPrototype._fromElementsBuffer = function (this: DeferrableDataset, buffer, ts, options) {
  if (options?.['deferParsing'] === true) {
    this[RAW] = buffer;
    return {};
  }
  return naturalize.call(this, buffer, ts, options);
};

/** The raw bytes of a dataset received with DEFER_PARSING, or undefined for an ordinary dataset. */
export function rawDatasetBytes(dataset: Dataset | undefined): Buffer | undefined {
  return dataset ? (dataset as DeferrableDataset)[RAW] : undefined;
}

/**
 * A dataset whose bytes we encoded ourselves (see dataset-writer.ts). dcmjs-dimse only asks a dataset for
 * its transfer syntax and for its encoded bytes, so handing it this object skips dcmjs's slow writer.
 */
export class PreEncodedDataset extends Dataset {
  constructor(
    private readonly bytes: Buffer,
    transferSyntaxUid: string,
  ) {
    super({}, transferSyntaxUid);
  }
  override getDenaturalizedDataset(): Buffer {
    return this.bytes;
  }
  override toString(): string {
    return `Dataset: ${this.bytes.length} pre-encoded bytes`;
  }
}

/**
 * Checks, without side effects, that every internal listed at the top of this file is where we expect it.
 * Returns the problems found (empty when all is well).
 */
export function checkInternals(): string[] {
  const problems: string[] = [];
  const require = createRequire(import.meta.url);
  const version = (require('dcmjs-dimse/package.json') as { version: string }).version;
  if (version !== SUPPORTED_DCMJS_DIMSE_VERSION) problems.push(`dcmjs-dimse ${version} installed; this build was checked against ${SUPPORTED_DCMJS_DIMSE_VERSION}`);
  if (typeof naturalize !== 'function') problems.push('Dataset.prototype._fromElementsBuffer is gone: deferred parsing would silently do nothing');
  const networkPrototype = (Network as unknown as { prototype: Record<string, unknown> }).prototype;
  for (const method of ['sendAssociationRequest', 'sendAssociationAccept', 'sendAssociationReject', 'sendAbort', 'sendRequests', '_processPdu', '_wrapSocket']) {
    if (typeof networkPrototype[method] !== 'function') problems.push(`Network.prototype.${method} is missing (is Network still the prototype of Scp?)`);
  }
  const context = new association.PresentationContext(1, '1.2.3', '1.2.840.10008.1.2', 0, true, false);
  if (!('userRole' in context) || !('providerRole' in context)) problems.push('PresentationContext no longer keeps userRole/providerRole fields');
  for (const method of ['setImplementationClassUid', 'setImplementationVersion', 'setMaxPduLength', 'getMaxPduLength']) {
    if (typeof (Implementation as unknown as Record<string, unknown>)[method] !== 'function') problems.push(`Implementation.${method} is missing`);
  }
  return problems;
}

const problems = checkInternals();
if (problems.length > 0) {
  throw new Error(`dcmjs-dimse internals changed; refusing to run with a silently degraded DICOM layer: ${problems.join('; ')}`);
}
