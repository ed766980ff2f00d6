/**
 * "Nothing lost", proven against real processes: the sidecar killed with SIGKILL at each point of a
 * transaction, the modality and the PACS paused (SIGSTOP) or stopped, late arrivals, corrupt files on the
 * PACS's disk, re-sent Transaction UIDs, hostile bytes on the DICOM port and an association cap. Every
 * peer is a real process on 127.0.0.1: Orthanc 1.10.1 (PACS and modality), the sidecar as a child
 * process, and our own dcmjs-based SCU and report receiver.
 *
 * Pausing the PACS while the modality sends its N-ACTION is how these tests hold a transaction at a
 * chosen point: the request is recorded and answered (no Orthanc needed), then verification hangs on
 * the paused PACS until the test lets it go.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { rm, truncate, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, echo, requestCommitment, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { ReportReceiver } from '../../src/cli/report-receiver.js';
import { FailureReason, STORAGE_COMMITMENT_SOP_CLASS } from '../../src/commitment/types.js';
import { constants, internals } from '../../src/dicom/dimse.js';
import { AssociationRejectedError } from '../../src/dicom/requestor.js';
import {
  apiTransaction,
  apiTransactionsWithUid,
  awaitOrthancReport,
  establishedConnectionsTo,
  filler,
  nActionCommand,
  pDataTf,
  pduHeader,
  Pool,
  prepareInstances,
  rawExchange,
  refsOf,
  rssKb,
  sendOrthancCommitment,
  storedFilePath,
  storePrepared,
  storeRowsWithUid,
  waitForTransaction,
  type ApiTransactionDetail,
} from '../harness/faults.js';
import { createInstances, freePort, newUid, SECONDARY_CAPTURE_SOP_CLASS, type SopRef, type StorageCommitmentReport } from '../harness/orthanc.js';
import { waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const SC = SECONDARY_CAPTURE_SOP_CLASS;
const absentRef = (): SopRef => ({ sopClassUid: SC, sopInstanceUid: newUid() });

/** The report Orthanc (as SCU) received is exactly the expected one, sent by the sidecar's AE title. */
function assertOrthancReport(report: StorageCommitmentReport, committed: readonly SopRef[], failed: ReadonlyArray<SopRef & { reason: number }>): void {
  assert.equal(report.Status, failed.length > 0 ? 'Failure' : 'Success', `report status (failures: ${JSON.stringify(report.Failures?.slice(0, 3))})`);
  assert.equal(report.RemoteAET, 'STGCMT');
  assert.deepEqual((report.Success ?? []).map((s) => s.SOPInstanceUID).sort(), committed.map((c) => c.sopInstanceUid).sort(), 'committed instances');
  const reasons = new Map((report.Failures ?? []).map((f) => [f.SOPInstanceUID, f.FailureReason]));
  assert.deepEqual(reasons, new Map(failed.map((f) => [f.sopInstanceUid, f.reason])), 'failed instances and their reasons');
}

/** The sidecar holds exactly one transaction for the UID (API and its SQLite store), and it is REPORTED. */
async function assertOneReportedTransaction(stack: Stack, uid: string): Promise<ApiTransactionDetail> {
  // The store records the delivery right after the modality's N-EVENT-REPORT-RSP: we may be faster.
  const detail = await waitForTransaction(stack.sidecar, uid, (t) => t.state === 'REPORTED', 10_000);
  const listed = await apiTransactionsWithUid(stack.sidecar, uid);
  assert.equal(listed.length, 1, 'one transaction in the API');
  const rows = storeRowsWithUid(stack.sidecar, uid);
  assert.equal(rows.length, 1, 'one transaction in the store');
  assert.equal(rows[0]!.state, 'REPORTED');
  assert.ok(detail.deliveryAttemptLog.some((a) => a.ok), 'a successful delivery attempt is on record');
  assert.equal(detail.lastError, null);
  return detail;
}

/** Holds the transaction before verification: PACS paused while the modality's N-ACTION is recorded. */
async function sendWhilePacsPaused(stack: Stack, refs: readonly SopRef[]): Promise<string> {
  stack.pacs.pause();
  try {
    const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refs);
    const recorded = await waitForTransaction(stack.sidecar, id, () => true, 5000);
    assert.equal(recorded.state, 'RECEIVED', 'recorded, verification held by the paused PACS');
    return id;
  } catch (error) {
    stack.pacs.resume();
    throw error;
  }
}

const failedAttempts = (t: ApiTransactionDetail): ApiTransactionDetail['deliveryAttemptLog'] => t.deliveryAttemptLog.filter((a) => !a.ok);

describe('sidecar killed (SIGKILL) mid-transaction, modality unreachable when the report is due', () => {
  let stack: Stack;
  let pool: Pool;
  let receiverPort: number;
  let receiver: ReportReceiver | undefined;

  before(async () => {
    receiverPort = await freePort();
    stack = await startStack({ peers: [{ aet: 'TESTSCU', port: receiverPort }] });
    pool = new Pool(await createInstances(stack.pacs, 60));
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
  }, { timeout: 90_000 });

  it('kill -9 after the N-ACTION-RSP, before the report is delivered (modality paused): delivered after restart', { timeout: 60_000 }, async () => {
    const refs = refsOf(pool.take(5));
    const id = await sendWhilePacsPaused(stack, refs);
    stack.modality.pause();
    try {
      stack.pacs.resume();
      // Verified, then a report association to the paused modality that times out (STGCMT_REPORT_TIMEOUT=5s).
      const pending = await waitForTransaction(stack.sidecar, id, (t) => t.state === 'DELIVERY_RETRY', 20_000);
      assert.equal(pending.committed, 5);
      assert.ok(failedAttempts(pending).length >= 1 && !pending.deliveryAttemptLog.some((a) => a.ok));
      await stack.sidecar.kill('SIGKILL');
      await stack.sidecar.restart();
    } finally {
      stack.modality.resume();
    }
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    assertOrthancReport(report, refs, []);
    await assertOneReportedTransaction(stack, id);
  });

  it('kill -9 during verification (PACS paused, lookup hanging): completes correctly after restart', { timeout: 60_000 }, async () => {
    const present = refsOf(pool.take(4));
    const absent = absentRef();
    const id = await sendWhilePacsPaused(stack, [...present, absent]);
    try {
      // Past STGCMT_ARRIVAL_WAIT (1s): nothing may be judged while Orthanc cannot be asked.
      await sleep(1500);
      const held = await apiTransaction(stack.sidecar, id);
      assert.equal(held?.state, 'RECEIVED');
      assert.ok(held.instanceOutcomes.every((i) => i.outcome === 'pending'));
      await stack.sidecar.kill('SIGKILL');
    } finally {
      stack.pacs.resume();
    }
    await stack.sidecar.restart();
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    assertOrthancReport(report, present, [{ ...absent, reason: FailureReason.NoSuchObjectInstance }]);
    await assertOneReportedTransaction(stack, id);
  });

  it('kill -9 during delivery (report association open to the paused modality): delivered after restart', { timeout: 60_000 }, async () => {
    const refs = refsOf(pool.take(5));
    const id = await sendWhilePacsPaused(stack, refs);
    stack.modality.pause();
    try {
      stack.pacs.resume();
      // The attempt's TCP connection to the modality shows it is in flight (past the 'delivering report' line).
      await waitUntil(() => establishedConnectionsTo(stack.sidecar.pid, stack.modality.dicomPort) >= 1, 4000, 20);
      const inFlight = await apiTransaction(stack.sidecar, id);
      assert.equal(inFlight?.state, 'VERIFIED', 'verified, first attempt in flight');
      assert.equal(inFlight.deliveryAttempts, 0);
      await stack.sidecar.kill('SIGKILL');
      await stack.sidecar.restart();
    } finally {
      stack.modality.resume();
    }
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    assertOrthancReport(report, refs, []);
    await assertOneReportedTransaction(stack, id);
  });

  it('modality Orthanc paused when the report is due: retried, delivered once it is back', { timeout: 60_000 }, async () => {
    const refs = refsOf(pool.take(5));
    const absent = absentRef();
    const id = await sendWhilePacsPaused(stack, [...refs, absent]);
    stack.modality.pause();
    try {
      stack.pacs.resume();
      const retrying = await waitForTransaction(stack.sidecar, id, (t) => failedAttempts(t).length >= 2, 30_000);
      assert.ok(['VERIFIED', 'DELIVERY_RETRY'].includes(retrying.state), retrying.state);
      assert.ok(!retrying.deliveryAttemptLog.some((a) => a.ok));
    } finally {
      stack.modality.resume();
    }
    const report = await awaitOrthancReport(stack.modality, id, 20_000);
    assertOrthancReport(report, refs, [{ ...absent, reason: FailureReason.NoSuchObjectInstance }]);
    const done = await assertOneReportedTransaction(stack, id);
    assert.equal(done.deliveryAttemptLog.at(-1)?.ok, true, 'the last attempt is the successful one');
  });

  it('report receiver stopped when the report is due: retried with backoff, delivered after it restarts on the same port', { timeout: 60_000 }, async () => {
    const target: ScuTarget = { host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 };
    const refs = refsOf(pool.take(3));
    // Nothing listens on TESTSCU's port. The PACS is paused during the N-ACTION so that the report cannot
    // go back on the requesting association: it is released before verification can finish.
    stack.pacs.pause();
    let uid: string;
    try {
      const outcome = await requestCommitment(target, refs, { keepOpenMs: 0, reportTimeoutMs: 0 });
      assert.equal(outcome.nAction.status, 0);
      uid = outcome.transactionUid;
    } finally {
      stack.pacs.resume();
    }
    const retrying = await waitForTransaction(stack.sidecar, uid, (t) => failedAttempts(t).length >= 3, 20_000);
    assert.ok(!retrying.deliveryAttemptLog.some((a) => a.ok));

    receiver = new ReportReceiver({ aeTitle: 'TESTSCU', port: receiverPort, strictRoles: true });
    await receiver.start();
    const backAt = Date.now();
    const report = await receiver.waitFor(uid, 15_000);
    const waitedMs = Date.now() - backAt;
    assert.equal(report.eventTypeId, 1);
    assert.deepEqual(report.committed, refs);
    assert.equal(report.failed.length, 0);

    const done = await assertOneReportedTransaction(stack, uid);
    // Backoff (STGCMT_RETRY_INITIAL=500ms, STGCMT_RETRY_MAX=2s, ±20 % jitter): gap k >= 0.8 x min(500 x 2^(k-1), 2000).
    // Upper bound: the capped delay, plus the once-a-second job that picks due retries, plus slack.
    const times = done.deliveryAttemptLog.map((a) => Date.parse(a.at));
    for (let k = 1; k < times.length; k++) {
      const nominal = Math.min(500 * 2 ** (k - 1), 2000);
      const gap = times[k]! - times[k - 1]!;
      assert.ok(gap >= 0.8 * nominal - 50, `gap ${k} is ${gap} ms, below the backoff of ${nominal} ms -20 %`);
      assert.ok(gap <= 1.2 * nominal + 3000, `gap ${k} is ${gap} ms: retries stalled`);
    }
    assert.ok(waitedMs <= 1.2 * 2000 + 3000, `report came ${waitedMs} ms after the receiver was back`);
  });
});

describe('PACS Orthanc stopped during a transaction', () => {
  let stack: Stack;
  let pool: Pool;

  before(async () => {
    stack = await startStack();
    pool = new Pool(await createInstances(stack.pacs, 30));
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 90_000 });

  it('N-ACTION accepted and recorded while the PACS is down; completes correctly once it is back', { timeout: 60_000 }, async () => {
    const present = refsOf(pool.take(5));
    const absent = absentRef();
    await stack.pacs.kill('SIGTERM');
    let id: string;
    try {
      id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, [...present, absent]);
      // Past STGCMT_ARRIVAL_WAIT: an instance Orthanc could not be asked about is not "absent".
      await sleep(1500);
      const held = await apiTransaction(stack.sidecar, id);
      assert.equal(held?.state, 'RECEIVED');
      assert.ok(held.instanceOutcomes.every((i) => i.outcome === 'pending'));
    } finally {
      await stack.pacs.restart();
    }
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    assertOrthancReport(report, present, [{ ...absent, reason: FailureReason.NoSuchObjectInstance }]);
    await assertOneReportedTransaction(stack, id);
  });

  it('sidecar restarted while the PACS is down: the stored peer list still admits the modality; completes once the PACS is back', { timeout: 60_000 }, async () => {
    const present = refsOf(pool.take(5));
    await stack.pacs.kill('SIGTERM');
    let id: string;
    try {
      await stack.sidecar.kill('SIGKILL');
      const linesBefore = stack.sidecar.logLines().length;
      await stack.sidecar.restart();
      // The child's output reaches the log file through a pipe: wait for the line rather than race it.
      const knowsModality = (l: Record<string, unknown>): boolean => l['msg'] === 'peers loaded' && (l['peers'] as string[]).includes(`MODALITY@127.0.0.1:${stack.modality.dicomPort}`);
      await waitUntil(() => stack.sidecar.logLines().slice(linesBefore).some((l) => l['msg'] === 'peers loaded'), 5000);
      const startup = stack.sidecar.logLines().slice(linesBefore);
      assert.ok(startup.some(knowsModality), `the modality is known from the store: ${JSON.stringify(startup.filter((l) => l['msg'] === 'peers loaded'))}`);
      id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, present);
      const held = await waitForTransaction(stack.sidecar, id, () => true, 5000);
      assert.equal(held.state, 'RECEIVED');
    } finally {
      await stack.pacs.restart();
    }
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    assertOrthancReport(report, present, []);
    await assertOneReportedTransaction(stack, id);
  });

  it('PACS down past STGCMT_VERIFY_TIMEOUT (4s): the undecided instances fail with 0110H', { timeout: 60_000 }, async () => {
    await stack.sidecar.restart({ STGCMT_VERIFY_TIMEOUT: '4s' });
    const present = refsOf(pool.take(3));
    const absent = absentRef();
    await stack.pacs.kill('SIGTERM');
    let report: StorageCommitmentReport;
    let id: string;
    try {
      const started = Date.now();
      id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, [...present, absent]);
      report = await awaitOrthancReport(stack.modality, id, 20_000);
      assert.ok(Date.now() - started >= 3900, 'not judged before the verification window closed');
    } finally {
      await stack.pacs.restart();
    }
    assertOrthancReport(report, [], [...present, absent].map((r) => ({ ...r, reason: FailureReason.ProcessingFailure })));
    const detail = await assertOneReportedTransaction(stack, id);
    assert.ok(detail.instanceOutcomes.every((i) => i.outcome === 'failed' && i.failureReason === FailureReason.ProcessingFailure));
  });

  it('PACS hung (SIGSTOP, requests time out after STGCMT_ORTHANC_TIMEOUT=2s) past STGCMT_VERIFY_TIMEOUT: 0110H', { timeout: 60_000 }, async () => {
    await stack.sidecar.restart({ STGCMT_VERIFY_TIMEOUT: '4s', STGCMT_ORTHANC_TIMEOUT: '2s' });
    const present = refsOf(pool.take(3));
    stack.pacs.pause();
    let report: StorageCommitmentReport;
    let id: string;
    try {
      id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, present);
      report = await awaitOrthancReport(stack.modality, id, 30_000);
    } finally {
      stack.pacs.resume();
    }
    assertOrthancReport(report, [], present.map((r) => ({ ...r, reason: FailureReason.ProcessingFailure })));
    await assertOneReportedTransaction(stack, id);
  });
});

describe('late arrivals (STGCMT_ARRIVAL_WAIT=15s)', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ sidecarEnv: { STGCMT_ARRIVAL_WAIT: '15s' } });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 90_000 });

  // The case the changes follower exists for (a modality sends its N-ACTION right after its last C-STORE,
  // before Orthanc has indexed everything): instances indexed a moment after the sidecar first looked for
  // them. Runs first, while no other transaction waits. The sidecar's jobs run on whole seconds
  // (node-cron); starting just after a second boundary makes the arrival land between the first lookup
  // and the next read of the changes feed, the window where an arrival is easiest to miss.
  it('instances stored 150 ms after the N-ACTION-RSP are reported promptly, not after the 15 s window', { timeout: 60_000 }, async () => {
    const late = prepareInstances(3);
    await sleep((1050 - (Date.now() % 1000)) % 1000);
    const started = Date.now();
    const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(late));
    await sleep(150);
    await storePrepared(stack.pacs, late);
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    const elapsedMs = Date.now() - started;
    assertOrthancReport(report, refsOf(late), []);
    await assertOneReportedTransaction(stack, id);
    assert.ok(elapsedMs < 8000, `reported after ${elapsedMs} ms: the arrival was missed and the 15 s arrival window waited out`);
  });

  it('kill -9 while waiting for a late arrival, which lands while the sidecar is down: noticed after restart', { timeout: 60_000 }, async () => {
    const present = refsOf(await createInstances(stack.pacs, 2));
    const late = prepareInstances(2);
    const started = Date.now();
    const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, [...present, ...refsOf(late)]);
    const waiting = await waitForTransaction(stack.sidecar, id, (t) => t.instanceOutcomes.filter((i) => i.outcome === 'committed').length === 2, 5000);
    assert.equal(waiting.state, 'RECEIVED');
    assert.equal(waiting.instanceOutcomes.filter((i) => i.outcome === 'pending').length, 2);
    await stack.sidecar.kill('SIGKILL');
    await storePrepared(stack.pacs, late);
    await stack.sidecar.restart();
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    const elapsedMs = Date.now() - started;
    assertOrthancReport(report, [...present, ...refsOf(late)], []);
    await assertOneReportedTransaction(stack, id);
    assert.ok(elapsedMs < 12_000, `reported after ${elapsedMs} ms: the arrival was missed and the 15 s window waited out`);
  });

  it('instances stored 2.5 s after the N-ACTION commit; one that never arrives fails with 0112H after the wait', { timeout: 60_000 }, async () => {
    const late = prepareInstances(5);
    const lateInMixed = prepareInstances(1);
    const present = refsOf(await createInstances(stack.pacs, 2));
    const never = absentRef();

    const started = Date.now();
    const [lateId, mixedId] = await Promise.all([
      sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(late)),
      sendOrthancCommitment(stack.modality, stack.sidecarModalityName, [...present, ...refsOf(lateInMixed), never]),
    ]);
    await sleep(2500);
    await storePrepared(stack.pacs, [...late, ...lateInMixed]);

    const lateReport = await awaitOrthancReport(stack.modality, lateId, 20_000);
    const lateMs = Date.now() - started;
    assertOrthancReport(lateReport, refsOf(late), []);
    // The arrival was noticed (changes feed), not merely waited out.
    assert.ok(lateMs < 12_000, `late instances reported after ${lateMs} ms: the 15 s window was waited out`);

    const mixedReport = await awaitOrthancReport(stack.modality, mixedId, 30_000);
    const mixedMs = Date.now() - started;
    assertOrthancReport(mixedReport, [...present, ...refsOf(lateInMixed)], [{ ...never, reason: FailureReason.NoSuchObjectInstance }]);
    assert.ok(mixedMs >= 15_000, `the missing instance was judged after ${mixedMs} ms, before the 15 s arrival wait ended`);
    await assertOneReportedTransaction(stack, lateId);
    await assertOneReportedTransaction(stack, mixedId);
  });
});

describe('STGCMT_VERIFY=md5 against files corrupted on the PACS disk', () => {
  let stack: Stack;

  before(async () => {
    // The storage settings we ship (orthanc-config/orthanc.json): no storage cache, so Orthanc re-reads the
    // file, and MD5s stored at reception (which the harness turns off for speed) to compare with. Measured:
    // with its default cache (128 MB), Debian's Orthanc 1.10.1 answers 200 for a file corrupted after it
    // was read; 1.12.7 re-reads either way.
    const shipped = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'orthanc-config', 'orthanc.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(shipped['MaximumStorageCacheSize'], 0, 'the shipped configuration turns the storage cache off');
    assert.equal(shipped['StoreMD5ForAttachments'], true, 'the shipped configuration records MD5s');
    stack = await startStack({ sidecarEnv: { STGCMT_VERIFY: 'md5' }, pacsConfig: { MaximumStorageCacheSize: shipped['MaximumStorageCacheSize'], StoreMD5ForAttachments: shipped['StoreMD5ForAttachments'] } });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 90_000 });

  it('a flipped byte and a deleted file fail with 0110H; the intact instances commit', { timeout: 60_000 }, async () => {
    const instances = await createInstances(stack.pacs, 6);
    const flipped = instances[1]!;
    const deleted = instances[4]!;
    const flippedPath = await storedFilePath(stack.pacs, flipped.orthancId);
    // Read through Orthanc first: a storage cache, if any, now holds the intact copy.
    await stack.pacs.rest('GET', `/instances/${flipped.orthancId}/file`);
    const bytes = await readFile(flippedPath);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0xff;
    await writeFile(flippedPath, bytes);
    await rm(await storedFilePath(stack.pacs, deleted.orthancId));

    const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(instances));
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    const intact = instances.filter((i) => i !== flipped && i !== deleted);
    assertOrthancReport(report, refsOf(intact), [flipped, deleted].map((i) => ({ ...i, reason: FailureReason.ProcessingFailure })));
    await assertOneReportedTransaction(stack, id);
  });

  it('a truncated file fails with 0110H', { timeout: 60_000 }, async () => {
    const instances = await createInstances(stack.pacs, 3);
    const cut = instances[0]!;
    await truncate(await storedFilePath(stack.pacs, cut.orthancId), 100);
    const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(instances));
    const report = await awaitOrthancReport(stack.modality, id, 30_000);
    assertOrthancReport(report, refsOf(instances.slice(1)), [{ ...cut, reason: FailureReason.ProcessingFailure }]);
  });
});

describe('duplicates, hostile input and load on the DICOM port', () => {
  let stack: Stack;
  let pool: Pool;
  let receiver: ReportReceiver;
  let sidecarPid: number;

  const target = (timeoutMs = 10_000): ScuTarget => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs });

  const openAssociations = async (): Promise<number> => {
    const text = await (await fetch(`${stack.sidecar.url}/metrics`)).text();
    const match = /^stgcmt_open_associations (\d+)/m.exec(text);
    assert.ok(match, 'stgcmt_open_associations exported');
    return Number(match[1]);
  };

  /** Still up and still right: same process, /healthz, C-ECHO, a normal commitment with a correct report. */
  const assertStillServing = async (): Promise<void> => {
    assert.equal(stack.sidecar.pid, sidecarPid, 'the sidecar process did not change');
    process.kill(sidecarPid, 0);
    const health = await fetch(`${stack.sidecar.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok', node: hostname() });
    const open = await connect(target());
    try {
      assert.equal(await echo(open, 5000), 0);
    } finally {
      await open.release();
    }
    const refs = refsOf(pool.take(2));
    const outcome = await requestCommitment(target(), refs, { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver });
    assert.equal(outcome.nAction.status, 0);
    assert.ok(outcome.report, 'report received');
    assert.equal(outcome.report.eventTypeId, 1);
    assert.deepEqual(outcome.report.committed, refs);
    await waitUntil(async () => (await openAssociations()) === 0, 5000);
  };

  const refusals = (): number => stack.sidecar.logLines().filter((l) => l['msg'] === 'refusing malformed or oversized PDU; aborting association').length;

  before(async () => {
    const receiverPort = await freePort();
    receiver = new ReportReceiver({ aeTitle: 'TESTSCU', port: receiverPort, strictRoles: true });
    await receiver.start();
    // One test opens 50 associations at once from one AE on one host: lift the per-AE/per-host shares.
    stack = await startStack({ peers: [{ aet: 'TESTSCU', port: receiverPort }], sidecarEnv: { STGCMT_MAX_ASSOCIATIONS_PER_AE: '64', STGCMT_MAX_CONNECTIONS_PER_HOST: '128' } });
    pool = new Pool(await createInstances(stack.pacs, 2200));
    sidecarPid = stack.sidecar.pid;
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
  }, { timeout: 90_000 });

  it('the same Transaction UID re-sent with the same instances: one transaction, the report sent again', { timeout: 60_000 }, async () => {
    const refs = refsOf(pool.take(3));
    const transactionUid = newUid();
    const options = { transactionUid, keepOpenMs: 10_000, reportTimeoutMs: 10_000 };
    const first = await requestCommitment(target(), refs, options);
    assert.equal(first.nAction.status, 0);
    assert.ok(first.report, 'report received');
    assert.equal(first.report.eventTypeId, 1);
    assert.deepEqual(first.report.committed, refs);
    await waitForTransaction(stack.sidecar, transactionUid, (t) => t.state === 'REPORTED', 5000);

    const again = await requestCommitment(target(), refs, options);
    assert.equal(again.nAction.status, 0);
    assert.ok(again.report, 'the report is sent again');
    assert.equal(again.report.eventTypeId, 1);
    assert.deepEqual(again.report.committed, refs);
    assert.equal(again.report.failed.length, 0);
    const detail = await waitForTransaction(stack.sidecar, transactionUid, (t) => t.state === 'REPORTED' && t.deliveryAttemptLog.filter((a) => a.ok).length === 2, 5000);
    assert.equal(detail.instances, 3);
    assert.equal((await apiTransactionsWithUid(stack.sidecar, transactionUid)).length, 1);
    assert.equal(storeRowsWithUid(stack.sidecar, transactionUid).length, 1);
  });

  it('the same Transaction UID re-sent with other instances: the extra ones fail with 0131H in the report', { timeout: 60_000 }, async () => {
    const refs = refsOf(pool.take(3));
    const extra = refsOf(pool.take(2));
    const transactionUid = newUid();
    const options = { transactionUid, keepOpenMs: 10_000, reportTimeoutMs: 10_000 };
    const first = await requestCommitment(target(), refs, options);
    assert.equal(first.report?.eventTypeId, 1);
    await waitForTransaction(stack.sidecar, transactionUid, (t) => t.state === 'REPORTED', 5000);

    const conflicting = await requestCommitment(target(), [...refs, ...extra], options);
    assert.equal(conflicting.nAction.status, 0);
    assert.ok(conflicting.report, 'a report for the re-sent request');
    assert.equal(conflicting.report.eventTypeId, 2);
    assert.deepEqual(conflicting.report.committed, refs);
    assert.deepEqual(conflicting.report.failed, extra.map((r) => ({ ...r, failureReason: FailureReason.DuplicateTransactionUid })));
    const listed = await apiTransactionsWithUid(stack.sidecar, transactionUid);
    assert.equal(listed.length, 1);
    const detail = await waitForTransaction(stack.sidecar, transactionUid, (t) => t.state === 'REPORTED', 5000);
    assert.equal(detail.instances, 5);
    assert.equal(detail.failed, 2);
  });

  it('garbage bytes: connection closed, service unharmed', { timeout: 60_000 }, async () => {
    const before = refusals();
    const http = await rawExchange(stack.sidecar.dicomPort, [Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')], { then: 'wait', waitMs: 5000 });
    assert.ok(http.closedByPeer, 'an HTTP request on the DICOM port is dropped');
    const noise = Buffer.alloc(64 * 1024);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) & 0xff;
    noise[0] = 0xff;
    const random = await rawExchange(stack.sidecar.dicomPort, [noise], { then: 'wait', waitMs: 5000 });
    assert.ok(random.closedByPeer, 'noise is dropped');
    await waitUntil(() => refusals() >= before + 2, 3000).catch(() => assert.fail('each refusal is logged'));
    // Well-framed PDUs with garbage inside, or out of place.
    const framed: Array<[string, Buffer]> = [
      ['A-ASSOCIATE-RQ of zeros', Buffer.concat([pduHeader(0x01, 68), Buffer.alloc(68)])],
      ['A-ASSOCIATE-RQ of noise', Buffer.concat([pduHeader(0x01, 5000), noise.subarray(0, 5000)])],
      ['P-DATA-TF before any association', Buffer.concat([pduHeader(0x04, 20), noise.subarray(0, 20)])],
      ['A-ASSOCIATE-AC sent to the acceptor', Buffer.concat([pduHeader(0x02, 68), Buffer.alloc(68)])],
    ];
    for (const [name, bytes] of framed) {
      const outcome = await rawExchange(stack.sidecar.dicomPort, [bytes], { then: 'wait', waitMs: 5000 });
      assert.ok(outcome.closedByPeer, `${name}: connection closed`);
    }
    await assertStillServing();
  });

  it('a truncated PDU, then close: service unharmed, no association left open', { timeout: 60_000 }, async () => {
    // A-ASSOCIATE-RQ announcing 1000 bytes, 100 sent.
    const rq = Buffer.concat([pduHeader(0x01, 1000), Buffer.alloc(100, 0x20)]);
    await rawExchange(stack.sidecar.dicomPort, [rq], { then: 'close', waitMs: 0 });
    // Inside an accepted association: a P-DATA-TF announcing 500 bytes, 10 sent.
    const open = await connect(target());
    await rawExchange(stack.sidecar.dicomPort, [Buffer.concat([pduHeader(0x04, 500), Buffer.alloc(10)])], { then: 'close', waitMs: 0, socket: internals(open.network).socket });
    await assertStillServing();
  });

  it('a P-DATA-TF header announcing 2 GB is refused at once; memory stays small', { timeout: 60_000 }, async (t) => {
    const before = refusals();
    const rssBefore = rssKb(sidecarPid);
    const streamed = 128 * 1024 * 1024;
    // On a bare connection...
    const bare = await rawExchange(stack.sidecar.dicomPort, [pduHeader(0x04, 0x80000000), ...filler(streamed)], { then: 'wait', waitMs: 10_000 });
    assert.ok(bare.closedByPeer, 'connection closed by the sidecar');
    assert.ok(bare.written < streamed, `the sidecar took all ${bare.written} bytes`);
    // ...and inside an accepted association.
    const open = await connect(target());
    const inside = await rawExchange(stack.sidecar.dicomPort, [pduHeader(0x04, 0x80000000), ...filler(streamed)], { then: 'wait', waitMs: 10_000, socket: internals(open.network).socket });
    assert.ok(inside.closedByPeer, 'association aborted by the sidecar');
    assert.ok(inside.written < streamed, `the sidecar took all ${inside.written} bytes`);
    await sleep(500);
    const grownKb = rssKb(sidecarPid) - rssBefore;
    t.diagnostic(`VmRSS ${Math.round(rssBefore / 1024)} MiB before, grew by ${Math.round(grownKb / 1024)} MiB; bytes taken before the close: ${bare.written} (bare), ${inside.written} (in association)`);
    assert.ok(grownKb < 48 * 1024, `VmRSS grew by ${Math.round(grownKb / 1024)} MiB`);
    await waitUntil(() => refusals() >= before + 2, 3000).catch(() => assert.fail('both refusals are logged'));
    await assertStillServing();
  });

  // The PDU guard bounds each PDU; nothing else bounds one DIMSE message made of many conformant PDUs. A
  // legitimate N-ACTION of STGCMT_MAX_INSTANCES (200,000) references is about 25 MB; 256 MiB is not one.
  it('an N-ACTION data set streamed without end in conformant 256 KiB PDUs is cut off; memory stays small', { timeout: 90_000 }, async (t) => {
    const open = await connect(target());
    const context = open.association
      .getPresentationContexts()
      .map(({ context: c }) => c)
      .find((c) => c.getAbstractSyntaxUid() === STORAGE_COMMITMENT_SOP_CLASS && c.getResult() === constants.PresentationContextResult.Accept);
    assert.ok(context, 'Storage Commitment context accepted');
    const contextId = context.getPresentationContextId();
    const fragment = pDataTf(contextId, 0x00, Buffer.alloc(262_144 - 6, 0x41)); // data, not the last fragment
    const streamed = 256 * 1024 * 1024;
    function* chunks(): Generator<Buffer> {
      yield pDataTf(contextId, 0x03, nActionCommand(1)); // command, last fragment
      for (let sent = 0; sent < streamed; sent += fragment.length) yield fragment;
    }
    const rssBefore = rssKb(sidecarPid);
    const outcome = await rawExchange(stack.sidecar.dicomPort, chunks(), { then: 'wait', waitMs: 5000, socket: internals(open.network).socket });
    const grownKb = rssKb(sidecarPid) - rssBefore;
    const taken = `${Math.round(outcome.written / 1024 / 1024)} MiB sent, association ${outcome.closedByPeer ? 'closed' : 'still open'}`;
    t.diagnostic(`VmRSS ${Math.round(rssBefore / 1024)} MiB before, grew by ${Math.round(grownKb / 1024)} MiB; ${taken}`);
    assert.ok(grownKb < 100 * 1024, `VmRSS grew by ${Math.round(grownKb / 1024)} MiB buffering one data set (${taken})`);
    assert.ok(outcome.closedByPeer, `one data set of ${taken}: never refused`);
    await assertStillServing();
  });

  it('50 concurrent associations, each with a commitment: all answered and reported correctly', { timeout: 90_000 }, async () => {
    const batches = Array.from({ length: 50 }, () => refsOf(pool.take(2)));
    const outcomes = await Promise.all(batches.map((refs) => requestCommitment(target(30_000), refs, { keepOpenMs: 20_000, reportTimeoutMs: 30_000, receiver })));
    outcomes.forEach((outcome, i) => {
      assert.equal(outcome.nAction.status, 0, `association ${i}`);
      assert.ok(outcome.report, `association ${i}: report received`);
      assert.equal(outcome.report.eventTypeId, 1, `association ${i}`);
      assert.deepEqual(outcome.report.committed, batches[i]);
    });
    for (const outcome of outcomes) await assertOneReportedTransaction(stack, outcome.transactionUid);
    await assertStillServing();
  });

  it('an N-ACTION with 100,000 items (2,000 stored): the report is exact', { timeout: 120_000 }, async (t) => {
    const stored = refsOf(pool.take(2000));
    const refs: SopRef[] = [];
    for (let i = 0; i < 98_000; i++) {
      refs.push(absentRef());
      if (i % 49 === 0) refs.push(stored[i / 49]!);
    }
    assert.equal(refs.length, 100_000);
    const outcome = await requestCommitment(target(60_000), refs, { keepOpenMs: 30_000, reportTimeoutMs: 60_000, receiver });
    t.diagnostic(`100,000 items: N-ACTION to report in ${Math.round(outcome.elapsedMs)} ms via ${outcome.report?.via}`);
    assert.equal(outcome.nAction.status, 0);
    const report = outcome.report;
    assert.ok(report, 'report received');
    assert.equal(report.eventTypeId, 2);
    assert.deepEqual(new Set(report.committed.map((c) => c.sopInstanceUid)), new Set(stored.map((s) => s.sopInstanceUid)));
    assert.equal(report.committed.length, 2000);
    assert.equal(report.failed.length, 98_000);
    const storedUids = new Set(stored.map((s) => s.sopInstanceUid));
    assert.ok(report.failed.every((f) => f.failureReason === FailureReason.NoSuchObjectInstance && !storedUids.has(f.sopInstanceUid)));
    assert.equal(new Set(report.failed.map((f) => f.sopInstanceUid)).size, 98_000);
    const detail = await assertOneReportedTransaction(stack, outcome.transactionUid);
    assert.equal(detail.instances, 100_000);
    assert.equal(detail.committed, 2000);
    assert.equal(detail.failed, 98_000);
    await assertStillServing();
  });
});

describe('association cap (STGCMT_MAX_ASSOCIATIONS=2)', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ peers: [{ aet: 'TESTSCU', port: await freePort() }], sidecarEnv: { STGCMT_MAX_ASSOCIATIONS: '2' } });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 90_000 });

  it('with 2 associations held open the 3rd is rejected: transient, service-provider (presentation), local-limit-exceeded', { timeout: 30_000 }, async () => {
    const target: ScuTarget = { host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs: 5000 };
    const first = await connect(target);
    const second = await connect(target);
    try {
      await assert.rejects(connect(target), (error: unknown) => {
        assert.ok(error instanceof AssociationRejectedError, String(error));
        assert.equal(error.result, 2, 'rejected-transient');
        assert.equal(error.source, 3, 'DICOM UL service-provider (presentation related function)');
        assert.equal(error.reason, 2, 'local-limit-exceeded');
        return true;
      });
      assert.equal(await echo(first, 5000), 0, 'held associations keep working');
    } finally {
      await first.release();
    }
    // One slot free again.
    await waitUntil(async () => {
      try {
        const third = await connect(target);
        await third.release();
        return true;
      } catch {
        return false;
      }
    }, 5000, 200);
    await second.release();
    assert.ok(stack.sidecar.logLines().some((l) => l['msg'] === 'association rejected' && l['why'] === 'too many open associations'));
  });
});
