/**
 * The Storage Commitment SCP, one instance per incoming connection: a small handler per DIMSE message,
 * each returning a status (the pynetdicom way). What happens to an N-ACTION starts in nActionRequest.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { parseCommitmentRequest } from '../commitment/request.js';
import type { EventReport } from '../commitment/report.js';
import { DimseStatus, hex16, type CommitmentRequest, type DimseStatusCode } from '../commitment/types.js';
import type { Peer } from '../peers/peer-directory.js';
import {
  constants,
  DEFER_PARSING,
  internals,
  responses,
  Scp,
  type Association,
  type CEchoRequest,
  type NActionRequest,
  type NetworkOptions,
  type NEventReportRequest,
} from './dimse.js';
import { commitmentElements } from './dataset-reader.js';
import { sendEventReport } from './event-report.js';
import { answerPresentationContexts, decideAssociation, type AcceptancePolicy } from './negotiation.js';
import { limitsFor, PduGuard } from './pdu-guard.js';

/** The modality's own association, usable for the report while it stays open. */
export interface ReportChannel {
  /**
   * Whether the association is still open once the requestor had its chance to release it: an SCU that
   * means to release does so right after the N-ACTION-RSP (Orthanc: within a millisecond), and a report
   * sent then would cross its A-RELEASE-RQ. Waits out RELEASE_GRACE_MS after the response if needed.
   */
  stillOpen(): Promise<boolean>;
  /** Sends the report and resolves with the response status (timeout grows with the report's size). */
  send(report: EventReport, baseTimeoutMs: number): Promise<number>;
}

/** See ReportChannel.stillOpen. */
const RELEASE_GRACE_MS = 150;

export interface RequestOrigin {
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly remoteAddress: string;
  readonly peer: Peer;
  readonly channel: ReportChannel;
}

export interface IntakeAnswer {
  readonly status: DimseStatusCode;
  readonly comment?: string;
  /** Runs right after the N-ACTION-RSP is written: verification starts only then. */
  readonly afterResponse?: () => void;
}

/** Durably records a valid request (synchronously) and says what to answer. */
export interface CommitmentIntake {
  receive(request: CommitmentRequest, origin: RequestOrigin): IntakeAnswer;
}

export interface ScpContext {
  readonly logger: Logger;
  readonly intake: CommitmentIntake;
  readonly acceptance: Omit<AcceptancePolicy, 'overCapacity'>;
  readonly maxInstances: number;
  readonly maxPduLength: number;
}

export class StorageCommitmentScp extends Scp {
  private peer: Peer | undefined;
  private open = false;
  private lastResponseAt = 0;
  private readonly log: Logger;

  constructor(
    socket: Socket,
    options: NetworkOptions,
    private readonly context: ScpContext,
    private readonly overCapacity: boolean,
  ) {
    // Our linear reader parses the Action Information (see DEFER_PARSING), not dcmjs.
    super(socket, { ...options, datasetReadOptions: DEFER_PARSING });
    this.log = context.logger.child({ remote: socket.remoteAddress });
    const guard = new PduGuard(limitsFor(context.maxPduLength, context.maxInstances));
    // Runs before dcmjs-dimse's own reader, so an oversized PDU is refused before it is buffered.
    socket.prependListener('data', (chunk: Buffer) => {
      const problem = guard.inspect(chunk);
      if (!problem) return;
      this.log.warn({ problem }, 'refusing malformed or oversized PDU; aborting association');
      this.abortAndClose(constants.AbortReason.InvalidPduParameter);
    });
    this.on('close', () => {
      this.open = false;
    });
  }

  get remoteAddress(): string {
    return internals(this).socket.remoteAddress ?? 'unknown';
  }

  override associationRequested(association: Association): void {
    const decision = decideAssociation(association, this.remoteAddress, { ...this.context.acceptance, overCapacity: this.overCapacity });
    const calling = association.getCallingAeTitle().trim();
    if (!decision.accept) {
      this.log.warn({ callingAet: calling, calledAet: association.getCalledAeTitle().trim(), why: decision.why }, 'association rejected');
      this.sendAssociationReject(decision.result, decision.source, decision.reason);
      internals(this).socket.end();
      return;
    }
    const accepted = answerPresentationContexts(association);
    this.peer = decision.peer;
    this.open = accepted > 0;
    this.log.info({ callingAet: calling, acceptedContexts: accepted }, 'association accepted');
    this.sendAssociationAccept();
  }

  override associationReleaseRequested(): void {
    this.open = false;
    this.sendAssociationReleaseResponse();
  }

  override abort(): void {
    this.open = false;
    this.log.info({ callingAet: this.peer?.aeTitle }, 'association aborted by peer');
    internals(this).socket.destroy();
  }

  override cEchoRequest(request: CEchoRequest, callback: (response: InstanceType<typeof responses.CEchoResponse>) => void): void {
    const response = responses.CEchoResponse.fromRequest(request);
    response.setStatus(constants.Status.Success);
    callback(response);
  }

  override nActionRequest(request: NActionRequest, callback: (response: InstanceType<typeof responses.NActionResponse>) => void): void {
    const response = responses.NActionResponse.fromRequest(request);
    const peer = this.peer;
    const association = internals(this).association;
    if (!peer || !association) {
      response.setStatus(DimseStatus.ProcessingFailure);
      callback(response);
      return;
    }
    let dataset: Record<string, unknown> | undefined;
    try {
      dataset = commitmentElements(request.getDataset());
    } catch (error) {
      this.log.warn({ callingAet: peer.aeTitle, err: (error as Error).message }, 'N-ACTION refused: unreadable Action Information');
      response.setStatus(DimseStatus.InvalidArgumentValue);
      response.setErrorComment('Malformed Action Information');
      callback(response);
      return;
    }
    const parsed = parseCommitmentRequest(
      {
        sopClassUid: request.getRequestedSopClassUid(),
        sopInstanceUid: request.getRequestedSopInstanceUid(),
        actionTypeId: request.getActionTypeId(),
        dataset,
      },
      { maxInstances: this.context.maxInstances },
    );
    if (!parsed.ok) {
      this.log.warn({ callingAet: peer.aeTitle, status: hex16(parsed.rejection.status), comment: parsed.rejection.comment }, 'N-ACTION refused');
      response.setStatus(parsed.rejection.status);
      response.setErrorComment(parsed.rejection.comment);
      callback(response);
      return;
    }

    let answer: IntakeAnswer;
    try {
      answer = this.context.intake.receive(parsed.request, {
        callingAeTitle: peer.aeTitle,
        calledAeTitle: association.getCalledAeTitle().trim(),
        remoteAddress: this.remoteAddress,
        peer,
        channel: { stillOpen: () => this.stillOpen(), send: (report, baseTimeoutMs) => sendEventReport(this, report, baseTimeoutMs) },
      });
    } catch (error) {
      // Not recorded means not promised: answer failure so the modality keeps its images and asks again.
      this.log.error({ err: error, callingAet: peer.aeTitle, transactionUid: parsed.request.transactionUid }, 'could not record N-ACTION');
      answer = { status: DimseStatus.ProcessingFailure, comment: 'Could not record the request' };
    }
    response.setStatus(answer.status);
    if (answer.comment) response.setErrorComment(answer.comment);
    callback(response);
    this.lastResponseAt = Date.now();
    answer.afterResponse?.();
  }

  private async stillOpen(): Promise<boolean> {
    const wait = this.lastResponseAt + RELEASE_GRACE_MS - Date.now();
    if (this.open && wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    return this.open;
  }

  override nEventReportRequest(request: NEventReportRequest, callback: (response: InstanceType<typeof responses.NEventReportResponse>) => void): void {
    // We send event reports; we never receive them.
    const response = responses.NEventReportResponse.fromRequest(request);
    response.setStatus(constants.Status.UnrecognizedOperation);
    callback(response);
  }

  /** A-ABORT (service provider) and close: on a protocol fault, or at shutdown (reason not specified). */
  abortAndClose(reason: number = constants.AbortReason.NotSpecified): void {
    this.open = false;
    const socket = internals(this).socket;
    if (socket.destroyed) return;
    try {
      this.sendAbort(constants.AbortSource.ServiceProvider, reason);
    } finally {
      socket.destroy();
    }
  }
}
