/**
 * Coordinates a transaction's life: record (before the N-ACTION-RSP), verify against Orthanc, deliver the
 * report, retry, expire. Each transaction is worked on by at most one verification and one delivery at a
 * time; everything it needs to resume is in the store, so a restart simply calls resume().
 */
import type { Logger } from 'pino';
import { DimseStatus, hex16, type CommitmentRequest } from '../commitment/types.js';
import type { CommitmentIntake, IntakeAnswer, ReportChannel, RequestOrigin } from '../dicom/scp.js';
import type { Metrics } from '../metrics/metrics.js';
import type { TransactionStore } from '../store/transaction-store.js';
import { deliverTransaction, type DelivererDeps } from './deliverer.js';
import { verifyTransaction, type VerifierDeps } from './verifier.js';

export interface ServiceTimings {
  readonly arrivalWaitMs: number;
  readonly verifyTimeoutMs: number;
  readonly reportTtlMs: number;
  readonly retentionMs: number;
}

export class CommitmentService implements CommitmentIntake {
  /** The modality's own association per transaction, while it may still carry the report. */
  private readonly channels = new Map<number, ReportChannel>();
  private readonly verifying = new Map<number, Promise<void>>();
  private readonly delivering = new Map<number, Promise<void>>();
  /** Transactions waiting for late arrivals or for Orthanc, with when to look again at the latest. */
  private readonly waiting = new Map<number, { waitingFor: 'arrival' | 'orthanc'; recheckAt: number }>();
  private recheckTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly store: TransactionStore,
    private readonly verifierDeps: VerifierDeps,
    private readonly delivererDeps: DelivererDeps,
    private readonly timings: ServiceTimings,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {}

  private get now(): number {
    return this.verifierDeps.now();
  }

  receive(request: CommitmentRequest, origin: RequestOrigin): IntakeAnswer {
    const outcome = this.store.recordRequest({
      request,
      callingAeTitle: origin.callingAeTitle,
      calledAeTitle: origin.calledAeTitle,
      remoteAddress: origin.remoteAddress,
      now: this.now,
      arrivalWaitMs: this.timings.arrivalWaitMs,
      verifyTimeoutMs: this.timings.verifyTimeoutMs,
      ttlMs: this.timings.reportTtlMs,
    });
    this.channels.set(outcome.id, origin.channel);
    this.metrics.transactions.inc({ outcome: outcome.kind === 'created' ? 'received' : 'repeated' });
    this.logger.info(
      { transactionUid: request.transactionUid, callingAet: origin.callingAeTitle, instances: request.references.length, record: outcome.kind, ...(outcome.kind === 'conflicting' ? { conflicting: outcome.conflicting } : {}) },
      'N-ACTION recorded',
    );
    return { status: DimseStatus.Success, afterResponse: () => this.process(outcome.id) };
  }

  /** Verify if needed, then deliver if due. Safe to call any number of times for the same transaction. */
  process(id: number): void {
    if (this.stopped) return;
    void this.verify(id).then(() => this.deliver(id));
  }

  /**
   * At most one run of `work` per transaction at a time; callers in between share it. The work starts on
   * a later tick, so the map entry always exists before the work can finish and remove it.
   */
  private singleFlight(runs: Map<number, Promise<void>>, id: number, what: string, work: () => Promise<void>): Promise<void> {
    const running = runs.get(id);
    if (running) return running;
    const run = Promise.resolve()
      .then(work)
      .catch((error: unknown) => this.logger.error({ err: error, transactionId: id }, `${what} failed unexpectedly; will retry`))
      .finally(() => runs.delete(id));
    runs.set(id, run);
    return run;
  }

  private verify(id: number): Promise<void> {
    return this.singleFlight(this.verifying, id, 'verification', async () => {
      const progress = await verifyTransaction(this.verifierDeps, id);
      if (progress.done) {
        this.waiting.delete(id);
        if (progress.verifiedNow) this.onVerified(id);
      } else {
        this.waiting.set(id, { waitingFor: progress.waitingFor, recheckAt: progress.recheckAt });
        this.scheduleRecheck();
      }
    });
  }

  private onVerified(id: number): void {
    const record = this.store.get(id);
    if (!record || record.verifiedAt === null) return;
    this.metrics.verificationSeconds.observe((record.verifiedAt - record.receivedAt) / 1000);
    this.metrics.transactions.inc({ outcome: record.failedCount ? 'failed' : 'committed' });
    const log = this.logger.child({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle });
    log.info({ committed: record.committedCount, failed: record.failedCount, eventTypeId: record.eventTypeId, verifyMs: record.verifiedAt - record.receivedAt }, 'transaction verified');
    for (const { outcome, failureReason, count } of this.store.outcomeCounts(id)) {
      this.metrics.instances.inc({ result: outcome === 'committed' ? 'committed' : hex16(failureReason ?? 0) }, count);
    }
  }

  private deliver(id: number): Promise<void> {
    return this.singleFlight(this.delivering, id, 'delivery', async () => {
      const record = this.store.get(id);
      if (!record) return;
      const due = record.state === 'VERIFIED' || (record.state === 'DELIVERY_RETRY' && (record.nextAttemptAt ?? 0) <= this.now);
      if (!due) return;
      const result = await deliverTransaction(this.delivererDeps, record, this.channels.get(id));
      if (result === 'delivered') this.channels.delete(id);
    });
  }

  /** Wakes the waiting transactions whose instances may have arrived (the changes feed saw new ones). */
  onNewInstances(): void {
    for (const [id, wait] of this.waiting) if (wait.waitingFor === 'arrival') this.process(id);
  }

  /** One timer for the earliest recheck, so a window's end is judged on time rather than at the next tick. */
  private scheduleRecheck(): void {
    if (this.stopped) return;
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    let earliest = Infinity;
    for (const wait of this.waiting.values()) earliest = Math.min(earliest, wait.recheckAt);
    if (earliest === Infinity) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = undefined;
      const now = this.now;
      for (const [id, wait] of this.waiting) if (wait.recheckAt <= now) this.process(id);
      this.scheduleRecheck();
    }, Math.max(0, earliest - this.now) + 5);
    this.recheckTimer.unref();
  }

  /** Everything the store says has work left: used at start-up and by the periodic job. */
  resume(): void {
    for (const id of this.store.receivedIds()) if (!this.waiting.has(id)) this.process(id);
    for (const id of this.store.dueForDelivery(this.now)) this.process(id);
  }

  expireOverdue(): void {
    for (const record of this.store.expireOverdue(this.now)) {
      this.channels.delete(record.id);
      this.metrics.transactions.inc({ outcome: 'expired' });
      this.logger.error(
        { transactionUid: record.transactionUid, callingAet: record.callingAeTitle, attempts: record.deliveryAttempts, lastError: record.lastError },
        'REPORT EXPIRED: the modality never received this storage commitment report; it must not delete its images on our word',
      );
    }
  }

  purgeFinished(): number {
    return this.store.purgeFinished(this.now - this.timings.retentionMs);
  }

  /** Operator's "send again": back to VERIFIED, then delivered at once. */
  redeliver(id: number): boolean {
    const record = this.store.redeliver(id, this.now, this.timings.reportTtlMs);
    if (!record) return false;
    this.process(id);
    return true;
  }

  /** Stops scheduling new work and waits for what is in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    await Promise.allSettled([...this.verifying.values(), ...this.delivering.values()]);
  }
}
