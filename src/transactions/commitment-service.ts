/**
 * Coordinates a transaction's life: record (before the N-ACTION-RSP), verify against Orthanc, deliver the
 * report, retry, expire. Each transaction is worked on by at most one verification and one delivery at a
 * time; everything it needs to resume is in the store, so a restart simply calls resume().
 */
import { Semaphore } from 'async-mutex';
import type { Logger } from 'pino';
import { isFinal } from '../commitment/lifecycle.js';
import { DimseStatus, hex16, type CommitmentRequest } from '../commitment/types.js';
import { judgeAtIntake } from '../commitment/verdict.js';
import type { CommitmentIntake, IntakeAnswer, ModalityAssociation, ReportChannel, RequestOrigin } from './intake.js';
import type { Metrics } from '../metrics/metrics.js';
import { retryDelay } from './backoff.js';
import { HeldClaim } from './held-claim.js';
import type { DeliveryAttemptRecord, TransactionRecord } from './records.js';
import { LeaseLostError, type Claim, type TransactionRepository } from './repository.js';
import { deliverOnModalityAssociation, deliverTransaction, UnrecordedAttemptError, type DelivererDeps } from './deliverer.js';
import { protectCommitted, type ProtectorDeps } from './protector.js';
import { startSearchIndexing, verifyTransaction, type VerifierDeps } from './verifier.js';

/**
 * A transaction set aside after a failure the store could not record (disk full, I/O error) or any other
 * unexpected one: nothing is tried again before `until`, so a broken store does not turn the once-a-second
 * resume job into a storm. `delivered`: the modality has the report; only recording it is left to do.
 */
interface Hold {
  readonly until: number;
  readonly strikes: number;
  readonly delivered?: { readonly attempt: DeliveryAttemptRecord } | undefined;
}

export interface ServiceTimings {
  readonly arrivalWaitMs: number;
  readonly verifyTimeoutMs: number;
  readonly reportTtlMs: number;
  readonly retentionMs: number;
  /**
   * Instances under verification at once, and separately instances in reports being delivered at once
   * (STGCMT_MAX_INSTANCES_IN_FLIGHT): what bounds memory when many large requests arrive together.
   * Requests are recorded and answered at once anyway; the rest waits its turn.
   */
  readonly maxInstancesInFlight: number;
}

export type RedeliveryOutcome =
  | { readonly kind: 'started'; readonly record: TransactionRecord }
  /** A delivery is already in flight or due: nothing new was started. */
  | { readonly kind: 'pending'; readonly record: TransactionRecord }
  /** Still being verified: the report follows by itself. */
  | { readonly kind: 'verifying'; readonly record: TransactionRecord }
  | { readonly kind: 'unknown' };

/** Transactions of each kind picked up per resume pass (the job runs every second). */
const RESUME_BATCH = 1000;

export class CommitmentService implements CommitmentIntake {
  /** The modality's own association per transaction, while it may still carry the report. */
  private readonly channels = new Map<number, ReportChannel>();
  private readonly verifying = new Map<number, Promise<void>>();
  private readonly delivering = new Map<number, Promise<void>>();
  /** Transactions waiting for late arrivals or for Orthanc, with when to look again at the latest. */
  private readonly waiting = new Map<number, { waitingFor: 'arrival' | 'orthanc'; recheckAt: number }>();
  /**
   * The claims of those waiting transactions, kept (and renewed) between rounds: other nodes leave them
   * alone rather than each asking Orthanc about them every second; if this node dies, they run out.
   */
  private readonly waitingClaims = new Map<number, HeldClaim>();
  /** Delivery claims taken with a verdict (see VerifierDeps.handOverTtlMs), for the delivery that follows. */
  private readonly handedOver = new Map<number, HeldClaim>();
  private readonly holds = new Map<number, Hold>();
  /**
   * Verified transactions of peers that cannot be called back (`callback: false`), by calling AE title:
   * the periodic pass leaves them alone until the modality opens an association (or its peer entry
   * changes), so they cost nothing while they wait.
   */
  private readonly awaitingModality = new Map<number, string>();
  /** Owed reports being sent per calling AE title: a second association of the same modality waits its turn. */
  private readonly owedRuns = new Map<string, Promise<void>>();
  /** Why a report is held back by STGCMT_PROTECT (the last failed protection), for the API. */
  private readonly protectionErrors = new Map<number, { readonly error: string; readonly at: number }>();
  /** Redeliveries asked for through the API, between their read and the start of the delivery. */
  private readonly reopening = new Set<number>();
  private recheckTimer: NodeJS.Timeout | undefined;
  private searchResumed = false;
  /** The claims of this node's previous run were dropped (first resume). */
  private claimsReset = false;
  /** A resume pass is running: the next tick of the job does not start another. */
  private resuming = false;
  private stopped = false;
  /** Instance budgets: one for verifications, one for reports being built and sent (see withinBudget). */
  private readonly verifyBudget: Semaphore;
  private readonly deliveryBudget: Semaphore;

  constructor(
    private readonly verifierDeps: VerifierDeps,
    private readonly delivererDeps: DelivererDeps,
    private readonly timings: ServiceTimings,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** STGCMT_PROTECT: set when what a report commits must be protected in Orthanc before it goes out. */
    private readonly protection?: ProtectorDeps,
  ) {
    this.verifyBudget = new Semaphore(timings.maxInstancesInFlight);
    this.deliveryBudget = new Semaphore(timings.maxInstancesInFlight);
  }

  /**
   * Runs heavy work on a transaction under an instance budget, weighted by its size (a huge one takes the
   * whole budget). Verification and delivery have separate budgets, so a modality slow to answer a big
   * report never holds up the verification of others.
   */
  private withinBudget<T>(budget: Semaphore, instanceCount: number, task: () => Promise<T>): Promise<T> {
    const weight = Math.max(1, Math.min(instanceCount, this.timings.maxInstancesInFlight));
    return budget.runExclusive(task, weight);
  }

  private get now(): number {
    return this.verifierDeps.now();
  }

  private get repo(): TransactionRepository {
    return this.delivererDeps.repo;
  }

  /** Claims a transaction for this node, renewed while the work runs (see HeldClaim). */
  private async claim(id: number, kind: Claim['kind']): Promise<HeldClaim | undefined> {
    const claim = await this.repo.claim(id, kind, this.delivererDeps.nodeId, this.now, this.delivererDeps.leaseTtlMs);
    return claim ? new HeldClaim(this.repo, claim, this.delivererDeps.leaseTtlMs, () => this.now, this.logger) : undefined;
  }

  /** Ends a claim: stops renewing it, and gives it up unless the last write did (a failure here is harmless). */
  private async letGo(held: HeldClaim): Promise<void> {
    held.stop();
    await this.repo.release(held.claim).catch((error: unknown) => this.logger.warn({ err: error instanceof Error ? error.message : String(error), transactionId: held.id }, 'could not release a claim; it runs out by itself'));
  }

  /** Another node took the transaction over while this one worked on it: its work and record win. */
  private lostTo(id: number, what: string, channel?: ReportChannel): void {
    // Only the channel this run used: a re-sent request may have brought a newer one meanwhile.
    if (channel && this.channels.get(id) === channel) this.dropChannel(id);
    this.logger.warn({ transactionId: id }, `${what} stopped: the claim on this transaction ended (another node took it over, or a re-sent request or a redelivery reopened it)`);
  }

  /** Forgets the modality's association for this report, and tells the association to stop waiting for it. */
  private dropChannel(id: number): void {
    this.channels.get(id)?.release();
    this.channels.delete(id);
  }

  /**
   * A channel kept for a report this node will not send: finished (another node delivered it, or it
   * expired, or it is gone), or claimed by another node. A report merely not due yet keeps it.
   */
  private async releaseChannelIfDone(id: number): Promise<void> {
    if (!this.channels.has(id)) return;
    const record = await this.repo.get(id).catch(() => undefined);
    if (!record || isFinal(record.state) || (record.leaseOwner !== null && record.leaseOwner !== this.delivererDeps.nodeId)) this.dropChannel(id);
  }

  async receive(request: CommitmentRequest, origin: RequestOrigin): Promise<IntakeAnswer> {
    const outcome = await this.repo.record(
      {
        request,
        callingAeTitle: origin.callingAeTitle,
        calledAeTitle: origin.calledAeTitle,
        remoteAddress: origin.remoteAddress,
        now: this.now,
        arrivalWaitMs: this.timings.arrivalWaitMs,
        verifyTimeoutMs: this.timings.verifyTimeoutMs,
        ttlMs: this.timings.reportTtlMs,
        decidedAtIntake: judgeAtIntake(request.references),
      },
      // The work is this node's from the first moment: it holds the modality's association, and under load
      // its own start (afterResponse) could come after another node's periodic pass.
      this.stopped ? undefined : { owner: this.delivererDeps.nodeId, ttlMs: this.delivererDeps.leaseTtlMs },
    );
    if (outcome.claim) {
      const held = new HeldClaim(this.repo, outcome.claim, this.delivererDeps.leaseTtlMs, () => this.now, this.logger);
      // Picked up by verify() and deliver(), as a claim kept between rounds or handed over by a verdict.
      const kept = outcome.claim.kind === 'verify' ? this.waitingClaims : this.handedOver;
      kept.get(outcome.id)?.stop();
      kept.set(outcome.id, held);
    }
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
    if (this.stopped || this.isHeld(id)) return;
    void this.verify(id).then(() => this.deliver(id));
  }

  private isHeld(id: number): boolean {
    const hold = this.holds.get(id);
    return hold !== undefined && hold.until > this.now;
  }

  /** Sets the transaction aside for the next retry delay (growing with each failure in a row). */
  private holdAfter(id: number, what: string, error: unknown, delivered?: Hold['delivered']): void {
    const previous = this.holds.get(id);
    const strikes = (previous?.strikes ?? 0) + 1;
    const delayMs = retryDelay(strikes, this.delivererDeps.retryInitialMs, this.delivererDeps.retryMaxMs);
    this.holds.set(id, { until: this.now + delayMs, strikes, delivered: delivered ?? previous?.delivered });
    // The store may be what failed: the log line goes out anyway, with what can be read.
    void this.repo
      .get(id)
      .catch(() => undefined)
      .then((record) =>
        this.logger.error(
          { err: error instanceof Error ? error.message : String(error), transactionId: id, transactionUid: record?.transactionUid, callingAet: record?.callingAeTitle, strikes, retryInMs: delayMs },
          `${what}; trying again in ${Math.round(delayMs / 1000)} s`,
        ),
      );
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
      .catch((error: unknown) => this.holdAfter(id, `${what} failed unexpectedly`, error))
      .finally(() => runs.delete(id));
    runs.set(id, run);
    return run;
  }

  private verify(id: number): Promise<void> {
    return this.singleFlight(this.verifying, id, 'verification', async () => {
      let held = this.waitingClaims.get(id);
      this.waitingClaims.delete(id);
      if (held?.isLost) {
        held.stop();
        held = undefined;
      }
      // A claim kept from the previous round is confirmed (its record read afresh) before the next one.
      let fresh;
      try {
        fresh = held ? await this.repo.renew(held.claim, this.now, this.delivererDeps.leaseTtlMs) : undefined;
        if (held && fresh) held.replace({ ...fresh, record: (await this.repo.get(id)) ?? fresh.record });
      } catch (error) {
        // Out of waitingClaims already: unless stopped here, it would renew itself forever with no round
        // working under it, and neither this node nor another could claim the transaction again.
        if (held) await this.letGo(held);
        throw error;
      }
      if (held && !fresh) {
        held.stop();
        held = undefined;
      }
      // Not RECEIVED any more, or another node is verifying it: nothing to do here.
      held ??= await this.claim(id, 'verify');
      if (!held) {
        this.waiting.delete(id);
        return;
      }
      let progress;
      let keep = false;
      try {
        progress = await this.withinBudget(this.verifyBudget, held.claim.record.instanceCount, () => verifyTransaction(this.verifierDeps, held));
        keep = !progress.done && !this.stopped;
      } catch (error) {
        if (!(error instanceof LeaseLostError)) throw error;
        this.waiting.delete(id);
        this.lostTo(id, 'verification', this.channels.get(id));
        return;
      } finally {
        // Waiting for late arrivals (or for Orthanc): the claim stays with this node until the next round.
        if (keep) this.waitingClaims.set(id, held);
        else await this.letGo(held);
      }
      if (!this.holds.get(id)?.delivered) this.holds.delete(id);
      if (progress.done) {
        this.waiting.delete(id);
        if (progress.deliverClaim) this.handedOver.set(id, new HeldClaim(this.repo, progress.deliverClaim, this.delivererDeps.leaseTtlMs, () => this.now, this.logger));
        if (progress.verifiedNow) await this.onVerified(id, progress.policy);
      } else {
        this.waiting.set(id, { waitingFor: progress.waitingFor, recheckAt: progress.recheckAt });
        this.scheduleRecheck();
      }
    });
  }

  private async onVerified(id: number, policy: string | undefined): Promise<void> {
    const record = await this.repo.get(id);
    if (!record || record.verifiedAt === null) return;
    this.metrics.verificationSeconds.observe((record.verifiedAt - record.receivedAt) / 1000);
    this.metrics.transactions.inc({ outcome: record.failedCount ? 'failed' : 'committed' });
    const log = this.logger.child({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle });
    log.info({ committed: record.committedCount, failed: record.failedCount, eventTypeId: record.eventTypeId, verifyMs: record.verifiedAt - record.receivedAt, policy }, 'transaction verified');
    for (const { outcome, failureReason, count } of await this.repo.outcomeCounts(id)) {
      this.metrics.instances.inc({ result: outcome === 'committed' ? 'committed' : hex16(failureReason ?? 0) }, count);
    }
  }

  private deliver(id: number): Promise<void> {
    return this.singleFlight(this.delivering, id, 'delivery', async () => {
      // The claim taken with the verdict, if any: this delivery uses it, or gives it back.
      const handedOver = this.handedOver.get(id);
      this.handedOver.delete(id);
      const delivered = this.holds.get(id)?.delivered;
      if (this.isHeld(id) || delivered) {
        if (handedOver) await this.letGo(handedOver);
        if (delivered && !this.isHeld(id)) await this.recordLate(id, delivered.attempt);
        return;
      }
      if (this.stopped) {
        if (handedOver) await this.letGo(handedOver);
        return;
      }
      // Not due (delivered, retry later, expired), or another node is delivering it.
      const held = handedOver && !handedOver.isLost ? handedOver : await this.claim(id, 'deliver');
      if (!held) {
        await this.releaseChannelIfDone(id);
        return;
      }
      const channel = this.channels.get(id);
      const record = held.claim.record;
      let result;
      try {
        if (!(await this.protectBeforeReport(record))) return;
        // Protection may have changed the record (protected_at, instances found gone): read it again.
        if (this.protection) held.replace({ ...held.claim, record: (await this.repo.get(id)) ?? record });
        result = await this.withinBudget(this.deliveryBudget, record.instanceCount, () => deliverTransaction(this.delivererDeps, held, channel));
      } catch (error) {
        if (error instanceof LeaseLostError) {
          this.lostTo(id, 'delivery', channel);
          return;
        }
        if (!(error instanceof UnrecordedAttemptError)) throw error;
        if (error.attempt.ok) this.channels.delete(id);
        this.holdUnrecorded(id, error);
        return;
      } finally {
        await this.letGo(held);
      }
      if (result === 'lost') {
        this.lostTo(id, 'delivery', channel);
        return;
      }
      this.holds.delete(id);
      if (result === 'delivered') this.channels.delete(id);
      if (result === 'awaiting-modality' && !this.awaitingModality.has(id)) {
        this.awaitingModality.set(id, record.callingAeTitle);
        this.logger.info(
          { transactionUid: record.transactionUid, callingAet: record.callingAeTitle, expiresAt: new Date(record.expiresAt).toISOString() },
          'report waits for the modality to open an association (its peer entry says callback: false; no association is opened to it)',
        );
      }
    });
  }

  /** Still waiting for its modality: the peer entry still says it cannot be called back. */
  private stillAwaitingModality(id: number): boolean {
    const callingAet = this.awaitingModality.get(id);
    if (callingAet === undefined) return false;
    if (this.delivererDeps.findPeer(callingAet)?.callback === false) return true;
    this.awaitingModality.delete(id);
    return false;
  }

  /**
   * A known modality opened an association that can carry reports: its owed reports (verified, waiting
   * for delivery or in retry, not expired) go on it first, oldest first, one at a time, each marked
   * delivered only on its answer. A transaction whose delivery is already running elsewhere (a new
   * association of ours) is waited for, never sent twice at once. Stops at the first failure: the rest
   * stay pending.
   */
  associationOpened(association: ModalityAssociation): void {
    const callingAet = association.peer.aeTitle;
    if (this.stopped) {
      association.done();
      return;
    }
    const previous = this.owedRuns.get(callingAet) ?? Promise.resolve();
    const run: Promise<void> = previous
      .then(async () => {
        const owed = await this.repo.pendingReports(callingAet, this.now);
        if (owed.length > 0) await this.sendOwedReports(association, owed);
      })
      .catch((error: unknown) => this.logger.error({ err: error, callingAet }, "sending owed reports on the modality's association failed unexpectedly"))
      .finally(() => {
        association.done();
        if (this.owedRuns.get(callingAet) === run) this.owedRuns.delete(callingAet);
      });
    this.owedRuns.set(callingAet, run);
  }

  private async sendOwedReports(association: ModalityAssociation, ids: readonly number[]): Promise<void> {
    const log = this.logger.child({ callingAet: association.peer.aeTitle });
    log.info({ owed: ids.length }, "modality opened an association: sending its owed reports on it first");
    let delivered = 0;
    /** Delivered meanwhile by another path, expired, or set aside after a store failure. */
    let skipped = 0;
    for (const id of ids) {
      if (this.stopped || !(await association.channel.stillOpen())) break;
      // A delivery of ours already running on an association of ours: let it finish, then see what is
      // left. One that holds an open association of the modality's goes on that one: it may be queued
      // there behind owed reports (this run's, or a run that waits for this one), so it is left alone.
      let running = this.delivering.get(id);
      while (running && !this.channels.get(id)?.isOpen()) {
        await running;
        running = this.delivering.get(id);
      }
      if (running || this.isHeld(id)) {
        skipped++;
        continue;
      }
      const result: { outcome: 'delivered' | 'failed' | 'skipped' | 'lost' } = { outcome: 'failed' };
      // In the single-flight map at once: from here a pass of the usual path joins this delivery instead of
      // starting one. The claim also keeps other nodes away (the "any pending report, not just due" rule of
      // this path: a retry planned for later is sent now, on the modality's own association).
      await this.singleFlight(this.delivering, id, 'delivery on the modality association', async () => {
        // 'owed': due or not (a retry planned for later goes now, on the modality's own association), and
        // judged at the real time, so that another node's live claim is respected.
        const claim = await this.repo.claim(id, 'owed', this.delivererDeps.nodeId, this.now, this.delivererDeps.leaseTtlMs);
        if (!claim || claim.record.expiresAt <= this.now) {
          if (claim) await this.repo.release(claim);
          result.outcome = 'skipped';
          return;
        }
        const held = new HeldClaim(this.repo, claim, this.delivererDeps.leaseTtlMs, () => this.now, this.logger);
        try {
          // STGCMT_PROTECT holds on this path too: no report says "committed" before Orthanc protects it.
          if (!(await this.protectBeforeReport(claim.record))) return;
          if (this.protection) held.replace({ ...held.claim, record: (await this.repo.get(id)) ?? claim.record });
          result.outcome = await this.withinBudget(this.deliveryBudget, claim.record.instanceCount, () => deliverOnModalityAssociation(this.delivererDeps, held, association.channel));
        } catch (error) {
          if (error instanceof LeaseLostError) {
            result.outcome = 'lost';
            return;
          }
          if (!(error instanceof UnrecordedAttemptError)) throw error;
          this.holdUnrecorded(id, error);
          return;
        } finally {
          await this.letGo(held);
        }
        if (result.outcome === 'delivered') {
          this.holds.delete(id);
          this.channels.delete(id);
          this.awaitingModality.delete(id);
        }
      });
      if (result.outcome === 'skipped' || result.outcome === 'lost') {
        skipped++;
        continue;
      }
      if (result.outcome !== 'delivered') break;
      delivered++;
    }
    const allDone = delivered + skipped === ids.length;
    log.info({ owed: ids.length, delivered, skipped }, allDone ? "owed reports delivered on the modality's association" : "owed reports not all delivered on the modality's association; the rest stay pending");
  }

  /** An attempt the store could not record: a delivered one is recorded later, never re-sent. */
  private holdUnrecorded(id: number, error: UnrecordedAttemptError): void {
    this.holdAfter(
      id,
      error.attempt.ok ? 'report delivered, but the delivery could not be recorded; recording it again (the report is not re-sent)' : 'delivery attempt failed and could not be recorded',
      error.cause,
      error.attempt.ok ? { attempt: error.attempt } : undefined,
    );
  }

  /**
   * With STGCMT_PROTECT, a report whose committed instances are not protected yet (a fresh verdict, or a
   * transaction reopened for delivery) waits for the protection. False: it failed, and the transaction is
   * held for the next retry delay: no report says "committed" about what Orthanc may still recycle.
   */
  private async protectBeforeReport(record: TransactionRecord): Promise<boolean> {
    if (!this.protection || record.state !== 'VERIFIED' || record.protectedAt !== null || !record.committedCount) return true;
    const log = this.logger.child({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle });
    try {
      const result = await this.withinBudget(this.deliveryBudget, record.instanceCount, () => protectCommitted(this.protection!, record.id));
      this.protectionErrors.delete(record.id);
      log.info({ committed: record.committedCount, patients: result.patients }, 'committed instances protected in Orthanc');
      if (result.vanished > 0) {
        log.error({ vanished: result.vanished }, 'committed instances disappeared from Orthanc before they could be protected: the report lists them as failed (0112H)');
      }
      return true;
    } catch (error) {
      this.metrics.protectionFailures.inc();
      this.protectionErrors.set(record.id, { error: error instanceof Error ? error.message : String(error), at: this.now });
      this.holdAfter(record.id, 'protecting the committed instances in Orthanc failed; the report waits until they are protected', error);
      return false;
    }
  }

  /** Records a delivery the store could not take when it happened. */
  private async recordLate(id: number, attempt: DeliveryAttemptRecord): Promise<void> {
    let held: HeldClaim | undefined;
    try {
      held = await this.claim(id, 'deliver');
      // Moved on meanwhile (expired, reported, or another node holds it): nothing left to record here.
      if (!held) {
        this.holds.delete(id);
        return;
      }
      await this.repo.recordDelivery(held.claim, attempt, undefined);
    } catch (error) {
      if (error instanceof LeaseLostError) {
        this.holds.delete(id);
        return;
      }
      this.holdAfter(id, 'report delivered earlier, but the delivery still could not be recorded', error);
      return;
    } finally {
      if (held) await this.letGo(held);
    }
    this.holds.delete(id);
    this.logger.info({ transactionId: id, deliveredAt: new Date(attempt.at).toISOString() }, 'delivery recorded late; the report was not sent again');
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
    // A transaction set aside (a hold) is looked at again when its hold ends, not before.
    for (const [id, wait] of this.waiting) earliest = Math.min(earliest, Math.max(wait.recheckAt, this.holds.get(id)?.until ?? 0));
    if (earliest === Infinity) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = undefined;
      const now = this.now;
      for (const [id, wait] of this.waiting) if (wait.recheckAt <= now) this.process(id);
      this.scheduleRecheck();
    }, Math.max(0, earliest - this.now) + 5);
    this.recheckTimer.unref();
  }

  /**
   * Everything with work left and no live claim of another node (a dead node's claims run out): used at
   * start-up and by the periodic job. One pass at a time.
   */
  async resume(): Promise<void> {
    if (this.resuming || this.stopped) return;
    this.resuming = true;
    try {
      if (!this.claimsReset) {
        // This node's previous run died holding these: nobody else would take them before they ran out.
        const dropped = await this.repo.releaseOwnedBy(this.delivererDeps.nodeId);
        this.claimsReset = true;
        if (dropped > 0) this.logger.info({ dropped }, "dropped the claims this node's previous run held");
      }
      if (!this.searchResumed) {
        // Once, at start: transactions whose search indexing a stop cut short (RECEIVED ones restart it anyway).
        this.searchResumed = true;
        for (const id of await this.repo.unindexedIds()) startSearchIndexing(this.verifierDeps, id);
      }
      const node = this.delivererDeps.nodeId;
      // Associations still waiting for reports that another node took over or finished: let them go.
      for (const id of [...this.channels.keys()]) if (!this.verifying.has(id) && !this.delivering.has(id) && !this.waiting.has(id)) await this.releaseChannelIfDone(id);
      for (const id of await this.repo.workDue('verify', node, this.now, RESUME_BATCH)) if (!this.waiting.has(id)) this.process(id);
      for (const id of await this.repo.workDue('deliver', node, this.now, RESUME_BATCH)) if (!this.stillAwaitingModality(id)) this.process(id);
    } finally {
      this.resuming = false;
    }
  }

  async expireOverdue(): Promise<void> {
    for (const record of await this.repo.expireOverdue(this.now)) {
      this.dropChannel(record.id);
      this.awaitingModality.delete(record.id);
      this.protectionErrors.delete(record.id);
      this.metrics.transactions.inc({ outcome: 'expired' });
      this.logger.error(
        { transactionUid: record.transactionUid, callingAet: record.callingAeTitle, attempts: record.deliveryAttempts, lastError: record.lastError, lastErrorCategory: record.lastErrorCategory },
        'REPORT EXPIRED: the modality never received this storage commitment report; it must not delete its images on our word',
      );
    }
  }

  purgeFinished(): Promise<number> {
    return this.repo.purgeFinished(this.now - this.timings.retentionMs);
  }

  /**
   * Whether a report delivery for this transaction is running or due now: an attempt in flight, a
   * verification that hands over to delivery, or a VERIFIED state that the next pass delivers.
   */
  async deliveryPending(id: number): Promise<boolean> {
    if (this.runningFor(id)) return true;
    return this.pendingAfterRead(id, await this.repo.get(id));
  }

  /** A delivery of this node's is under way or about to start (nothing to read). */
  private runningFor(id: number): boolean {
    return this.delivering.has(id) || this.verifying.has(id) || this.reopening.has(id);
  }

  /**
   * deliveryPending with the record just read. Judged without awaiting anything after the read: what
   * this node started meanwhile (another request's redelivery) is seen.
   */
  private pendingAfterRead(id: number, record: TransactionRecord | undefined): boolean {
    if (this.runningFor(id)) return true;
    return record?.state === 'VERIFIED' && !this.stillAwaitingModality(id);
  }

  /**
   * While STGCMT_PROTECT holds a report back: the last protection failure, and when it is tried again.
   */
  async protectionProblem(id: number): Promise<{ readonly error: string; readonly at: number; readonly retryAt: number | undefined } | undefined> {
    if (!this.protectionErrors.has(id)) return undefined;
    const record = await this.repo.get(id);
    // Read after the await: the protection may have succeeded (or failed again) meanwhile.
    const problem = this.protectionErrors.get(id);
    if (!problem) return undefined;
    if (record?.state !== 'VERIFIED') {
      // Expired or purged meanwhile: nothing is held back any more.
      this.protectionErrors.delete(id);
      return undefined;
    }
    return { ...problem, retryAt: this.holds.get(id)?.until };
  }

  /**
   * Operator's "send again": back to VERIFIED, then delivered at once. Idempotent while a delivery is
   * pending: asking again then starts nothing, so a burst of requests makes one delivery, not many.
   */
  async redeliver(id: number): Promise<RedeliveryOutcome> {
    const record = await this.repo.get(id);
    if (!record) return { kind: 'unknown' };
    if (record.state === 'RECEIVED') return { kind: 'verifying', record };
    if (this.pendingAfterRead(id, record)) return { kind: 'pending', record };
    // From here until process() takes over, a second request finds this delivery pending (see runningFor).
    this.reopening.add(id);
    try {
      const reopened = (await this.repo.redeliver(id, this.now, this.timings.reportTtlMs)) ?? record;
      // Asked to send again: a delivery waiting to be recorded is superseded.
      this.holds.delete(id);
      this.awaitingModality.delete(id);
      this.process(id);
      return { kind: 'started', record: reopened };
    } finally {
      this.reopening.delete(id);
    }
  }

  /** Stops scheduling new work and waits for what is in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    // Until nothing runs: a verification that ends now still hands over to its delivery, which sees
    // `stopped` and gives its claim back rather than start.
    while (this.verifying.size > 0 || this.delivering.size > 0 || this.owedRuns.size > 0) {
      await Promise.allSettled([...this.verifying.values(), ...this.delivering.values(), ...this.owedRuns.values()]);
    }
    // Handed back at once, so that another node goes on without waiting for them to run out.
    await Promise.allSettled([...this.waitingClaims.values(), ...this.handedOver.values()].map((held) => this.letGo(held)));
    this.waitingClaims.clear();
    this.handedOver.clear();
  }
}
