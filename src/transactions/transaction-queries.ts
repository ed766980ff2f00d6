/**
 * The rules over the reads (TransactionReads) that the HTTP API and the dashboard need: finding a
 * transaction by its key, and its instances counted and paged. Every answer costs a bounded amount of
 * work, however many instances a transaction holds: the SQLite reads run on the event loop that carries
 * DICOM traffic, and a PostgreSQL read should not ship 200,000 rows either.
 */
import type { InstanceOutcomeFilter, InstanceRecord, TransactionRecord } from './records.js';
import type { TransactionReads } from './reads.js';

/** Largest page of instances one request may ask for. */
export const MAX_INSTANCE_PAGE = 1000;
/** Instances the detail of a transaction includes (the rest through the paged instances endpoint). */
export const DETAIL_INSTANCE_PAGE = 100;

export type TransactionLookup =
  | { readonly kind: 'found'; readonly record: TransactionRecord }
  | { readonly kind: 'none' }
  /** Several calling AEs used this Transaction UID: the caller must say which. */
  | { readonly kind: 'ambiguous'; readonly matches: readonly TransactionRecord[] };

export interface InstanceCounts {
  readonly committed: number;
  readonly failed: number;
  readonly pending: number;
}

export interface InstancePage {
  readonly items: readonly InstanceRecord[];
  /** The seq to pass as `after` for the next page; null when this page is the last. */
  readonly nextAfter: number | null;
}

export class TransactionQueries {
  constructor(private readonly reads: TransactionReads) {}

  byKey(callingAeTitle: string, transactionUid: string): Promise<TransactionRecord | undefined> {
    return this.reads.findByKey(callingAeTitle, transactionUid);
  }

  /** By Transaction UID alone: only when one calling AE used it. */
  async byUid(transactionUid: string): Promise<TransactionLookup> {
    const matches = await this.reads.findAllByUid(transactionUid);
    if (matches.length === 0) return { kind: 'none' };
    if (matches.length === 1) return { kind: 'found', record: matches[0]! };
    return { kind: 'ambiguous', matches };
  }

  /**
   * A verdict's counts are on the transaction record; counting rows (~50 ms for 200,000) is left for a
   * transaction still being verified, whose outcomes change as it goes.
   */
  async instanceCounts(record: TransactionRecord): Promise<InstanceCounts> {
    if (record.state !== 'RECEIVED' && record.committedCount !== null && record.failedCount !== null) {
      return { committed: record.committedCount, failed: record.failedCount, pending: Math.max(0, record.instanceCount - record.committedCount - record.failedCount) };
    }
    let committed = 0;
    let failed = 0;
    for (const row of await this.reads.outcomeCounts(record.id)) {
      if (row.outcome === 'committed') committed += row.count;
      else failed += row.count;
    }
    return { committed, failed, pending: Math.max(0, record.instanceCount - committed - failed) };
  }

  /**
   * Instances with seq > afterSeq in request order, at most `limit` (capped at MAX_INSTANCE_PAGE). A filter
   * that the counts say matches nothing is answered without reading rows: a fully committed 200,000-instance
   * transaction has no failures to scan for.
   */
  async instancePage(record: TransactionRecord, outcome: InstanceOutcomeFilter, afterSeq: number, limit: number, known?: InstanceCounts): Promise<InstancePage> {
    const counts = known ?? (await this.instanceCounts(record));
    const matching = { all: record.instanceCount, committed: counts.committed, failed: counts.failed, pending: counts.pending, 'not-committed': counts.failed + counts.pending, vanished: record.vanishedCount }[outcome];
    if (matching === 0) return { items: [], nextAfter: null };
    const size = Math.min(Math.max(1, limit), MAX_INSTANCE_PAGE);
    // One row more than asked tells whether another page follows.
    const rows = await this.reads.instancePage(record.id, { outcome, afterSeq, limit: size + 1 });
    const items = rows.slice(0, size);
    return { items, nextAfter: rows.length > size ? items[items.length - 1]!.seq : null };
  }
}
