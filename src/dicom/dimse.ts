/**
 * The one place that imports dcmjs-dimse. It names the internals of its Network class that we rely on
 * (read from dcmjs-dimse 0.3.3's source) so the rest of the code stays typed.
 */
import type { Socket } from 'node:net';
import dcmjsDimse from 'dcmjs-dimse';

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

/** Fields of dcmjs-dimse's Network that are not in its typings but that we read or fix. */
export interface NetworkInternals {
  socket: Socket;
  association: Association | undefined;
  /** Requests sent and awaiting a response; dcmjs-dimse never prunes it (we do, see pruneWhenDone). */
  pending: Request[];
  logId: string;
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

/**
 * dcmjs-dimse exports Scp and Client but not their common base, Network, which both requests and answers
 * on one socket. It is the prototype of Scp; the requestor side (dicom/requestor.ts) builds on it.
 */
export type NetworkInstance = Scp & NetworkInternals & {
  sendAssociationRequest(association: Association): void;
};
export const Network = Object.getPrototypeOf(Scp) as new (socket: Socket, opts?: NetworkOptions) => NetworkInstance;

export function internals(network: Scp): NetworkInternals {
  return network as unknown as NetworkInternals;
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
