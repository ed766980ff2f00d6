/**
 * The store is guarded: one sidecar per data directory (an OS lock, released when the holder dies), a
 * damaged or unusable store stops the start with one clear line, a store deleted under a running sidecar
 * shows as not ready and acknowledges nothing new (what it held is rescued), and a full disk (a real 4 MiB
 * tmpfs, mounted as root) neither loses a delivered report nor makes it re-sent in a storm.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { requestCommitment, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { ReportReceiver } from '../../src/cli/report-receiver.js';
import { DimseStatus } from '../../src/commitment/types.js';
import { refsOf, waitForTransaction } from '../harness/faults.js';
import { createInstances, freePort, type CreatedInstance, type OrthancServer } from '../harness/orthanc.js';
import { startSidecar, waitUntil, type SidecarProcess } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

interface Exit {
  readonly code: number | null;
  readonly stderr: string;
}

/** Runs `npm start`'s entry until it exits (or kills it after `timeoutMs`: it did not refuse to start). */
async function runUntilExit(orthanc: OrthancServer, env: Record<string, string>, timeoutMs = 15_000): Promise<Exit> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env['PATH'] ?? '',
      ORTHANC_URL: orthanc.url,
      STGCMT_DICOM_HOST: '127.0.0.1',
      STGCMT_HTTP_HOST: '127.0.0.1',
      STGCMT_DICOM_PORT: String(await freePort()),
      STGCMT_HTTP_PORT: String(await freePort()),
      STGCMT_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolveExit) => child.once('exit', (c) => resolveExit(c)));
  clearTimeout(timer);
  return { code, stderr };
}

function assertOneLine(exit: Exit, code: number, ...patterns: Array<RegExp | string>): void {
  assert.equal(exit.code, code, `exit code (stderr: ${exit.stderr})`);
  const lines = exit.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${exit.stderr}`);
  for (const pattern of patterns) {
    if (typeof pattern === 'string') assert.ok(lines[0]!.includes(pattern), `"${lines[0]}" names ${pattern}`);
    else assert.match(lines[0]!, pattern);
  }
}

type Ready = { status: string; checks: Record<string, { ok: boolean; reason: string }> };
async function readyz(sidecar: SidecarProcess): Promise<{ status: number; body: Ready }> {
  const response = await fetch(`${sidecar.url}/readyz`, { signal: AbortSignal.timeout(2000) });
  return { status: response.status, body: (await response.json()) as Ready };
}

function mountTmpfs(dir: string, options: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
}

/** Writes zeros until the file system refuses (ENOSPC), in big then small chunks. */
function fillDisk(path: string): number {
  const fd = openSync(path, 'w');
  let written = 0;
  try {
    for (const size of [256 * 1024, 4096, 512]) {
      const chunk = Buffer.alloc(size);
      for (;;) {
        try {
          written += writeSync(fd, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

describe('the store is guarded', () => {
  let stack: Stack;
  let pool: CreatedInstance[];
  let receiverPort: number;
  let peersFile: string;
  const take = (count: number): CreatedInstance[] => pool.splice(0, count);
  const target = (sidecar: SidecarProcess): ScuTarget => ({ host: '127.0.0.1', port: sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 });
  const mounts: string[] = [];

  /**
   * An N-ACTION recorded and acknowledged while TESTSCU's report receiver is down: the PACS is paused
   * meanwhile, so the report cannot go back on the requesting association.
   */
  const acknowledgedButUndelivered = async (sidecar: SidecarProcess): Promise<{ uid: string; refs: ReturnType<typeof refsOf> }> => {
    const refs = refsOf(take(2));
    stack.pacs.pause();
    let uid: string;
    try {
      const outcome = await requestCommitment(target(sidecar), refs, { keepOpenMs: 0, reportTimeoutMs: 0 });
      assert.equal(outcome.nAction.status, 0, 'acknowledged');
      uid = outcome.transactionUid;
    } finally {
      stack.pacs.resume();
    }
    await waitForTransaction(sidecar, uid, (t) => t.state === 'DELIVERY_RETRY', 20_000);
    return { uid, refs };
  };

  before(async () => {
    receiverPort = await freePort();
    stack = await startStack({ peers: [{ aet: 'TESTSCU', port: receiverPort }] });
    pool = await createInstances(stack.pacs, 20);
    peersFile = join(mkdtempSync('/dev/shm/stgcmt-peers-'), 'peers.json');
    writeFileSync(peersFile, JSON.stringify({ peers: [{ aet: 'TESTSCU', host: '127.0.0.1', port: receiverPort }] }));
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    for (const dir of mounts) {
      try {
        execFileSync('umount', ['-l', dir]);
      } catch {
        // already unmounted
      }
    }
  }, { timeout: 90_000 });

  it('a second sidecar on the same data directory refuses to start, naming it and its holder; kill -9 frees it at once', { timeout: 60_000 }, async () => {
    const second = await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: stack.sidecar.dataDir });
    assertOneLine(second, 3, stack.sidecar.dataDir, `pid ${stack.sidecar.pid}`);
    // The lock dies with its holder: an immediate restart after kill -9 takes it over.
    await stack.sidecar.kill('SIGKILL');
    await stack.sidecar.restart();
    await waitUntil(async () => (await readyz(stack.sidecar)).status === 200, 10_000);
    const third = await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: stack.sidecar.dataDir });
    assertOneLine(third, 3, stack.sidecar.dataDir, `pid ${stack.sidecar.pid}`);
  });

  it('a damaged store stops the start with one line and exit code 4, instead of starting "ready"', { timeout: 60_000 }, async () => {
    const sidecar = await startSidecar({ orthancUrl: stack.pacs.url, env: { STGCMT_PEERS_FILE: peersFile } });
    const { uid } = await acknowledgedButUndelivered(sidecar);
    assert.ok(uid);
    assert.equal(await sidecar.stop(), 0);
    const database = join(sidecar.dataDir, 'stgcmt.sqlite');
    const pristine = readFileSync(database);
    try {
      assert.ok(pristine.length >= 4 * 4096, `a store of several pages (${pristine.length} bytes)`);
      // Garbage over every page but the first (the header and schema stay readable).
      const damaged = Buffer.from(pristine);
      for (let i = 4096; i < damaged.length; i++) damaged[i] = (i * 7919 + 13) & 0xff;
      writeFileSync(database, damaged);
      assertOneLine(await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: sidecar.dataDir }), 4, database, /damaged/);
      // Not a database at all.
      writeFileSync(database, Buffer.alloc(pristine.length, 0x41));
      assertOneLine(await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: sidecar.dataDir }), 4, database, /damaged/);
    } finally {
      sidecar.cleanup();
    }
  });

  it('the store deleted while running: not ready, logged at error, new N-ACTIONs answered 0110H; acknowledged transactions are rescued', { timeout: 90_000 }, async () => {
    const sidecar = await startSidecar({ orthancUrl: stack.pacs.url, env: { STGCMT_PEERS_FILE: peersFile } });
    let receiver: ReportReceiver | undefined;
    try {
      const acknowledged = await acknowledgedButUndelivered(sidecar);
      for (const name of ['stgcmt.sqlite', 'stgcmt.sqlite-wal', 'stgcmt.sqlite-shm']) rmSync(join(sidecar.dataDir, name), { force: true });

      const ready = await readyz(sidecar);
      assert.equal(ready.status, 503, JSON.stringify(ready.body));
      assert.equal(ready.body.checks['store']?.ok, false);
      assert.match(ready.body.checks['store']!.reason, /deleted|replaced/);
      await sidecar.waitForLog((l) => l['level'] === 50 && /deleted|replaced/.test(String(l['msg'])), 10_000);

      const refused = await requestCommitment(target(sidecar), refsOf(take(1)), { keepOpenMs: 0, reportTimeoutMs: 0 });
      assert.equal(refused.nAction.status, DimseStatus.ProcessingFailure, 'nothing is acknowledged into a deleted file');

      assert.equal(await sidecar.stop(), 0);
      const rescued = readdirSync(sidecar.dataDir).filter((name) => name.startsWith('stgcmt.sqlite.rescued-'));
      assert.equal(rescued.length, 1, `one rescued copy: ${readdirSync(sidecar.dataDir).join(', ')}`);
      // A fresh empty store would silently forget the rescued transactions: the start refuses instead.
      await assert.rejects(sidecar.restart(), /exited with 4/);
      assert.match(readFileSync(sidecar.logFile, 'utf8'), new RegExp(`stgcmt\\.sqlite\\.rescued-[^ ]*`));

      // The operator puts the rescued copy back: the acknowledged transaction's report goes out.
      renameSync(join(sidecar.dataDir, rescued[0]!), join(sidecar.dataDir, 'stgcmt.sqlite'));
      receiver = new ReportReceiver({ aeTitle: 'TESTSCU', port: receiverPort, strictRoles: true });
      await receiver.start();
      await sidecar.restart();
      const report = await receiver.waitFor(acknowledged.uid, 20_000);
      assert.deepEqual(report.committed, acknowledged.refs);
      await waitForTransaction(sidecar, acknowledged.uid, (t) => t.state === 'REPORTED', 10_000);
    } finally {
      await sidecar.stop();
      sidecar.cleanup();
      await receiver?.stop();
    }
  });

  it('disk full (4 MiB tmpfs): a delivered report that cannot be recorded is not re-sent in a storm, and is recorded once space is back', { timeout: 90_000 }, async () => {
    const mountPoint = mkdtempSync('/tmp/stgcmt-full-');
    mountTmpfs(mountPoint, 'size=4m');
    mounts.push(mountPoint);
    const dataDir = join(mountPoint, 'data');
    mkdirSync(dataDir);
    const logFile = join(mkdtempSync('/dev/shm/stgcmt-log-'), 'sidecar.log');
    const sidecar = await startSidecar({ orthancUrl: stack.pacs.url, dataDir, logFile, env: { STGCMT_PEERS_FILE: peersFile } });
    const receiver = new ReportReceiver({ aeTitle: 'TESTSCU', port: receiverPort, strictRoles: true });
    const filler = join(mountPoint, 'filler');
    try {
      const acknowledged = await acknowledgedButUndelivered(sidecar);
      const filled = fillDisk(filler);
      assert.ok(statSync(filler).size === filled && filled > 0);

      const refused = await requestCommitment(target(sidecar), refsOf(take(1)), { keepOpenMs: 0, reportTimeoutMs: 0 });
      assert.equal(refused.nAction.status, DimseStatus.ProcessingFailure, 'nothing is acknowledged that cannot be recorded');

      await receiver.start();
      await receiver.waitFor(acknowledged.uid, 20_000);
      // The retry delays are 0.5 s to 2 s here: a storm would re-send every second.
      await sleep(6000);
      const sent = (): number => receiver.reports.filter((r) => r.transactionUid === acknowledged.uid).length;
      assert.equal(sent(), 1, 'delivered once; recording it is retried, not the delivery');
      assert.ok(sidecar.logLines().some((l) => l['level'] === 50 && /could not be recorded/.test(String(l['msg']))), 'logged at error level');

      // The write probe (every 5 s) has met the full disk by now.
      const ready = await readyz(sidecar);
      assert.equal(ready.status, 503, 'a full disk shows in /readyz');
      assert.equal(ready.body.checks['store']?.ok, false);
      assert.match(ready.body.checks['store']!.reason, /SQLITE_FULL/);
      // The dashboard's banner says it too (reading still works on a full disk).
      const alerts = (await sidecar.api<{ alerts: Array<{ kind: string; text: string }> }>('GET', '/api/summary')).body.alerts;
      assert.match(alerts.find((a) => a.kind === 'store-unhealthy')?.text ?? '', /^The store is unhealthy: .*SQLITE_FULL/);

      rmSync(filler);
      await waitForTransaction(sidecar, acknowledged.uid, (t) => t.state === 'REPORTED', 15_000);
      assert.equal(sent(), 1, 'recorded without sending again');
      await waitUntil(async () => (await readyz(sidecar)).status === 200, 15_000).catch(() => assert.fail('ready again once space is back'));
    } finally {
      rmSync(filler, { force: true });
      await sidecar.stop();
      await receiver.stop();
      execFileSync('umount', [mountPoint]);
      mounts.splice(mounts.indexOf(mountPoint), 1);
      rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  it('a data directory that is a file, lies under a file, or is read-only: one line naming the path, exit code 4', { timeout: 60_000 }, async () => {
    const base = mkdtempSync('/dev/shm/stgcmt-datadir-');
    const file = join(base, 'a-file');
    writeFileSync(file, 'not a directory');
    assertOneLine(await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: file }), 4, 'STGCMT_DATA_DIR', file, /not a directory/);
    assertOneLine(await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: join(file, 'sub') }), 4, 'STGCMT_DATA_DIR', join(file, 'sub'), /cannot create/);
    const readOnly = join(base, 'read-only');
    mkdirSync(readOnly);
    mountTmpfs(readOnly, 'size=1m,ro');
    mounts.push(readOnly);
    try {
      assertOneLine(await runUntilExit(stack.pacs, { STGCMT_DATA_DIR: readOnly }), 4, 'STGCMT_DATA_DIR', readOnly, /not writable/);
    } finally {
      execFileSync('umount', [readOnly]);
      mounts.splice(mounts.indexOf(readOnly), 1);
      rmSync(base, { recursive: true, force: true });
    }
    assert.ok(!existsSync(base));
  });
});
