/**
 * Watches what we reported committed: an instance that later disappears from Orthanc (deleted by an
 * operator, recycled by MaximumStorageSize / MaximumPatientCount) breaks the promise the report made.
 * That is an alarm for the PACS administrator (recorded with when it was noticed, counted in
 * stgcmt_committed_then_deleted_total, logged at error level, shown in the API and the dashboard), never
 * a new report to the modality: it may already have deleted its own copy.
 *
 * Orthanc's changes feed cannot tell us: neither 1.10.1 nor 1.12.7 logs a deletion in /changes (deleting an
 * instance, a study or a patient adds no change, and a recycled patient's own changes are removed from the
 * feed). So each round re-asks Orthanc, batched, about a bounded number (STGCMT_WATCH_SAMPLE) of the
 * committed instances of transactions reported within STGCMT_WATCH_WINDOW, the least recently watched
 * first, resuming a large transaction where the previous round stopped.
 */
import type { Logger } from 'pino';
import type { Metrics } from '../metrics/metrics.js';
import type { InstanceCatalog } from './instance-catalog.js';
import type { TransactionRepository } from './repository.js';

export interface WatchDeps {
  readonly repo: Pick<TransactionRepository, 'transactionsToWatch' | 'committedToWatch' | 'recordWatch' | 'get'>;
  /** What the PACS holds (Orthanc today). */
  readonly catalog: Pick<InstanceCatalog, 'find'>;
  readonly metrics: Pick<Metrics, 'committedThenDeleted'>;
  readonly logger: Logger;
  readonly now: () => number;
  /** How long after its report a transaction is watched (STGCMT_WATCH_WINDOW). */
  readonly windowMs: number;
  /** Instances re-checked per round at most (STGCMT_WATCH_SAMPLE). */
  readonly sample: number;
}

/** Instances asked about in one lookup (the client batches it further). */
const SLICE = 5000;
/** Transactions considered per round; the sample bound usually ends the round first. */
const TRANSACTIONS_PER_ROUND = 200;

export interface WatchRound {
  readonly checked: number;
  readonly vanished: number;
}

export async function watchCommitted(deps: WatchDeps): Promise<WatchRound> {
  let budget = deps.sample;
  let checked = 0;
  let vanished = 0;
  for (const transaction of await deps.repo.transactionsToWatch(deps.now() - deps.windowMs, TRANSACTIONS_PER_ROUND)) {
    if (budget <= 0) break;
    let after = transaction.afterSeq;
    while (budget > 0) {
      const asked = Math.min(budget, SLICE);
      const page = await deps.repo.committedToWatch(transaction.id, after, asked);
      if (page.length === 0) {
        await deps.repo.recordWatch(transaction.id, [], null, deps.now());
        break;
      }
      const uids = page.map((i) => i.sopInstanceUid);
      // Orthanc unreachable or answering nonsense throws: nothing is judged missing on a failed lookup.
      const found = await deps.catalog.find(uids);
      const gone = page.filter((i) => !found.has(i.sopInstanceUid)).map((i) => i.seq);
      budget -= page.length;
      checked += page.length;
      after = page[page.length - 1]!.seq;
      const complete = page.length < asked;
      const at = deps.now();
      const recorded = await deps.repo.recordWatch(transaction.id, gone, complete ? null : after, at);
      if (recorded > 0) {
        vanished += recorded;
        deps.metrics.committedThenDeleted.inc(recorded);
        const record = await deps.repo.get(transaction.id);
        // No PHI: the transaction's key and counts only; the instances are listed by the API.
        deps.logger.error(
          {
            transactionUid: record?.transactionUid,
            callingAet: record?.callingAeTitle,
            vanished: recorded,
            vanishedInTransaction: record?.vanishedCount,
            reportedAt: record?.reportedAt ? new Date(record.reportedAt).toISOString() : null,
            noticedAt: new Date(at).toISOString(),
          },
          'COMMITTED INSTANCES DELETED FROM ORTHANC after their storage commitment was reported: the modality may have deleted its copy (see GET /api/committed-then-deleted)',
        );
      }
      if (complete) break;
    }
  }
  return { checked, vanished };
}
