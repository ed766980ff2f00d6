/**
 * The guards around the store, in process: the data directory claim, the integrity check at open, the
 * store's health, and no acknowledgement into a deleted file. (Across processes, with kill -9, a real full
 * disk and the exit codes: test/integration/store-guard.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { claimDataDir } from '../../src/store/data-dir.js';
import { EXIT_DATA_DIR_IN_USE, EXIT_STORE_UNUSABLE, StoreStartError, StoreUnavailableError } from '../../src/store/errors.js';
import { RESCUED_PREFIX, TransactionStore } from '../../src/store/transaction-store.js';
import type { NewRequest } from '../../src/transactions/records.js';
import { newRequest } from '../harness/store-fixtures.js';

const request = (transactionUid: string): NewRequest => newRequest({}, [`${transactionUid}.1`], transactionUid);
const dir = (): string => mkdtempSync(join(tmpdir(), 'stgcmt-guard-'));

function refusedWith(code: number, pattern: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof StoreStartError, String(error));
    assert.equal(error.exitCode, code);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes('\n'), 'one line');
    return true;
  };
}

describe('data directory claim', () => {
  it('a second claim on the same directory is refused, naming the directory and the holder; released, it can be claimed again', () => {
    const dataDir = dir();
    const first = claimDataDir(dataDir);
    assert.throws(() => claimDataDir(dataDir), refusedWith(EXIT_DATA_DIR_IN_USE, new RegExp(`${dataDir} is in use by another sidecar \\(pid ${process.pid} on host `)));
    first.release();
    claimDataDir(dataDir).release();
  });

  it('a directory that is a file, or lies under one, is refused with its path', () => {
    const file = join(dir(), 'file');
    writeFileSync(file, 'x');
    assert.throws(() => claimDataDir(file), refusedWith(EXIT_STORE_UNUSABLE, new RegExp(`STGCMT_DATA_DIR ${file}: not a directory`)));
    assert.throws(() => claimDataDir(join(file, 'sub')), refusedWith(EXIT_STORE_UNUSABLE, /cannot create \(ENOTDIR/));
  });
});

describe('store guards', () => {
  it('a damaged store is refused at open', () => {
    const dataDir = dir();
    const store = TransactionStore.open(dataDir, { synchronous: 'normal' });
    for (let i = 0; i < 50; i++) store.recordRequest(request(`9.${i}`));
    store.close();
    const path = join(dataDir, 'stgcmt.sqlite');
    const bytes = readFileSync(path);
    for (let i = 4096; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
    writeFileSync(path, bytes);
    assert.throws(() => TransactionStore.open(dataDir, { synchronous: 'normal' }), refusedWith(EXIT_STORE_UNUSABLE, /is damaged/));
  });

  it('the store file deleted: not healthy, nothing more acknowledged, what it held can be copied and the start refuses to begin empty', async () => {
    const dataDir = dir();
    const store = TransactionStore.open(dataDir, { synchronous: 'normal' });
    store.probeWrite(1);
    assert.equal(store.health().ok, true);
    const { id } = store.recordRequest(request('9.1'));
    for (const suffix of ['', '-wal', '-shm']) rmSync(join(dataDir, `stgcmt.sqlite${suffix}`), { force: true });
    const health = store.health();
    assert.equal(health.ok, false);
    assert.match(health.reason, /was deleted/);
    assert.throws(() => store.recordRequest(request('9.2')), StoreUnavailableError);
    const rescued = join(dataDir, `${RESCUED_PREFIX}test`);
    await store.copyTo(rescued);
    store.close();
    assert.throws(() => TransactionStore.open(dataDir, { synchronous: 'normal' }), refusedWith(EXIT_STORE_UNUSABLE, new RegExp(`${RESCUED_PREFIX}test`)));
    renameSync(rescued, join(dataDir, 'stgcmt.sqlite'));
    const back = TransactionStore.open(dataDir, { synchronous: 'normal' });
    assert.equal(back.get(id)?.transactionUid, '9.1', 'the acknowledged transaction is back');
    back.close();
  });
});
