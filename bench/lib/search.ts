/**
 * Section 9: searching a store of 1,000,000 transaction instances (10,000 transactions of 100, each with
 * its study), filled directly through the store API, then every search the API offers timed as the API
 * makes it (the list query with its count, plus the instance outcomes for a search by image). Figures are
 * printed; nothing is asserted. `node --import tsx bench/lib/search.ts` runs this section alone.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { SopReference } from '../../src/commitment/types.js';
import { TransactionStore } from '../../src/store/transaction-store.js';
import type { ListFilter } from '../../src/transactions/records.js';
import { median, percentile } from './stats.js';

export interface SearchFigure {
  readonly search: string;
  readonly runs: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Transactions the last run matched (total of the list). */
  readonly matched: number;
}

export interface SearchBench {
  readonly instances: number;
  readonly transactions: number;
  readonly fillMs: number;
  /** Of fillMs: making the images findable (indexForSearch), the part the verifier pays. */
  readonly indexMs: number;
  readonly storeBytes: number;
  readonly figures: SearchFigure[];
}

const CT = '1.2.840.10008.5.1.4.1.1.2';
const uid = (...parts: number[]): string => `1.2.826.0.1.3680043.10.1137.${parts.join('.')}`;

export function benchSearch(transactions = 10_000, perTransaction = 100, runs = 50): SearchBench {
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'stgcmt-search-bench-'));
  try {
    const store = TransactionStore.open(dir, { synchronous: 'normal' });
    const start = Date.now() - transactions * 60_000;
    const fillStarted = performance.now();
    let indexMs = 0;
    for (let t = 0; t < transactions; t++) {
      const references: SopReference[] = [];
      for (let i = 0; i < perTransaction; i++) references.push({ sopClassUid: CT, sopInstanceUid: uid(3, t, i) });
      // Modalities AET0..AET19, one transaction a minute: ten days of a busy department.
      const { id } = store.recordRequest({
        request: { transactionUid: uid(1, t), references },
        callingAeTitle: `AET${t % 20}`,
        calledAeTitle: 'STGCMT',
        remoteAddress: '127.0.0.1',
        now: start + t * 60_000,
        arrivalWaitMs: 30_000,
        verifyTimeoutMs: 600_000,
        ttlMs: 86_400_000,
      });
      // What the verifier does first, after the N-ACTION-RSP: the images become findable.
      const indexStarted = performance.now();
      for (let after = store.indexForSearch(id); after !== undefined; after = store.indexForSearch(id, after));
      indexMs += performance.now() - indexStarted;
      store.saveStudies(id, [
        {
          studyInstanceUid: uid(2, t),
          orthancStudyId: null,
          patientId: `PID${t % 3000}`,
          patientName: `PATIENT${t % 3000}^GIVEN`,
          studyDate: '20261125',
          studyDescription: 'CT THORAX',
          accessionNumber: `ACC${t}`,
          modalities: 'CT',
        },
      ]);
    }
    const fillMs = performance.now() - fillStarted;

    const time = (search: string, filterOf: (k: number) => Omit<ListFilter, 'limit' | 'offset'>, withOutcomes?: (k: number) => string): SearchFigure => {
      const ms: number[] = [];
      let matched = 0;
      for (let run = 0; run < runs; run++) {
        // A different key each run: nothing is served from a page already in cache by the previous run alone.
        const k = (run * 7919) % transactions;
        const started = performance.now();
        const page = store.list({ ...filterOf(k), limit: 50, offset: 0 });
        if (withOutcomes) store.instanceOutcomesByUid(page.items.map((r) => r.id), withOutcomes(k));
        ms.push(performance.now() - started);
        matched = page.total;
      }
      return { search, runs, medianMs: median(ms), p99Ms: percentile(ms, 99), maxMs: Math.max(...ms), matched };
    };
    const figures = [
      time('SOP Instance UID (with its outcome)', (k) => ({ sopInstanceUid: uid(3, k, k % perTransaction) }), (k) => uid(3, k, k % perTransaction)),
      time('Study Instance UID', (k) => ({ studyInstanceUid: uid(2, k) })),
      time('accession number', (k) => ({ accessionNumber: `ACC${k}` })),
      time('patient ID', (k) => ({ patient: `PID${k % 3000}` })),
      time('patient name prefix', (k) => ({ patient: `patient${k % 3000} given` })),
      time('Transaction UID', (k) => ({ transactionUid: uid(1, k) })),
      time('calling AE + 24 h range', (k) => ({ callingAeTitle: `AET${k % 20}`, receivedFrom: start + k * 60_000, receivedTo: start + k * 60_000 + 86_400_000 })),
      time('SOP Instance UID + calling AE + 7 days', (k) => ({ sopInstanceUid: uid(3, k, 0), callingAeTitle: `AET${k % 20}`, receivedFrom: start, receivedTo: start + 7 * 86_400_000 })),
      time('no filter (first page, with total)', () => ({})),
    ];
    const storeBytes = fileBytes(store.path);
    store.close();
    return { instances: transactions * perTransaction, transactions, fillMs, indexMs, storeBytes, figures };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The store file and its WAL: both hold what was written. */
function fileBytes(path: string): number {
  return statSync(path).size + (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = benchSearch();
  console.log(`filled ${result.instances.toLocaleString('en')} instances in ${result.transactions.toLocaleString('en')} transactions in ${(result.fillMs / 1000).toFixed(1)} s (of which indexForSearch ${(result.indexMs / 1000).toFixed(1)} s); store ${(result.storeBytes / 1024 / 1024).toFixed(0)} MB`);
  for (const f of result.figures) console.log(`${f.search.padEnd(42)} median ${f.medianMs.toFixed(2)} ms  p99 ${f.p99Ms.toFixed(2)} ms  max ${f.maxMs.toFixed(2)} ms  (${f.runs} runs, last matched ${f.matched})`);
}
