/**
 * Delivers a verified transaction's N-EVENT-REPORT: on the modality's own association while it is still
 * open, else on a new association to the peer configured for the calling AE title. Every attempt is
 * recorded; a failure schedules a retry with backoff. Delivered means the peer answered the report.
 */
import type { Logger } from 'pino';
import { buildEventReport, type EventReport } from '../commitment/report.js';
import { hex16 } from '../commitment/types.js';
import { DeliveryError, isDeliveredStatus } from '../dicom/event-report.js';
import type { ReportChannel } from '../dicom/scp.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Peer } from '../peers/peer-directory.js';
import type { DeliveryAttemptRecord, TransactionRecord, TransactionStore } from '../store/transaction-store.js';
import { retryDelay } from './backoff.js';

export interface DelivererDeps {
  readonly store: TransactionStore;
  readonly findPeer: (aeTitle: string) => Peer | undefined;
  readonly sendOnNewAssociation: (peer: Peer, callingAeTitle: string, report: EventReport) => Promise<unknown>;
  readonly retrieveAeTitle: () => string | undefined;
  readonly timeoutMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
}

export type DeliveryResult = 'delivered' | 'retry' | 'skipped';

async function attempt(
  deps: DelivererDeps,
  via: DeliveryAttemptRecord['via'],
  send: () => Promise<void>,
): Promise<DeliveryAttemptRecord> {
  const at = deps.now();
  const started = performance.now();
  let error: string | null = null;
  try {
    await send();
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  const durationMs = Math.round(performance.now() - started);
  const ok = error === null;
  deps.metrics.deliveryAttempts.inc({ via, ok: String(ok) });
  deps.metrics.deliverySeconds.observe({ via, ok: String(ok) }, durationMs / 1000);
  return { at, via, ok, error, durationMs };
}

export async function deliverTransaction(deps: DelivererDeps, record: TransactionRecord, channel: ReportChannel | undefined): Promise<DeliveryResult> {
  if (record.state !== 'VERIFIED' && record.state !== 'DELIVERY_RETRY') return 'skipped';
  const report = buildEventReport(record.transactionUid, deps.retrieveAeTitle(), deps.store.verdict(record.id));
  const log = deps.logger.child({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle, eventTypeId: report.eventTypeId });

  const sameAssociation = channel ? await channel.stillOpen() : false;
  log.info({ attempt: record.deliveryAttempts + 1, sameAssociation, committed: report.referenced.length, failed: report.failed.length }, 'delivering report');
  if (channel && sameAssociation) {
    const result = await attempt(deps, 'same-association', async () => {
      const status = await channel.send(report, deps.timeoutMs);
      if (!isDeliveredStatus(status)) throw new DeliveryError(`peer answered status ${hex16(status)}`);
    });
    if (result.ok) {
      deps.store.recordDelivery(record.id, result, undefined);
      log.info({ via: result.via, durationMs: result.durationMs, committed: report.referenced.length, failed: report.failed.length }, 'report delivered');
      return 'delivered';
    }
    // The modality's association failed us mid-way: fall through to a new association at once, but keep
    // the failed attempt on record.
    deps.store.recordDelivery(record.id, result, deps.now());
    log.warn({ via: result.via, error: result.error, durationMs: result.durationMs }, 'delivery on the modality\'s association failed; opening a new one');
  }

  const peer = deps.findPeer(record.callingAeTitle);
  const result = await attempt(deps, 'new-association', async () => {
    if (!peer) throw new DeliveryError(`no peer configured for AE title ${record.callingAeTitle}`);
    await deps.sendOnNewAssociation(peer, record.calledAeTitle, report);
  });
  const current = deps.store.get(record.id);
  const attemptNumber = (current?.deliveryAttempts ?? record.deliveryAttempts) + 1;
  const nextAttemptAt = result.ok ? undefined : result.at + retryDelay(attemptNumber, deps.retryInitialMs, deps.retryMaxMs);
  deps.store.recordDelivery(record.id, result, nextAttemptAt);
  if (result.ok) {
    log.info({ via: result.via, durationMs: result.durationMs, committed: report.referenced.length, failed: report.failed.length }, 'report delivered');
    return 'delivered';
  }
  log.warn({ via: result.via, error: result.error, attempt: attemptNumber, nextAttemptAt: new Date(nextAttemptAt!).toISOString() }, 'report delivery failed; will retry');
  return 'retry';
}
