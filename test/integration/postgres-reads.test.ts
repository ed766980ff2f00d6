/**
 * PostgresTransactionReads against a real PostgreSQL (test/harness/postgres.ts): the reads contract
 * (test/contract/transaction-reads.contract.ts), each test on an empty database of its own, the reads taken
 * from the repository that writes (PostgresTransactionRepository.reads(), one pool);
 * and, over 100,000 transactions, that every search term is answered through an index, never a scan.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createPool } from '../../src/store/postgres/pool.js';
import { PostgresTransactionReads } from '../../src/store/postgres/reads.js';
import { PostgresTransactionRepository } from '../../src/store/postgres/repository.js';
import { startPostgres, type PostgresServer } from '../harness/postgres.js';
import { describeReadsContract } from '../contract/transaction-reads.contract.js';

let server: PostgresServer;
let databases = 0;

before(async () => {
  server = await startPostgres();
});

after(async () => {
  await server?.stop();
});

describeReadsContract('PostgreSQL', async () => {
  const url = await server.createDatabase(`r${++databases}`);
  const repo = await PostgresTransactionRepository.open({ url, nodeId: 'reads-a' });
  return { repo, reads: repo.reads(), close: () => repo.close() };
});

describe('PostgreSQL reads at 100,000 transactions', () => {
  it('answers every search term through an index (no sequential scan), a search by SOP Instance UID in milliseconds', async () => {
    const url = await server.createDatabase('rlarge');
    const repo = await PostgresTransactionRepository.open({ url, nodeId: 'reads-large' });
    const pool = createPool({ url, nodeId: 'reads-large-explain' });
    try {
      const n = 100_000;
      await pool.query(
        `INSERT INTO transactions (transaction_uid, calling_aet, called_aet, state, instance_count, received_at, arrival_deadline, verify_deadline, expires_at, search_indexed)
         SELECT '2.25.' || g, 'AE' || (g % 20), 'STGCMT', CASE WHEN g % 10 = 0 THEN 'VERIFIED' ELSE 'REPORTED' END, 1, 1700000000000 + g * 1000, 0, 0, 0, TRUE
         FROM generate_series(1, $1::int) g`,
        [n],
      );
      await pool.query(`INSERT INTO instances (transaction_id, seq, sop_class_uid, sop_instance_uid, outcome) SELECT id, 0, '1.2.840.10008.5.1.4.1.1.2', '1.2.3.' || id, 'committed' FROM transactions`);
      await pool.query(`INSERT INTO instance_search (sop_instance_uid, transaction_id) SELECT sop_instance_uid, transaction_id FROM instances`);
      await pool.query(
        `INSERT INTO transaction_studies (transaction_id, study_uid, patient_id, patient_name, patient_name_key, accession_number)
         SELECT id, '1.2.4.' || id, 'P' || id, 'NAME' || id || '^X', 'NAME' || id || ' X', 'ACC' || id FROM transactions`,
      );
      await pool.query('ANALYZE');

      // The statements the reads send, captured, then explained with the same parameters.
      const sent: Array<{ text: string; values: unknown[] }> = [];
      const recording = { query: (text: string, values?: unknown[]) => (sent.push({ text, values: values ?? [] }), pool.query(text, values)) } as unknown as pg.Pool;
      const reads = new PostgresTransactionReads(recording);
      const searches = {
        sopInstanceUid: '1.2.3.54321',
        studyInstanceUid: '1.2.4.54321',
        accessionNumber: 'ACC54321',
        patient: 'name5432',
        transactionUid: '2.25.54321',
      };
      for (const [term, value] of Object.entries(searches)) {
        sent.length = 0;
        const started = performance.now();
        const page = await reads.list({ [term]: value, limit: 50, offset: 0 });
        const ms = performance.now() - started;
        assert.ok(page.total >= 1, `${term}: found`);
        for (const { text, values } of sent) {
          const { rows } = await pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, values);
          const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
          assert.doesNotMatch(plan, /Seq Scan/, `${term}: ${text}\n${plan}`);
        }
        console.log(`search by ${term} over ${n} transactions: ${ms.toFixed(1)} ms (count and page), ${page.total} found`);
      }
      sent.length = 0;
      const started = performance.now();
      const exported = [];
      for await (const page of reads.exportPages({ callingAeTitle: 'AE7' }, 3000, 1000)) exported.push(...page);
      assert.equal(exported.length, 3000);
      console.log(`export of 3,000 of one AE (3 keyset pages): ${(performance.now() - started).toFixed(1)} ms`);
      for (const { text, values } of sent) {
        const { rows } = await pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, values);
        assert.doesNotMatch(rows.map((r) => r['QUERY PLAN']).join('\n'), /Seq Scan/, text);
      }
    } finally {
      await pool.end();
      await repo.close();
    }
  });
});
