/**
 * The Storage Commitment SCP, one instance per incoming connection: a small handler per DIMSE message,
 * each returning a status (the pynetdicom way). What happens to an N-ACTION starts in nActionRequest.
 *
 * Around the handlers sits what keeps one connection from hurting the others:
 * - every byte passes the PDU guard before dcmjs-dimse reads it; the A-ASSOCIATE-RQ is read by our strict
 *   reader (associate-rq.ts) and never by dcmjs-dimse;
 * - every handler runs inside `safely`: an exception ends this association with an A-ABORT and a log line,
 *   never the process;
 * - timers (PS3.8 ARTIM, idle, stalled message, maximum lifetime) are checked by the listener's sweep;
 * - the bytes of an unfinished message count against a shared budget; over budget, we stop reading.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { parseCommitmentRequest } from '../commitment/request.js';
import { DimseStatus, hex16, STORAGE_COMMITMENT_SOP_CLASS, type CommitmentRequest } from '../commitment/types.js';
import type { Peer } from '../peers/peer-directory.js';
import { DICOM_APPLICATION_CONTEXT, parseAssociateRq } from './associate-rq.js';
import type { BufferBudget } from './buffer-budget.js';
import { readCommitmentDataset } from './dataset-reader.js';
import {
  constants,
  DEFER_PARSING,
  installAssociation,
  internals,
  markConnected,
  requests,
  responses,
  Scp,
  sendAssociationAccept,
  takeOverReceiving,
  type CEchoRequest,
  type NActionRequest,
  type NetworkOptions,
  type NEventReportRequest,
} from './dimse.js';
import { acceptedCommitmentTransferSyntax, DeliveryError, sendEventReport } from './event-report.js';
import type { CommitmentIntake, IntakeAnswer, ReportChannel } from '../transactions/intake.js';

// What the N-ACTION handler hands over is the application layer's interface (transactions/intake.ts).
export type { CommitmentIntake, IntakeAnswer, ModalityAssociation, ReportChannel, RequestOrigin } from '../transactions/intake.js';
import { answerPresentationContexts, decideAssociation, type AcceptancePolicy, type RejectCode } from './negotiation.js';
import { limitsFor, PduGuard, type GuardStep } from './pdu-guard.js';
import { collectGarbage } from '../util/collect-garbage.js';

const { AbortReason, AbortSource, RejectResult, RejectSource, RejectReason } = constants;

/** The modality's own association, usable for the report while it stays open. */
/** See ReportChannel.stillOpen. */
const RELEASE_GRACE_MS = 150;
/** After an A-ASSOCIATE-RJ or A-ABORT, how long the peer has to close before we do (PS3.8 ARTIM). */
const CLOSE_GRACE_MS = 1000;
/** About 40,000 references: a request this large leaves enough garbage to be worth a full collection. */
const LARGE_MESSAGE_BYTES = 8 * 1024 * 1024;

export interface ConnectionTimers {
  /** PS3.8 ARTIM: a complete A-ASSOCIATE-RQ must arrive within this time of the connection. */
  readonly artimMs: number;
  /** An association with nothing in flight is aborted after this long without a PDU. */
  readonly idleMs: number;
  /** A message begun and not finished is given up after this long without a PDU. */
  readonly stalledMs: number;
  /** No association lives longer than this. */
  readonly maxLifetimeMs: number;
}

/** Why a connection ended on our side: the label of stgcmt_dicom_connections_closed_total. */
export type CloseReason = 'artim' | 'idle' | 'stalled' | 'lifetime' | 'protocol' | 'handler-error' | 'rejected' | 'evicted' | 'released' | 'shutdown';

export interface ScpContext {
  readonly logger: Logger;
  readonly intake: CommitmentIntake;
  readonly acceptance: AcceptancePolicy;
  readonly maxInstances: number;
  readonly maxPduLength: number;
  readonly timers: ConnectionTimers;
  readonly budget: BufferBudget<StorageCommitmentScp>;
  /** Asks the listener for an association slot (global and per-AE caps). */
  readonly claimAssociationSlot: (callingAeTitle: string) => { ok: true } | { ok: false; why: string; code: RejectCode };
  readonly onClosedByUs: (reason: CloseReason) => void;
  readonly onRejected: (code: RejectCode) => void;
  readonly onHandlerError: () => void;
}

type ConnectionState = 'awaiting-rq' | 'associated' | 'closing' | 'closed';

export class StorageCommitmentScp extends Scp {
  private peer: Peer | undefined;
  private state: ConnectionState = 'awaiting-rq';
  private readonly connectedAt = Date.now();
  private associatedAt = 0;
  private closingSince = 0;
  private lastActivityAt = Date.now();
  private lastResponseAt = 0;
  /** When the peer's last request (C-ECHO, N-ACTION) was handled: owed reports wait for a quiet spell. */
  private lastRequestAt = 0;
  /** Transactions whose report may still come on this association, and reports being sent on it. */
  private awaitingReports = 0;
  private sendingReports = 0;
  /** The last report sent on this association, which the next one waits for. */
  private reportQueue: Promise<unknown> = Promise.resolve();
  /** Settles when the connection closes: a report still queued then gives up instead of waiting on. */
  private readonly ended: Promise<void>;
  private paused = false;
  private pausedSince = 0;
  /** The guard's step dcmjs-dimse is reading right now: its context and the data set the guard assembled. */
  private incoming: Extract<GuardStep, { kind: 'forward' }> | undefined;
  /** A message of LARGE_MESSAGE_BYTES or more was handled in this read: collect once it is garbage. */
  private tookLargeMessage = false;
  private readonly guard: PduGuard;
  private readonly receive: (bytes: Buffer) => void;
  private log: Logger;

  constructor(
    private readonly socket: Socket,
    options: NetworkOptions,
    private readonly context: ScpContext,
  ) {
    // Our linear reader parses the Action Information (see DEFER_PARSING), not dcmjs.
    super(socket, { ...options, datasetReadOptions: DEFER_PARSING });
    markConnected(this);
    this.log = context.logger.child({ remote: socket.remoteAddress });
    this.guard = new PduGuard(limitsFor(context.maxPduLength, context.maxInstances));
    this.receive = takeOverReceiving(this);
    socket.on('data', (chunk: Buffer) => this.safely('reading from the socket', () => this.onData(chunk)));
    this.ended = new Promise((resolve) =>
      socket.on('close', () => {
        this.state = 'closed';
        this.context.budget.release(this);
        resolve();
      }),
    );
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? 'unknown';
  }

  /**
   * Runs a handler so that nothing it throws can reach dcmjs-dimse's event emitter (whose promise nobody
   * awaits: an exception there is an unhandled rejection). The association is aborted and the fault logged.
   */
  private safely(what: string, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.context.onHandlerError();
      this.log.error({ err: error, callingAet: this.peer?.aeTitle, state: this.state }, `internal error while ${what}; aborting this association`);
      this.abortAndClose(AbortReason.NotSpecified, 'handler-error');
    }
  }

  /** Closing or closed: nothing more is read or answered. */
  private finished(): boolean {
    return this.state === 'closed' || this.state === 'closing';
  }

  private onData(chunk: Buffer): void {
    if (this.finished()) return;
    this.lastActivityAt = Date.now();
    this.process(this.guard.inspect(chunk));
    // Bytes sent right behind the A-ASSOCIATE-RQ wait for its answer; then they are read like any other.
    while (this.guard.holdsBytes && !this.finished()) this.process(this.guard.inspect(Buffer.alloc(0)));
    this.applyBudget();
    if (this.tookLargeMessage) {
      // Its bytes and parsed references are garbage now; without this, several large N-ACTIONs in a row
      // pile up a hundred MB of garbage each before V8 collects (measured: peak RSS 340 vs 420 MB for four
      // 200,000-instance requests at once).
      this.tookLargeMessage = false;
      collectGarbage();
    }
  }

  private process(steps: readonly GuardStep[]): void {
    for (const step of steps) {
      if (this.finished()) return;
      if (step.kind === 'forward') {
        // dcmjs-dimse reads it and calls our handler before returning; the handler takes the data set.
        this.incoming = step;
        if ((step.dataset?.length ?? 0) >= LARGE_MESSAGE_BYTES) this.tookLargeMessage = true;
        try {
          this.receive(step.bytes);
        } finally {
          this.incoming = undefined;
        }
      } else if (step.kind === 'associate-rq') {
        this.onAssociateRq(step.body);
      } else {
        this.log.warn({ problem: step.why, callingAet: this.peer?.aeTitle }, 'refusing malformed or oversized PDU; aborting association');
        this.abortAndClose(step.abortReason, 'protocol');
        return;
      }
    }
  }

  /** Stops reading while this association's unfinished message takes the shared budget over its limit. */
  private applyBudget(): void {
    if (this.context.budget.update(this, this.guard.bytesHeld) || this.paused || this.state === 'closed') return;
    this.paused = true;
    this.pausedSince = Date.now();
    this.socket.pause();
    this.log.warn({ bytesHeld: this.guard.bytesHeld }, 'request buffer budget exhausted (STGCMT_MAX_BUFFERED_BYTES); pausing this association until others finish');
    void this.context.budget.waitForRoom(this).then(() => {
      this.paused = false;
      if (this.state !== 'closed') this.socket.resume();
    });
  }

  private onAssociateRq(body: Buffer): void {
    if (this.state !== 'awaiting-rq') return;
    const parsed = parseAssociateRq(body);
    if (!parsed.ok) {
      this.log.warn({ problem: parsed.why }, 'refusing malformed A-ASSOCIATE-RQ; aborting');
      this.abortAndClose(parsed.abortReason, 'protocol');
      return;
    }
    const rq = parsed.rq;
    const association = installAssociation(this, rq);
    this.log = this.context.logger.child({ remote: this.remoteAddress, callingAet: rq.callingAeTitle });
    if ((rq.protocolVersion & 0x0001) === 0) {
      this.reject(RejectResult.Permanent, RejectSource.ServiceProviderAcse, RejectReason.ProtocolVersionNotSupported, `protocol version ${rq.protocolVersion} not supported`, 'protocol-version');
      return;
    }
    if (rq.applicationContext !== DICOM_APPLICATION_CONTEXT) {
      this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.ApplicationContextNotSupported, `application context "${rq.applicationContext ?? ''}" is not DICOM's`, 'application-context');
      return;
    }
    const decision = decideAssociation(association, this.remoteAddress, this.context.acceptance);
    if (!decision.accept) {
      this.reject(decision.result, decision.source, decision.reason, decision.why, decision.code);
      return;
    }
    const slot = this.context.claimAssociationSlot(decision.peer.aeTitle);
    if (!slot.ok) {
      this.reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded, slot.why, slot.code);
      return;
    }
    const accepted = answerPresentationContexts(association);
    this.peer = decision.peer;
    sendAssociationAccept(this, this.context.maxPduLength);
    this.guard.associationAccepted(accepted);
    this.state = 'associated';
    this.associatedAt = Date.now();
    this.log.info({ acceptedContexts: accepted.length, proposedContexts: rq.contexts.length }, 'association accepted');
    if (acceptedCommitmentTransferSyntax(this) !== undefined) this.offerForOwedReports(decision.peer);
  }

  /**
   * Lets the service send reports still owed to this modality on its association (PS3.4 J.3.3 allows the
   * report on any association the SCU opens). Reports queued on this association later (its own N-ACTIONs')
   * wait behind a gate until those are done, so they go oldest first, one at a time.
   */
  private offerForOwedReports(peer: Peer): void {
    const offer = this.context.intake.associationOpened?.bind(this.context.intake);
    if (!offer) return;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    this.reportQueue = this.reportQueue.then(() => gate);
    // Counted like a report in flight: the idle timer leaves the association to its owed reports.
    this.awaitingReports++;
    let finished = false;
    const done = (): void => {
      if (finished) return;
      finished = true;
      this.awaitingReports = Math.max(0, this.awaitingReports - 1);
      open();
    };
    try {
      offer({ peer, channel: this.owedReportsChannel(), done });
    } catch (error) {
      // The owed reports are an extra: a store that cannot be read now must not cost the modality its association.
      done();
      this.log.error({ err: error }, 'could not look up the reports owed to this modality; serving the association without them');
    }
  }

  /** Sends right away (the gate holds the queue for us); open = quiet for RELEASE_GRACE_MS, see ModalityAssociation. */
  private owedReportsChannel(): ReportChannel {
    return {
      // Owed reports are sent one by one while the gate holds the association: nothing waits per report.
      release: () => undefined,
      isOpen: () => this.state === 'associated',
      stillOpen: async () => {
        for (;;) {
          if (this.state !== 'associated') return false;
          const quietFor = Date.now() - Math.max(this.lastRequestAt, this.lastResponseAt, this.associatedAt);
          if (!this.guard.inMessage && quietFor >= RELEASE_GRACE_MS) return true;
          await new Promise((resolve) => setTimeout(resolve, Math.max(10, RELEASE_GRACE_MS - quietFor)));
        }
      },
      send: async (report, baseTimeoutMs) => {
        this.sendingReports++;
        try {
          return await sendEventReport(this, report, baseTimeoutMs);
        } finally {
          this.sendingReports--;
          this.lastActivityAt = Date.now();
        }
      },
    };
  }

  private reject(result: number, source: number, reason: number, why: string, code: RejectCode): void {
    const association = internals(this).association;
    this.log.warn({ calledAet: association?.getCalledAeTitle(), why }, 'association rejected');
    this.context.onRejected(code);
    this.sendAssociationReject(result, source, reason);
    this.beginClosing('rejected');
  }

  /** PS3.8: after A-ASSOCIATE-RJ or A-ABORT the peer should close; if it does not, we do (ARTIM). */
  private beginClosing(reason: CloseReason): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    this.closingSince = Date.now();
    this.context.onClosedByUs(reason);
    this.socket.end();
  }

  /** Called about once a second by the listener. */
  checkTimers(now: number): void {
    const timers = this.context.timers;
    if (this.state === 'awaiting-rq' && now - this.connectedAt > timers.artimMs) {
      this.log.info({ waitedMs: now - this.connectedAt }, 'no A-ASSOCIATE-RQ within STGCMT_ARTIM_TIMEOUT; closing');
      this.destroy('artim');
    } else if (this.state === 'closing' && now - this.closingSince > CLOSE_GRACE_MS) {
      this.socket.destroy();
    } else if (this.state === 'associated') {
      if (now - this.associatedAt > timers.maxLifetimeMs) {
        this.log.warn({ lifetimeMs: now - this.associatedAt }, 'association reached STGCMT_ASSOCIATION_MAX_LIFETIME; aborting');
        this.abortAndClose(AbortReason.NotSpecified, 'lifetime');
      } else if (this.paused && now - this.pausedSince > timers.stalledMs) {
        // A paused socket is not read, so a peer that went away is not noticed: give the budget back.
        this.log.warn({ bytesHeld: this.guard.bytesHeld }, 'association paused by the buffer budget past STGCMT_DIMSE_TIMEOUT; aborting');
        this.abortAndClose(AbortReason.NotSpecified, 'stalled');
      } else if (this.guard.inMessage && !this.paused && now - this.lastActivityAt > timers.stalledMs) {
        this.log.warn({ bytesHeld: this.guard.bytesHeld }, 'unfinished DIMSE message stalled past STGCMT_DIMSE_TIMEOUT; aborting');
        this.abortAndClose(AbortReason.NotSpecified, 'stalled');
      } else if (!this.guard.inMessage && this.awaitingReports === 0 && this.sendingReports === 0 && now - this.lastActivityAt > timers.idleMs) {
        this.log.info({ idleMs: now - this.lastActivityAt }, 'association idle past STGCMT_IDLE_TIMEOUT; aborting');
        this.abortAndClose(AbortReason.NotSpecified, 'idle');
      }
    }
  }

  /** Closes at once without an A-ABORT (no association to abort yet: ARTIM, eviction). */
  destroy(reason: CloseReason): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.context.onClosedByUs(reason);
    this.socket.destroy();
  }

  override associationReleaseRequested(): void {
    this.safely('answering A-RELEASE-RQ', () => {
      this.sendAssociationReleaseResponse();
      this.beginClosing('released');
    });
  }

  override abort(): void {
    this.safely('handling A-ABORT', () => {
      this.log.info('association aborted by peer');
      this.state = 'closed';
      this.socket.destroy();
    });
  }

  override cEchoRequest(request: CEchoRequest, callback: (response: InstanceType<typeof responses.CEchoResponse>) => void): void {
    this.safely('answering C-ECHO', () => {
      const response = responses.CEchoResponse.fromRequest(request);
      response.setStatus(constants.Status.Success);
      callback(response);
      this.lastActivityAt = Date.now();
      this.lastRequestAt = this.lastActivityAt;
    });
  }

  override nActionRequest(request: NActionRequest, callback: (response: InstanceType<typeof responses.NActionResponse>) => void): void {
    // Counted like a report in flight while the request is recorded: the idle timer leaves it alone.
    this.awaitingReports++;
    let answered: Promise<IntakeAnswer> | undefined;
    this.safely('handling N-ACTION', () => {
      answered = this.answerNAction(request);
    });
    void answered
      ?.then((answer) => this.respondToNAction(request, answer, callback))
      .finally(() => {
        this.awaitingReports = Math.max(0, this.awaitingReports - 1);
      });
    if (!answered) this.awaitingReports = Math.max(0, this.awaitingReports - 1);
  }

  private respondToNAction(request: NActionRequest, answer: IntakeAnswer, callback: (response: InstanceType<typeof responses.NActionResponse>) => void): void {
    this.safely('answering N-ACTION', () => {
      if (this.finished()) {
        this.log.info({ status: hex16(answer.status) }, 'association closed before the N-ACTION-RSP could be sent');
        if (answer.afterResponse) answer.afterResponse();
        return;
      }
      const response = responses.NActionResponse.fromRequest(request);
      response.setStatus(answer.status);
      if (answer.comment) response.setErrorComment(answer.comment);
      callback(response);
      this.lastResponseAt = Date.now();
      this.lastActivityAt = this.lastResponseAt;
      this.lastRequestAt = this.lastResponseAt;
      if (answer.afterResponse) {
        this.awaitingReports++;
        answer.afterResponse();
      }
    });
  }

  /**
   * The N-ACTION handler proper: parse (core), record (intake), say what to answer. Everything it needs
   * from the message is read before its first await (dcmjs-dimse goes on reading the socket meanwhile).
   */
  private answerNAction(request: NActionRequest): Promise<IntakeAnswer> {
    const parsed = this.parseNAction(request);
    if (!('request' in parsed)) return Promise.resolve(parsed);
    const { peer, association } = parsed;
    return this.context.intake
      .receive(parsed.request, {
        callingAeTitle: peer.aeTitle,
        calledAeTitle: association.getCalledAeTitle().trim(),
        remoteAddress: this.remoteAddress,
        peer,
        channel: this.reportChannel(),
      })
      .catch((error: unknown): IntakeAnswer => {
        // Not recorded means not promised: answer failure so the modality keeps its images and asks again.
        this.log.error({ err: error, transactionUid: parsed.request.transactionUid }, 'could not record N-ACTION');
        return { status: DimseStatus.ProcessingFailure, comment: 'Could not record the request' };
      });
  }

  /** Reads and checks an N-ACTION: the request to record, or the answer that refuses it. */
  private parseNAction(
    request: NActionRequest,
  ): IntakeAnswer | { readonly request: CommitmentRequest; readonly peer: Peer; readonly association: NonNullable<ReturnType<typeof internals>['association']> } {
    const peer = this.peer;
    const association = internals(this).association;
    if (!peer || !association) return { status: DimseStatus.ProcessingFailure };
    // The PDU dcmjs-dimse is reading right now ended this request's message (see process()).
    const contextId = this.incoming?.contextId;
    const bytes = this.incoming?.dataset;
    const context = contextId === undefined ? undefined : association.getPresentationContext(contextId);
    if (context?.getAbstractSyntaxUid() !== STORAGE_COMMITMENT_SOP_CLASS) {
      this.log.warn({ presentationContextId: contextId, abstractSyntax: context?.getAbstractSyntaxUid() }, 'N-ACTION refused: not sent on a Storage Commitment presentation context');
      return { status: DimseStatus.SopClassNotSupported, comment: 'N-ACTION only on the Storage Commitment context' };
    }
    let dataset: Record<string, unknown> | undefined;
    try {
      dataset = request.hasDataset() && bytes ? readCommitmentDataset(bytes, context.getAcceptedTransferSyntaxUid() ?? '') : undefined;
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, 'N-ACTION refused: unreadable Action Information');
      return { status: DimseStatus.InvalidArgumentValue, comment: 'Malformed Action Information' };
    }
    const parsed = parseCommitmentRequest(
      { sopClassUid: request.getRequestedSopClassUid(), sopInstanceUid: request.getRequestedSopInstanceUid(), actionTypeId: request.getActionTypeId(), dataset },
      { maxInstances: this.context.maxInstances },
    );
    if (!parsed.ok) {
      this.log.warn({ status: hex16(parsed.rejection.status), comment: parsed.rejection.comment }, 'N-ACTION refused');
      return { status: parsed.rejection.status, comment: parsed.rejection.comment };
    }
    return { request: parsed.request, peer, association };
  }

  /** This association as a way for one transaction's report; it counts as in flight until used or given up. */
  private reportChannel(): ReportChannel {
    let waiting = true;
    const done = (): void => {
      if (!waiting) return;
      waiting = false;
      this.awaitingReports = Math.max(0, this.awaitingReports - 1);
    };
    return {
      isOpen: () => this.state === 'associated',
      stillOpen: async () => {
        const wait = this.lastResponseAt + RELEASE_GRACE_MS - Date.now();
        if (this.state === 'associated' && wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const open = this.state === 'associated';
        if (!open) done();
        return open;
      },
      release: done,
      send: async (report, baseTimeoutMs) => {
        done();
        this.sendingReports++;
        // One outstanding operation per direction (no asynchronous operations window is negotiated): a
        // report waits for the previous one's N-EVENT-REPORT-RSP on this association, and for the owed
        // reports ahead of it; if the association ends meanwhile, it fails at once rather than wait on.
        const previous = this.reportQueue;
        const sent = Promise.race([previous, this.ended]).then(() => {
          if (this.state !== 'associated') throw new DeliveryError('the association ended before the report could be sent on it');
          return sendEventReport(this, report, baseTimeoutMs);
        });
        this.reportQueue = sent.catch(() => undefined);
        try {
          return await sent;
        } finally {
          this.sendingReports--;
          this.lastActivityAt = Date.now();
        }
      },
    };
  }

  override nEventReportRequest(request: NEventReportRequest, callback: (response: InstanceType<typeof responses.NEventReportResponse>) => void): void {
    // We send event reports; we never receive them.
    this.safely('answering N-EVENT-REPORT', () => callback(unrecognized(responses.NEventReportResponse.fromRequest(request))));
  }

  // Operations we do not offer: answer them rather than leave the requestor waiting (dcmjs-dimse's Scp
  // would only log that the method is not implemented).
  override cStoreRequest(request: InstanceType<typeof requests.CStoreRequest>, callback: (response: InstanceType<typeof responses.CStoreResponse>) => void): void {
    this.safely('refusing C-STORE', () => callback(unrecognized(responses.CStoreResponse.fromRequest(request))));
  }
  override cFindRequest(request: InstanceType<typeof requests.CFindRequest>, callback: (answers: Array<InstanceType<typeof responses.CFindResponse>>) => void): void {
    this.safely('refusing C-FIND', () => callback([unrecognized(responses.CFindResponse.fromRequest(request))]));
  }
  override cMoveRequest(request: InstanceType<typeof requests.CMoveRequest>, callback: (answers: Array<InstanceType<typeof responses.CMoveResponse>>) => void): void {
    this.safely('refusing C-MOVE', () => callback([unrecognized(responses.CMoveResponse.fromRequest(request))]));
  }
  override cGetRequest(request: InstanceType<typeof requests.CGetRequest>, callback: (answers: Array<InstanceType<typeof responses.CGetResponse>>) => void): void {
    this.safely('refusing C-GET', () => callback([unrecognized(responses.CGetResponse.fromRequest(request))]));
  }
  override nCreateRequest(request: InstanceType<typeof requests.NCreateRequest>, callback: (response: InstanceType<typeof responses.NCreateResponse>) => void): void {
    this.safely('refusing N-CREATE', () => callback(unrecognized(responses.NCreateResponse.fromRequest(request))));
  }
  override nDeleteRequest(request: InstanceType<typeof requests.NDeleteRequest>, callback: (response: InstanceType<typeof responses.NDeleteResponse>) => void): void {
    this.safely('refusing N-DELETE', () => callback(unrecognized(responses.NDeleteResponse.fromRequest(request))));
  }
  override nGetRequest(request: InstanceType<typeof requests.NGetRequest>, callback: (response: InstanceType<typeof responses.NGetResponse>) => void): void {
    this.safely('refusing N-GET', () => callback(unrecognized(responses.NGetResponse.fromRequest(request))));
  }
  override nSetRequest(request: InstanceType<typeof requests.NSetRequest>, callback: (response: InstanceType<typeof responses.NSetResponse>) => void): void {
    this.safely('refusing N-SET', () => callback(unrecognized(responses.NSetResponse.fromRequest(request))));
  }

  /** A-ABORT (service provider) and close: on a protocol fault, a timer, or at shutdown. */
  abortAndClose(reason: number = AbortReason.NotSpecified, why: CloseReason = 'shutdown'): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.context.onClosedByUs(why);
    if (this.socket.destroyed) return;
    // Written by hand: dcmjs-dimse sends an A-ABORT only once it holds an association object.
    this.socket.end(abortPdu(AbortSource.ServiceProvider, reason));
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }
}

/** An A-ABORT PDU (PS3.8 9.3.8): type 7, length 4, two reserved bytes, source, reason. */
function abortPdu(source: number, reason: number): Buffer {
  return Buffer.from([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, source, reason]);
}

function unrecognized<R extends { setStatus(status: number): void }>(response: R): R {
  response.setStatus(DimseStatus.UnrecognizedOperation);
  return response;
}

