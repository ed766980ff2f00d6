/**
 * Our dcmjs-based SCU (src/cli/commitment-scu.ts) with timestamps at each step. The N-ACTION is built
 * exactly as sendNAction builds it (our linear writer in a PreEncodedDataset), but the clock for the
 * N-ACTION-RSP latency starts only once the request is built, just before it is handed to dcmjs-dimse.
 * The report is taken on the same association (kept open), so no listener is needed.
 */
import { acceptReportsOn, connect, type ReceivedOnAssociation, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { ACTION_TYPE_REQUEST_COMMITMENT, STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE, type SopReference } from '../../src/commitment/types.js';
import { encodeCommitmentDataset, IMPLICIT_VR_LITTLE_ENDIAN } from '../../src/dicom/dataset-writer.js';
import { Dataset, PreEncodedDataset, pruneWhenDone, requests, type responses } from '../../src/dicom/dimse.js';
import { acceptedCommitmentTransferSyntax } from '../../src/dicom/event-report.js';

export interface TimedCommitment {
  readonly transactionUid: string;
  readonly status: number;
  /** Association negotiation (TCP connect to A-ASSOCIATE-AC). */
  readonly connectMs: number;
  /** Building the N-ACTION (encoding the Action Information): not part of the round trip. */
  readonly buildMs: number;
  /** Time spent inside dcmjs-dimse's sendRequests (PDU fragmentation, socket writes). */
  readonly sendCallMs: number;
  /** Request built -> N-ACTION-RSP received. */
  readonly rspMs: number;
  /** Request built -> N-EVENT-REPORT received (undefined if none arrived in time). */
  readonly reportMs: number | undefined;
  /** Connect start -> report received (or timeout). */
  readonly endToEndMs: number;
  readonly report: ReceivedOnAssociation | undefined;
}

export interface TimedOptions {
  /** How long to wait for the report on the association after the N-ACTION-RSP. */
  readonly reportTimeoutMs: number;
  /** Also the DIMSE/PDU timeout of our association: must exceed the sidecar's verification time. */
  readonly dimseTimeoutMs: number;
}

export async function timedCommitment(target: Omit<ScuTarget, 'timeoutMs'>, references: readonly SopReference[], options: TimedOptions): Promise<TimedCommitment> {
  const started = performance.now();
  const transactionUid = Dataset.generateDerivedUid();
  const open = await connect({ ...target, timeoutMs: options.dimseTimeoutMs });
  const connected = performance.now();
  let report: ReceivedOnAssociation | undefined;
  let reportAt: number | undefined;
  let wake: (() => void) | undefined;
  acceptReportsOn(open, (received) => {
    if (received.transactionUid !== transactionUid) return;
    reportAt = performance.now();
    report = received;
    wake?.();
  });
  try {
    const ts = acceptedCommitmentTransferSyntax(open.network) ?? IMPLICIT_VR_LITTLE_ENDIAN;
    const request = new requests.NActionRequest(STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE, ACTION_TYPE_REQUEST_COMMITMENT);
    request.setDataset(new PreEncodedDataset(encodeCommitmentDataset({ transactionUid, retrieveAeTitle: undefined, referenced: references, failed: [] }, ts), ts));
    pruneWhenDone(open.network, request);
    const built = performance.now();

    let sendCallMs = 0;
    const { status, rspAt } = await new Promise<{ status: number; rspAt: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no N-ACTION-RSP within ${options.dimseTimeoutMs} ms`)), options.dimseTimeoutMs);
      open.network.once('close', () => reject(new Error('association closed before the N-ACTION-RSP')));
      request.on('response', (response: InstanceType<typeof responses.NActionResponse>) => {
        const rspAt = performance.now();
        clearTimeout(timer);
        resolve({ status: response.getStatus(), rspAt });
      });
      const before = performance.now();
      open.network.sendRequests(request);
      sendCallMs = performance.now() - before;
    });

    if (status === 0 && !report) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.reportTimeoutMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const ended = performance.now();
    return {
      transactionUid,
      status,
      connectMs: connected - started,
      buildMs: built - connected,
      sendCallMs,
      rspMs: rspAt - built,
      reportMs: reportAt === undefined ? undefined : reportAt - built,
      endToEndMs: (reportAt ?? ended) - started,
      report,
    };
  } finally {
    await open.release(5000);
  }
}

/** True when the report commits exactly the requested instances and fails none. */
export function reportCommitsAll(report: ReceivedOnAssociation | undefined, references: readonly SopReference[]): boolean {
  if (!report || report.eventTypeId !== 1 || report.failed.length !== 0 || report.committed.length !== references.length) return false;
  const wanted = new Map(references.map((r) => [r.sopInstanceUid, r.sopClassUid]));
  return report.committed.every((c) => wanted.get(c.sopInstanceUid) === c.sopClassUid);
}
