/**
 * Storage Commitment SCU: sends an N-ACTION and collects the N-EVENT-REPORT, on the same association or
 * on a new one (through a ReportReceiver). Used by the stgcmt-scu command and by the tests as a second
 * client beside Orthanc.
 */
import type { ConnectionOptions } from 'node:tls';
import { ACTION_TYPE_REQUEST_COMMITMENT, STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE, VERIFICATION_SOP_CLASS, type SopReference } from '../commitment/types.js';
import { commitmentElements } from '../dicom/dataset-reader.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, encodeCommitmentDataset } from '../dicom/dataset-writer.js';
import { acceptedCommitmentTransferSyntax } from '../dicom/event-report.js';
import { Dataset, PreEncodedDataset, pruneWhenDone, requests, responses, type NEventReportRequest } from '../dicom/dimse.js';
import { openAssociation, type OpenAssociation } from '../dicom/requestor.js';
import { parseEventReport, type ReceivedReport } from './report-parser.js';
import type { ReportReceiver } from './report-receiver.js';

export interface ScuTarget {
  readonly host: string;
  readonly port: number;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly timeoutMs: number;
  /** Transfer syntaxes to propose for Storage Commitment (default: explicit and implicit VR LE). */
  readonly transferSyntaxes?: readonly string[];
  /** Present to connect with DICOM TLS. */
  readonly tls?: ConnectionOptions;
}

export interface NActionSpec {
  readonly sopClassUid?: string;
  readonly sopInstanceUid?: string;
  readonly actionTypeId?: number;
  /** Pre-encoded Action Information; or `elements` for a dataset built by dcmjs (for odd test requests). */
  readonly references?: readonly SopReference[];
  readonly transactionUid?: string;
  readonly elements?: Record<string, unknown>;
}

export interface NActionResult {
  readonly status: number;
  readonly errorComment: string | undefined;
}

export interface ReceivedOnAssociation extends ReceivedReport {
  readonly via: 'same-association' | 'new-association';
}

export function connect(target: ScuTarget): Promise<OpenAssociation> {
  return openAssociation({
    host: target.host,
    port: target.port,
    callingAeTitle: target.callingAeTitle,
    calledAeTitle: target.calledAeTitle,
    timeoutMs: target.timeoutMs,
    ...(target.tls ? { tls: target.tls } : {}),
    contexts: [
      { abstractSyntax: STORAGE_COMMITMENT_SOP_CLASS, transferSyntaxes: target.transferSyntaxes ?? [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN] },
      { abstractSyntax: VERIFICATION_SOP_CLASS, transferSyntaxes: [IMPLICIT_VR_LITTLE_ENDIAN] },
    ],
  });
}

/** Sends one N-ACTION on an open association and waits for its response. */
export function sendNAction(open: OpenAssociation, spec: NActionSpec, timeoutMs: number): Promise<NActionResult> {
  const ts = acceptedCommitmentTransferSyntax(open.network) ?? IMPLICIT_VR_LITTLE_ENDIAN;
  const request = new requests.NActionRequest(
    spec.sopClassUid ?? STORAGE_COMMITMENT_SOP_CLASS,
    spec.sopInstanceUid ?? STORAGE_COMMITMENT_SOP_INSTANCE,
    spec.actionTypeId ?? ACTION_TYPE_REQUEST_COMMITMENT,
  );
  if (spec.elements) request.setDataset(new Dataset(spec.elements, ts));
  else if (spec.references && spec.transactionUid) {
    // Our linear writer: dcmjs needs ~45 s to encode 100,000 references.
    request.setDataset(new PreEncodedDataset(encodeCommitmentDataset({ transactionUid: spec.transactionUid, retrieveAeTitle: undefined, referenced: spec.references, failed: [] }, ts), ts));
  }
  pruneWhenDone(open.network, request);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no N-ACTION-RSP within ${timeoutMs} ms`)), timeoutMs);
    open.network.once('close', () => reject(new Error('association closed before the N-ACTION-RSP')));
    request.on('response', (response: InstanceType<typeof responses.NActionResponse>) => {
      clearTimeout(timer);
      resolve({ status: response.getStatus(), errorComment: response.getErrorComment() || undefined });
    });
    open.network.sendRequests(request);
  });
}

/** Sends a C-ECHO and resolves with its status. */
export function echo(open: OpenAssociation, timeoutMs: number): Promise<number> {
  const request = new requests.CEchoRequest();
  pruneWhenDone(open.network, request);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no C-ECHO-RSP within ${timeoutMs} ms`)), timeoutMs);
    request.on('response', (response: InstanceType<typeof responses.CEchoResponse>) => {
      clearTimeout(timer);
      resolve(response.getStatus());
    });
    open.network.sendRequests(request);
  });
}

/** Answers N-EVENT-REPORTs arriving on this (SCU-opened) association and hands them to `onReport`. */
export function acceptReportsOn(open: OpenAssociation, onReport: (report: ReceivedOnAssociation) => void): void {
  open.network.on('nEventReportRequest', (request: NEventReportRequest, callback: (response: InstanceType<typeof responses.NEventReportResponse>) => void) => {
    const response = responses.NEventReportResponse.fromRequest(request);
    try {
      const report = parseEventReport(request.getEventTypeId(), commitmentElements(request.getDataset()) ?? {});
      response.setStatus(0);
      callback(response);
      onReport({ ...report, via: 'same-association' });
    } catch (error) {
      response.setStatus(0x0115);
      response.setErrorComment((error as Error).message.slice(0, 64));
      callback(response);
    }
  });
}

export interface CommitmentOutcome {
  readonly transactionUid: string;
  readonly nAction: NActionResult;
  readonly report: ReceivedOnAssociation | undefined;
  /**
   * Reports for other Transaction UIDs that reached us meanwhile (say, an earlier run's, retried by the
   * SCP). We acknowledged them, so the SCP will not send them again: show them, never as our result.
   */
  readonly otherReports: readonly ReceivedOnAssociation[];
  readonly elapsedMs: number;
  /** How long we really waited for the report: from the N-ACTION-RSP until it came or we gave up. */
  readonly waitedMs: number;
}

/**
 * Full round trip: N-ACTION, then wait up to `reportTimeoutMs` for the report on this association (kept
 * open `keepOpenMs` at most) or, after it is released, through `receiver`.
 */
export async function requestCommitment(
  target: ScuTarget,
  references: readonly SopReference[],
  options: { transactionUid?: string; keepOpenMs: number; reportTimeoutMs: number; receiver?: ReportReceiver },
): Promise<CommitmentOutcome> {
  const started = performance.now();
  const transactionUid = options.transactionUid ?? Dataset.generateDerivedUid();
  const receivedBefore = options.receiver?.reports.length ?? 0;
  const open = await connect(target);
  let sameAssociation: ReceivedOnAssociation | undefined;
  const otherReports: ReceivedOnAssociation[] = [];
  let wake: (() => void) | undefined;
  acceptReportsOn(open, (report) => {
    if (report.transactionUid === transactionUid) {
      sameAssociation = report;
      wake?.();
    } else otherReports.push(report);
  });
  let nAction: NActionResult;
  try {
    nAction = await sendNAction(open, { transactionUid, references }, target.timeoutMs);
  } catch (error) {
    open.abort();
    throw error;
  }
  const answeredAt = performance.now();
  if (nAction.status !== 0) {
    await open.release();
    return { transactionUid, nAction, report: undefined, otherReports, elapsedMs: performance.now() - started, waitedMs: 0 };
  }
  if (options.keepOpenMs > 0 && !sameAssociation) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, options.keepOpenMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  await open.release();
  let report: ReceivedOnAssociation | undefined = sameAssociation;
  if (!report && options.receiver) {
    const remaining = Math.max(0, options.reportTimeoutMs - (performance.now() - started));
    report = await options.receiver.waitFor(transactionUid, remaining).catch(() => undefined);
  }
  // Only what reached this receiver during this call: tests share one receiver between requests.
  if (options.receiver) otherReports.push(...options.receiver.reports.slice(receivedBefore).filter((r) => r.transactionUid !== transactionUid));
  const ended = performance.now();
  return { transactionUid, nAction, report, otherReports, elapsedMs: ended - started, waitedMs: ended - answeredAt };
}
