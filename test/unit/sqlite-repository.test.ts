/** The TransactionRepository contract on the embedded SQLite store (the single-node default). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteTransactionRepository } from '../../src/store/sqlite-repository.js';
import { TransactionStore } from '../../src/store/transaction-store.js';
import { describeRepositoryContract } from '../contract/transaction-repository.contract.js';

describeRepositoryContract('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stgcmt-repo-'));
  const repo = new SqliteTransactionRepository(TransactionStore.open(dir, { synchronous: 'normal' }));
  return {
    repo,
    // One node on one file: "another node" is the same handle, and the claims still exclude each other.
    other: repo,
    close: async () => {
      await repo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

