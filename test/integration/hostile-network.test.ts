/**
 * What a hospital network does to a DICOM port, against the real sidecar (child process) with a real
 * Orthanc behind it: malformed and odd-but-legal A-ASSOCIATE-RQs, idle sockets and floods from other
 * loopback addresses, an AE that grabs every slot, silent and stalled associations, N-ACTIONs on the
 * wrong presentation context. After each, the same process must still serve a good commitment.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, echo, requestCommitment, type ScuTarget } from '../../src/cli/commitment-scu.js';
import type { ReportReceiver } from '../../src/cli/report-receiver.js';
import { AssociationFailedError, AssociationRejectedError } from '../../src/dicom/requestor.js';
import { Pool, refsOf } from '../harness/faults.js';
import { createInstances, newUid } from '../harness/orthanc.js';
import { actionInformation, nActionCommand, nActionPdus, nEventReportResponse, pDataTf, STORAGE_COMMITMENT, VERIFICATION } from '../harness/pdus.js';
import { acceptedContexts, commandStatus, openMany, RawPeer } from '../harness/raw-peer.js';
import { waitUntil } from '../harness/sidecar.js';
import { startReportReceiver, startStack, type Stack } from '../harness/stack.js';

const IMPLICIT = '1.2.840.10008.1.2';

function isAlive(processId: number): boolean {
  try {
    process.kill(processId, 0);
    return true;
  } catch {
    return false;
  }
}

async function metric(stack: Stack, line: RegExp): Promise<number> {
  const text = await (await fetch(`${stack.sidecar.url}/metrics`)).text();
  const match = line.exec(text);
  return match ? Number(match[1]) : 0;
}

describe('hostile and odd association requests', () => {
  let stack: Stack;
  let pool: Pool;
  let receiver: ReportReceiver;
  let pid: number;

  const target = (callingAeTitle = 'TESTSCU'): ScuTarget => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle, calledAeTitle: 'STGCMT', timeoutMs: 10_000 });

  /** Same process, C-ECHO, and a commitment with a correct report. */
  const assertStillServing = async (callingAeTitle = 'TESTSCU2'): Promise<void> => {
    assert.equal(stack.sidecar.pid, pid, 'the sidecar process did not change');
    process.kill(pid, 0);
    const open = await connect(target(callingAeTitle));
    try {
      assert.equal(await echo(open, 5000), 0);
    } finally {
      await open.release();
    }
    const refs = refsOf(pool.take(2));
    const outcome = await requestCommitment(target(callingAeTitle), refs, { keepOpenMs: 5000, reportTimeoutMs: 10_000, receiver });
    assert.equal(outcome.nAction.status, 0);
    assert.ok(outcome.report, 'report received');
    assert.equal(outcome.report.eventTypeId, 1);
    assert.deepEqual(outcome.report.committed, refs);
  };

  before(async () => {
    receiver = await startReportReceiver('TESTSCU');
    stack = await startStack({
      peers: [
        { aet: 'TESTSCU', port: receiver.port },
        { aet: 'TESTSCU2', port: receiver.port },
      ],
      sidecarEnv: {
        STGCMT_ARTIM_TIMEOUT: '4s',
        STGCMT_IDLE_TIMEOUT: '3s',
        STGCMT_DIMSE_TIMEOUT: '3s',
        STGCMT_ASSOCIATION_MAX_LIFETIME: '8s',
        STGCMT_MAX_CONNECTIONS: '40',
        STGCMT_MAX_CONNECTIONS_PER_HOST: '16',
        STGCMT_MAX_ASSOCIATIONS: '20',
        STGCMT_MAX_ASSOCIATIONS_PER_AE: '8',
      },
    });
    pool = new Pool(await createInstances(stack.pacs, 60));
    pid = stack.sidecar.pid;
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
  }, { timeout: 90_000 });

  // Each test proves its own point: should a test kill the sidecar (as old builds did), the next one gets
  // a fresh process, and the dead one's test has failed on the pid check.
  beforeEach(async () => {
    if (stack.sidecar.pid > 0 && isAlive(stack.sidecar.pid)) return;
    await stack.sidecar.restart();
    pid = stack.sidecar.pid;
  });

  it('two presentation contexts with ID 255 from a known AE: A-ABORT (invalid PDU parameter), the process stays up', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.open(stack.sidecar.dicomPort);
    const answer = await peer.associate({ called: 'STGCMT', calling: 'TESTSCU', contexts: [{ id: 255, abstractSyntax: STORAGE_COMMITMENT }, { id: 255, abstractSyntax: VERIFICATION }] });
    assert.equal(answer?.type, 0x07, 'A-ABORT');
    assert.equal(answer.body.readUInt8(2), 2, 'source: service provider');
    assert.equal(answer.body.readUInt8(3), 6, 'reason: invalid PDU parameter value');
    assert.ok(await peer.closedWithin(3000), 'connection closed');
    await stack.sidecar.waitForLog((l) => l['msg'] === 'refusing malformed A-ASSOCIATE-RQ; aborting' && /proposed twice/.test(String(l['problem'])), 3000);
    await assertStillServing();
  });

  it('129 presentation contexts, even and zero IDs: each aborted, the process stays up', { timeout: 60_000 }, async () => {
    const cases = [
      Array.from({ length: 129 }, (_, i) => ({ id: (2 * i + 1) % 256, abstractSyntax: VERIFICATION })),
      [{ id: 2, abstractSyntax: VERIFICATION }],
      [{ id: 0, abstractSyntax: STORAGE_COMMITMENT }],
    ];
    for (const contexts of cases) {
      const peer = await RawPeer.open(stack.sidecar.dicomPort);
      const answer = await peer.associate({ called: 'STGCMT', calling: 'TESTSCU', contexts });
      assert.equal(answer?.type, 0x07, `A-ABORT for ${contexts.length} contexts starting ${contexts[0]!.id}`);
      peer.destroy();
    }
    await assertStillServing();
  });

  it('legal IDs in descending order (5, 3, 1): the A-ASSOCIATE-AC answers exactly those IDs and C-ECHO works on 1', { timeout: 30_000 }, async () => {
    const peer = await RawPeer.open(stack.sidecar.dicomPort);
    const answer = await peer.associate({
      called: 'STGCMT',
      calling: 'TESTSCU',
      contexts: [
        { id: 5, abstractSyntax: STORAGE_COMMITMENT },
        { id: 3, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2' },
        { id: 1, abstractSyntax: VERIFICATION },
      ],
    });
    assert.equal(answer?.type, 0x02, 'A-ASSOCIATE-AC');
    assert.deepEqual(acceptedContexts(answer.body), new Map([[1, 0], [3, 3], [5, 0]]), 'IDs as proposed; CT storage refused (abstract syntax not supported)');
    assert.equal(await peer.echo(1), 0x0000);
    peer.destroy();
  });

  it('an N-ACTION on the Verification context is refused with 0122H; on the Storage Commitment context it succeeds', { timeout: 30_000 }, async () => {
    const peer = await RawPeer.open(stack.sidecar.dicomPort);
    const answer = await peer.associate({ called: 'STGCMT', calling: 'TESTSCU', contexts: [{ id: 1, abstractSyntax: VERIFICATION }, { id: 3, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [IMPLICIT] }] });
    assert.equal(answer?.type, 0x02);
    const refs = refsOf(pool.take(1));
    peer.send(nActionPdus(1, newUid(), refs));
    const wrong = await peer.nextPdu(5000);
    assert.equal(wrong?.type, 0x04);
    assert.equal(commandStatus(wrong.body), 0x0122, 'SOP Class not supported on this context');
    peer.send(Buffer.concat([pDataTf(3, 0x03, nActionCommand(2)), pDataTf(3, 0x02, actionInformation(newUid(), refs))]));
    const right = await peer.nextPdu(5000);
    assert.equal(right?.type, 0x04);
    assert.equal(commandStatus(right.body), 0x0000);
    peer.destroy();
  });

  it('odd but legal requests get truthful reports: one instance under two classes, never-stored and private classes, exact duplicates', { timeout: 60_000 }, async () => {
    const [twice, duplicated, asVerification] = refsOf(pool.take(3));
    const MR = '1.2.840.10008.5.1.4.1.1.4';
    const privateClass = '1.3.6.1.4.1.99999.1.1';
    const absentPrivate = { sopClassUid: privateClass, sopInstanceUid: newUid() };
    const refs = [twice!, { ...twice!, sopClassUid: MR }, duplicated!, duplicated!, { ...asVerification!, sopClassUid: VERIFICATION }, absentPrivate];
    const outcome = await requestCommitment(target(), refs, { keepOpenMs: 8000, reportTimeoutMs: 10_000, receiver });
    assert.equal(outcome.nAction.status, 0);
    const report = outcome.report;
    assert.ok(report, 'report received');
    assert.equal(report.eventTypeId, 2);
    assert.deepEqual(report.committed, [duplicated, duplicated], 'the exact duplicate is committed in both listings');
    const failed = report.failed.map((f) => `${f.sopInstanceUid}|${f.sopClassUid}|${f.failureReason.toString(16)}`).sort();
    assert.deepEqual(
      failed,
      [
        `${twice!.sopInstanceUid}|${twice!.sopClassUid}|119`,
        `${twice!.sopInstanceUid}|${MR}|119`,
        `${asVerification!.sopInstanceUid}|${VERIFICATION}|122`,
        `${absentPrivate.sopInstanceUid}|${privateClass}|122`,
      ].sort(),
    );
    const committedUids = new Set(report.committed.map((c) => c.sopInstanceUid));
    assert.ok(report.failed.every((f) => !committedUids.has(f.sopInstanceUid)), 'no instance in both sequences');
    // A UID with a leading zero in a component is not a UID (PS3.5 9.1).
    const bad = await requestCommitment(target(), [{ sopClassUid: twice!.sopClassUid, sopInstanceUid: '1.2.03.4' }], { keepOpenMs: 0, reportTimeoutMs: 1000 });
    assert.equal(bad.nAction.status, 0x0115);
  });

  it('two reports due on one open association go one at a time: the second waits for the first one\'s N-EVENT-REPORT-RSP', { timeout: 30_000 }, async () => {
    const peer = await RawPeer.open(stack.sidecar.dicomPort);
    const answer = await peer.associate({ called: 'STGCMT', calling: 'TESTSCU', contexts: [{ id: 1, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [IMPLICIT] }] });
    assert.equal(answer?.type, 0x02);
    for (const messageId of [1, 2]) {
      peer.send(nActionPdus(messageId, newUid(), refsOf(pool.take(1))));
      assert.equal(commandStatus((await peer.nextPdu(5000))!.body), 0x0000, `N-ACTION ${messageId} answered Success`);
    }
    const nextReport = (timeoutMs: number): ReturnType<RawPeer['nextEventReport']> => peer.nextEventReport(timeoutMs);
    const first = await nextReport(10_000);
    assert.ok(first, 'first report sent on the association');
    assert.equal(await nextReport(2500), undefined, 'no second N-EVENT-REPORT-RQ while the first is unanswered');
    peer.send(pDataTf(1, 0x03, nEventReportResponse(first.messageId, first.eventTypeId)));
    const second = await nextReport(10_000);
    assert.ok(second, 'the second report follows the first one\'s response');
    peer.send(pDataTf(1, 0x03, nEventReportResponse(second.messageId, second.eventTypeId)));
    peer.destroy();
  });

  it('200 idle connections and 70 unknown AEs that keep their socket after the A-ASSOCIATE-RJ: a modality is served; all are closed', { timeout: 60_000 }, async () => {
    const refusedBefore = await metric(stack, /^stgcmt_dicom_connections_refused_total\{reason="host-limit"\} (\d+)/m);
    const idle = await openMany(stack.sidecar.dicomPort, 200, '127.0.0.2');
    const unknown = await openMany(stack.sidecar.dicomPort, 70, '127.0.0.3');
    const rejections = await Promise.all(unknown.map((p) => p.associate({ called: 'STGCMT', calling: 'STRANGER', contexts: [{ id: 1, abstractSyntax: VERIFICATION }] }, 3000)));
    await sleep(300);
    // Past the per-host share, connections are closed at once; the admitted rest holds a slot only until ARTIM.
    assert.ok(idle.filter((p) => p.closed).length >= 200 - 16, `${idle.filter((p) => p.closed).length} of 200 idle connections closed at once`);
    assert.ok(rejections.filter((r) => r?.type === 0x03).length >= 1, 'the admitted unknown AEs got an A-ASSOCIATE-RJ');
    await assertStillServing();
    assert.ok(await Promise.all(unknown.map((p) => p.closedWithin(3000))).then((c) => c.every(Boolean)), 'every rejected socket closed by the sidecar after its RJ');
    assert.ok(await Promise.all(idle.map((p) => p.closedWithin(6000))).then((c) => c.every(Boolean)), 'every idle socket closed by ARTIM');
    assert.ok((await metric(stack, /^stgcmt_dicom_connections_refused_total\{reason="host-limit"\} (\d+)/m)) >= refusedBefore + 150, 'most of the flood refused at once (a few slots free up as ARTIM closes early ones)');
    assert.ok((await metric(stack, /^stgcmt_dicom_connections_closed_total\{reason="artim"\} (\d+)/m)) >= 16);
    await waitUntil(async () => (await metric(stack, /^stgcmt_open_connections (\d+)/m)) === 0, 5000);
  });

  it('idle connections from 100 addresses past STGCMT_MAX_CONNECTIONS: the oldest are evicted and a modality is served', { timeout: 60_000 }, async () => {
    const idle = await openMany(stack.sidecar.dicomPort, 100, (i) => `127.0.1.${i + 1}`);
    await sleep(1200);
    await assertStillServing();
    assert.ok((await metric(stack, /^stgcmt_dicom_connections_closed_total\{reason="evicted"\} (\d+)/m)) >= 1, 'evictions counted');
    for (const p of idle) p.destroy();
  });

  it('one AE title cannot take every association; a C-ECHO every second does not keep one past its lifetime', { timeout: 60_000 }, async () => {
    const held = [];
    for (let i = 0; i < 8; i++) held.push(await connect(target('TESTSCU')));
    await assert.rejects(connect(target('TESTSCU')), (error: unknown) => error instanceof AssociationRejectedError && error.result === 2 && error.reason === 2);
    await assertStillServing('TESTSCU2');
    // Keep the first one busy with C-ECHOs; the others stay idle.
    const started = Date.now();
    let echoes = 0;
    let ended: unknown;
    while (Date.now() - started < 15_000) {
      try {
        assert.equal(await echo(held[0]!, 2000), 0);
        echoes++;
      } catch (error) {
        ended = error;
        break;
      }
      await sleep(1000);
    }
    assert.ok(ended, `still associated after ${echoes} C-ECHOs in 15 s`);
    assert.ok(Date.now() - started < 12_000, 'ended by STGCMT_ASSOCIATION_MAX_LIFETIME (8 s)');
    for (const open of held) open.abort();
    assert.ok(stack.sidecar.logLines().some((l) => l['msg'] === 'association idle past STGCMT_IDLE_TIMEOUT; aborting'), 'the idle ones were aborted by STGCMT_IDLE_TIMEOUT');
    assert.ok(stack.sidecar.logLines().some((l) => l['msg'] === 'association reached STGCMT_ASSOCIATION_MAX_LIFETIME; aborting'));
  });

  it('an unfinished message that stalls is aborted after STGCMT_DIMSE_TIMEOUT', { timeout: 30_000 }, async () => {
    const peer = await RawPeer.open(stack.sidecar.dicomPort);
    const answer = await peer.associate({ called: 'STGCMT', calling: 'TESTSCU', contexts: [{ id: 1, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [IMPLICIT] }] });
    assert.equal(answer?.type, 0x02);
    peer.send(Buffer.concat([pDataTf(1, 0x03, nActionCommand(1)), pDataTf(1, 0x00, Buffer.alloc(1000, 0x41))]));
    const abort = await peer.nextPdu(8000);
    assert.equal(abort?.type, 0x07, 'A-ABORT');
    assert.ok(await peer.closedWithin(3000));
    await stack.sidecar.waitForLog((l) => l['msg'] === 'unfinished DIMSE message stalled past STGCMT_DIMSE_TIMEOUT; aborting', 2000);
  });

  it('a requestor that closes before the AC arrives, or aborts at once, leaves nothing behind', { timeout: 30_000 }, async () => {
    for (let i = 0; i < 20; i++) {
      const peer = await RawPeer.open(stack.sidecar.dicomPort);
      peer.send(Buffer.from([0x01, 0x00, 0x00, 0x00]));
      peer.destroy();
    }
    await assert.rejects(
      (async () => {
        const open = await connect(target('TESTSCU'));
        open.abort();
        await echo(open, 1000);
      })(),
      (error: unknown) => error instanceof Error || error instanceof AssociationFailedError,
    );
    await waitUntil(async () => (await metric(stack, /^stgcmt_open_connections (\d+)/m)) === 0, 5000);
    await assertStillServing();
  });
});
