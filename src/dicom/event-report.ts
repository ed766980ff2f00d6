/**
 * Sends one N-EVENT-REPORT on an established association, ours (report-sender) or the modality's own
 * (scp), and waits for its N-EVENT-REPORT-RSP.
 */
import type { EventReport } from '../commitment/report.js';
import { STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE } from '../commitment/types.js';
import { encodeEventReport } from './dataset-writer.js';
import { constants, internals, PreEncodedDataset, pruneWhenDone, requests, type NEventReportResponse, type Scp } from './dimse.js';

export class DeliveryError extends Error {}

/**
 * How long to wait for the N-EVENT-REPORT-RSP: the base timeout plus 1 ms per listed instance, because a
 * receiver's work grows with the report (Orthanc 1.10.1 needs 45-90 s to answer a 100,000-item report,
 * and a timed-out attempt that the receiver did process would be sent again and again).
 */
export function responseTimeoutFor(report: EventReport, baseMs: number): number {
  return baseMs + report.referenced.length + report.failed.length;
}

/** Status classes of PS3.7 C: Success and Warning both mean the peer took the report. */
export function isDeliveredStatus(status: number): boolean {
  return status === 0x0000 || status === 0x0001 || (status & 0xf000) === 0xb000;
}

/** The accepted transfer syntax of the Storage Commitment context, or undefined if none was accepted. */
export function acceptedCommitmentTransferSyntax(network: Scp): string | undefined {
  const association = internals(network).association;
  if (!association) return undefined;
  for (const { context } of association.getPresentationContexts()) {
    if (context.getAbstractSyntaxUid() === STORAGE_COMMITMENT_SOP_CLASS && context.getResult() === constants.PresentationContextResult.Accept) {
      return context.getAcceptedTransferSyntaxUid();
    }
  }
  return undefined;
}

/**
 * Resolves with the response status when the peer answers; rejects on timeout (`baseTimeoutMs` grown
 * with the report's size, see responseTimeoutFor), A-ABORT, or a closed connection. The caller decides
 * what a non-success status means.
 */
export function sendEventReport(network: Scp, report: EventReport, baseTimeoutMs: number): Promise<number> {
  const timeoutMs = responseTimeoutFor(report, baseTimeoutMs);
  const transferSyntax = acceptedCommitmentTransferSyntax(network);
  if (!transferSyntax) return Promise.reject(new DeliveryError('no accepted Storage Commitment presentation context'));
  const request = new requests.NEventReportRequest(STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE, report.eventTypeId);
  request.setDataset(new PreEncodedDataset(encodeEventReport(report, transferSyntax), transferSyntax));
  pruneWhenDone(network, request);

  return new Promise<number>((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      network.off('close', onClose);
      network.off('abort', onAbort);
      network.off('networkError', onError);
    };
    const fail = (message: string) => (): void => {
      cleanup();
      reject(new DeliveryError(message));
    };
    const onClose = fail('connection closed before the N-EVENT-REPORT-RSP');
    const onAbort = fail('peer aborted the association before the N-EVENT-REPORT-RSP');
    const onError = (error: Error): void => fail(`network error: ${error.message}`)();
    const timer = setTimeout(fail(`no N-EVENT-REPORT-RSP within ${timeoutMs} ms`), timeoutMs);
    network.on('close', onClose);
    network.on('abort', onAbort);
    network.on('networkError', onError);
    request.on('response', (response: NEventReportResponse) => {
      cleanup();
      resolve(response.getStatus());
    });
    network.sendRequests(request);
  });
}
