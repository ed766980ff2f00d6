/**
 * Delivers a verified transaction's N-EVENT-REPORT: on the modality's own association while it is still
 * open, else on a new association to the peer configured for the calling AE title. Every attempt is
 * recorded; a failure schedules a retry with backoff. Delivered means the peer answered the report.
 */
import type { Logger } from 'pino';
import { buildEventReport } from '../commitment/report.js';
import { hex16 } from '../commitment/types.js';
import {
  DeliveryConfigurationError,
  DeliveryError,
  deliveryErrorCategory,
  DeliveryStatusError,
  isDeliveredStatus,
  type OutgoingReport,
  type ReportChannel,
  type ReportTransport,
} from './report-transport.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Peer } from '../peers/peer-directory.js';
import { configurationRetryDelay, retryDelay } from './backoff.js';
import type { HeldClaim } from './held-claim.js';
import type { DeliveryAttemptRecord, TransactionRecord } from './records.js';
import { LeaseLostError, type TransactionRepository } from './repository.js';

export interface DelivererDeps {
  readonly repo: TransactionRepository;
  /** This node (STGCMT_NODE_ID): the owner of its claims. */
  readonly nodeId: string;
  /** How long a claim lasts unless renewed (STGCMT_LEASE_TTL). */
  readonly leaseTtlMs: number;
  readonly findPeer: (aeTitle: string) => Peer | undefined;
  /** How reports leave: new associations, and their encoding (the DICOM shell). */
  readonly transport: ReportTransport;
  readonly retrieveAeTitle: () => string | undefined;
  readonly timeoutMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  /** Interval between attempts while the modality refuses us for a configuration reason. */
  readonly retryConfigErrorMs: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
}

/**
 * `awaiting-modality`: the peer cannot be called back (`callback: false`); nothing was attempted.
 * `lost`: another node took the transaction over; this node sent nothing more and recorded nothing.
 */
export type DeliveryResult = 'delivered' | 'retry' | 'skipped' | 'awaiting-modality' | 'lost';

/**
 * How an attempt is counted in stgcmt_delivery_attempts_total: the store's `via`, or `modality-association`
 * for a report owed from an earlier request sent on an association the modality opened later (stored as
 * `same-association`: it went on the modality's own association).
 */
type AttemptLabel = DeliveryAttemptRecord['via'] | 'modality-association';

/**
 * An attempt was made (and maybe delivered) but the store could not record it (disk full, I/O error). The
 * caller keeps it in memory and backs off: a delivered report is recorded later, not sent again.
 */
export class UnrecordedAttemptError extends Error {
  constructor(
    readonly attempt: DeliveryAttemptRecord,
    readonly nextAttemptAt: number | undefined,
    cause: unknown,
  ) {
    super(`${attempt.ok ? 'report delivered' : 'delivery attempt failed'} but could not be recorded: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * Records an attempt under the claim (which this releases). A claim taken over meanwhile: LeaseLostError
 * (the other node owns the transaction now, and its record of it wins); any other failure:
 * UnrecordedAttemptError.
 */
async function saveAttempt(deps: DelivererDeps, held: HeldClaim, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): Promise<TransactionRecord> {
  held.ending();
  try {
    return await deps.repo.recordDelivery(held.claim, attempt, nextAttemptAt);
  } catch (error) {
    if (error instanceof LeaseLostError) throw error;
    throw new UnrecordedAttemptError(attempt, nextAttemptAt, error);
  }
}

/** The report of a verified transaction, read from the repository and encoded when it is written. */
async function reportOf(deps: DelivererDeps, record: TransactionRecord): Promise<OutgoingReport> {
  const verdict = await deps.repo.verdict(record.id);
  return deps.transport.prepare(record.instanceCount, () => buildEventReport(record.transactionUid, deps.retrieveAeTitle(), verdict));
}

/** Logged when a node finds, before sending, that its claim is gone. */
const LOST_BEFORE_SENDING = 'report not sent: another node has taken this transaction over (this node was stalled or cut off from the database)';

interface AttemptResult extends DeliveryAttemptRecord {
  /** Set when the modality refused us for a configuration reason. */
  readonly configuration?: DeliveryConfigurationError;
}

async function attempt(
  deps: DelivererDeps,
  via: DeliveryAttemptRecord['via'],
  send: () => Promise<void>,
  label: AttemptLabel = via,
): Promise<AttemptResult> {
  const at = deps.now();
  const started = performance.now();
  let failure: { error: unknown } | undefined;
  try {
    await send();
  } catch (e) {
    failure = { error: e };
  }
  const durationMs = Math.round(performance.now() - started);
  const ok = failure === undefined;
  deps.metrics.deliveryAttempts.inc({ via: label, ok: String(ok) });
  deps.metrics.deliverySeconds.observe({ via: label, ok: String(ok) }, durationMs / 1000);
  if (!failure) return { at, via, ok, error: null, durationMs, category: null };
  const { error } = failure;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof DeliveryConfigurationError) {
    deps.metrics.deliveryConfigurationErrors.inc({ kind: error.kind });
    // The fix travels with the error into the store, so the API and the dashboard say what to change.
    return { at, via, ok, error: `${message}; to fix: ${error.fix}`, durationMs, category: 'configuration', configuration: error };
  }
  return { at, via, ok, error: message, durationMs, category: deliveryErrorCategory(error) };
}

/** The store's record of an attempt (without the error object). */
function recordOf({ at, via, ok, error, durationMs, category }: AttemptResult): DeliveryAttemptRecord {
  return { at, via, ok, error, durationMs, category: category ?? null };
}

/**
 * Delivers the report of a transaction claimed for delivery. The claim is confirmed (renewed) right
 * before each send: a node that lost it sends nothing (at least once, not twice by design: a node that
 * stalls after its confirmation, mid-send, is the documented window in which a report may go twice).
 */
export async function deliverTransaction(deps: DelivererDeps, held: HeldClaim, channel: ReportChannel | undefined): Promise<DeliveryResult> {
  const record = held.claim.record;
  if (record.state !== 'VERIFIED' && record.state !== 'DELIVERY_RETRY') return 'skipped';
  const counts = { committed: record.committedCount, failed: record.failedCount };
  const log = deps.logger.child({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle, eventTypeId: record.eventTypeId });

  const sameAssociation = channel ? await channel.stillOpen() : false;
  if (!sameAssociation && deps.findPeer(record.callingAeTitle)?.callback === false) return 'awaiting-modality';
  const report = await reportOf(deps, record);
  log.info({ attempt: record.deliveryAttempts + 1, sameAssociation, ...counts }, 'delivering report');
  if (channel && sameAssociation) {
    if (!(await held.confirm())) {
      log.warn(LOST_BEFORE_SENDING);
      return 'lost';
    }
    const result = await attempt(deps, 'same-association', async () => {
      const status = await channel.send(report, deps.timeoutMs);
      if (!isDeliveredStatus(status)) throw new DeliveryStatusError(`peer answered status ${hex16(status)}`, status);
    });
    if (result.ok) {
      await saveAttempt(deps, held, recordOf(result), undefined);
      log.info({ via: result.via, durationMs: result.durationMs, ...counts }, 'report delivered');
      return 'delivered';
    }
    // The modality's association failed us mid-way: fall through to a new association at once, but keep
    // the failed attempt on record (due at once), and claim the transaction again for that attempt.
    const failedAt = deps.now();
    await saveAttempt(deps, held, recordOf(result), failedAt);
    const again = await deps.repo.claim(record.id, 'deliver', deps.nodeId, Math.max(failedAt, deps.now()), deps.leaseTtlMs);
    if (!again) return 'lost';
    held.replace(again);
    const next = deps.findPeer(record.callingAeTitle)?.callback === false ? 'it waits for the next association the modality opens (callback: false)' : 'opening a new one';
    log.warn({ via: result.via, error: result.error, category: result.category, durationMs: result.durationMs }, `delivery on the modality's association failed; ${next}`);
  }

  const peer = deps.findPeer(record.callingAeTitle);
  // Behind NAT or a firewall: never dialled; the report waits for an association the modality opens
  // (deliverOnModalityAssociation), or expires.
  if (peer && !peer.callback) return 'awaiting-modality';
  if (!(await held.confirm())) {
    log.warn(LOST_BEFORE_SENDING);
    return 'lost';
  }
  const current = held.claim.record;
  // Confirmed again once the association is up: negotiating may have taken long (a slow or paused peer,
  // or this node stalled), and another node may have taken the report over meanwhile.
  const guarded: OutgoingReport = {
    instanceCount: report.instanceCount,
    encode: (transferSyntaxUid) => report.encode(transferSyntaxUid),
    beforeSend: async () => {
      if (!(await held.confirm())) throw new DeliveryError('claim lost before sending: another node has taken this report over');
    },
  };
  const result = await attempt(deps, 'new-association', async () => {
    if (!peer) {
      throw new DeliveryConfigurationError(
        `no peer configured for AE title ${record.callingAeTitle}`,
        'peer-not-configured',
        `declare ${record.callingAeTitle} (its host and port) in Orthanc's DicomModalities or the STGCMT_PEERS_FILE`,
      );
    }
    await deps.transport.sendOnNewAssociation(peer, record.calledAeTitle, guarded);
  });
  if (held.isLost) {
    // Nothing was sent (or the attempt failed anyway): the other node's record of this report wins.
    log.warn({ via: result.via, error: result.error }, LOST_BEFORE_SENDING);
    return 'lost';
  }
  const attemptNumber = current.deliveryAttempts + 1;
  // A refusal that only a changed setting ends is retried at a slow, constant pace, not like an outage.
  const delayMs = result.configuration ? configurationRetryDelay(deps.retryConfigErrorMs) : retryDelay(attemptNumber, deps.retryInitialMs, deps.retryMaxMs);
  const nextAttemptAt = result.ok ? undefined : result.at + delayMs;
  await saveAttempt(deps, held, recordOf(result), nextAttemptAt);
  if (result.ok) {
    log.info({ via: result.via, durationMs: result.durationMs, ...counts }, 'report delivered');
    return 'delivered';
  }
  const next = new Date(nextAttemptAt!).toISOString();
  const configuration = result.configuration;
  // Said once at error level with its fix, and again only when the refusal changes: the retries that
  // follow are the same news.
  if (configuration && (current.lastErrorCategory !== 'configuration' || current.lastError !== result.error)) {
    log.error(
      { via: result.via, error: configuration.message, category: result.category, kind: configuration.kind, fix: configuration.fix, attempt: attemptNumber, nextAttemptAt: next },
      `report refused by configuration (${configuration.kind}): ${configuration.fix}; retrying every ${Math.round(deps.retryConfigErrorMs / 1000)} s until it is fixed (or POST .../redeliver once it is)`,
    );
    return 'retry';
  }
  log.warn({ via: result.via, error: result.error, category: result.category, attempt: attemptNumber, nextAttemptAt: next }, 'report delivery failed; will retry');
  return 'retry';
}

/**
 * Sends a report still owed to the modality (verified, waiting for delivery or in retry) on an
 * association the modality opened later, one attempt. Delivered means answered with a status that counts
 * (as on any other path). A failure keeps the transaction pending, on its retry schedule: the next
 * association the modality opens, or the next attempt by the usual path, tries again.
 */
export async function deliverOnModalityAssociation(deps: DelivererDeps, held: HeldClaim, channel: ReportChannel): Promise<'delivered' | 'failed' | 'lost'> {
  const record = held.claim.record;
  const report = await reportOf(deps, record);
  const counts = { committed: record.committedCount, failed: record.failedCount };
  const log = deps.logger.child({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle, eventTypeId: record.eventTypeId });
  if (!(await held.confirm())) {
    log.warn(LOST_BEFORE_SENDING);
    return 'lost';
  }
  log.info({ attempt: record.deliveryAttempts + 1, via: 'modality-association', ...counts }, "delivering an owed report on the modality's own association");
  const result = await attempt(
    deps,
    'same-association',
    async () => {
      const status = await channel.send(report, deps.timeoutMs);
      if (!isDeliveredStatus(status)) throw new DeliveryStatusError(`peer answered status ${hex16(status)} on its own association`, status);
    },
    'modality-association',
  );
  if (result.ok) {
    await saveAttempt(deps, held, recordOf(result), undefined);
    log.info({ via: 'modality-association', durationMs: result.durationMs, ...counts }, "report delivered via the modality's own association");
    return 'delivered';
  }
  // The usual schedule goes on: a retry already planned keeps its time; a fresh verdict is retried as after
  // any first failure.
  const nextAttemptAt = record.state === 'DELIVERY_RETRY' && record.nextAttemptAt !== null ? record.nextAttemptAt : result.at + retryDelay(record.deliveryAttempts + 1, deps.retryInitialMs, deps.retryMaxMs);
  await saveAttempt(deps, held, recordOf(result), nextAttemptAt);
  log.warn({ via: 'modality-association', error: result.error, category: result.category, durationMs: result.durationMs }, "owed report failed on the modality's own association; it stays pending");
  return 'failed';
}
