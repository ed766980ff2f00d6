/**
 * Sends one N-EVENT-REPORT on an established association, ours (report-sender) or the modality's own
 * (scp), and waits for its N-EVENT-REPORT-RSP.
 */
import type { EventReport } from '../commitment/report.js';
import { STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE } from '../commitment/types.js';
import { encodeEventReport } from './dataset-writer.js';
import { constants, internals, PreEncodedDataset, pruneWhenDone, requests, type NEventReportResponse, type Scp } from './dimse.js';
import { DeliveryError, type OutgoingReport } from '../transactions/report-transport.js';

// The delivery vocabulary belongs to the application layer; re-exported here for the DICOM shell's modules.
export {
  DeliveryConfigurationError,
  DeliveryError,
  DeliveryStatusError,
  deliveryErrorCategory,
  isDeliveredStatus,
  type ConfigurationErrorKind,
  type DeliveryErrorCategory,
  type OutgoingReport,
} from '../transactions/report-transport.js';

/** An OutgoingReport whose content `build` makes when it is needed. */
export function lazyReport(instanceCount: number, build: () => EventReport): OutgoingReport {
  return {
    instanceCount,
    encode(transferSyntaxUid) {
      const report = build();
      return { eventTypeId: report.eventTypeId, bytes: encodeEventReport(report, transferSyntaxUid) };
    },
  };
}

/** An OutgoingReport for a report already in memory. */
export function readyReport(report: EventReport): OutgoingReport {
  return lazyReport(report.referenced.length + report.failed.length, () => report);
}

/**
 * How long to wait for the N-EVENT-REPORT-RSP: the base timeout plus 1 ms per listed instance, because a
 * receiver's work grows with the report (Orthanc 1.10.1 needs 45-90 s to answer a 100,000-item report,
 * and a timed-out attempt that the receiver did process would be sent again and again).
 */
export function responseTimeoutFor(report: Pick<OutgoingReport, 'instanceCount'>, baseMs: number): number {
  return baseMs + report.instanceCount;
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
export function sendEventReport(network: Scp, report: OutgoingReport, baseTimeoutMs: number): Promise<number> {
  const timeoutMs = responseTimeoutFor(report, baseTimeoutMs);
  const transferSyntax = acceptedCommitmentTransferSyntax(network);
  if (!transferSyntax) return Promise.reject(new DeliveryError('no accepted Storage Commitment presentation context'));
  const { eventTypeId, bytes } = report.encode(transferSyntax);
  const request = new requests.NEventReportRequest(STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE, eventTypeId);
  request.setDataset(new PreEncodedDataset(bytes, transferSyntax));
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
