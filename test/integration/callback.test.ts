/**
 * Reports to modalities that cannot be called back (NAT, firewall), against real peers: the sidecar, the
 * PACS Orthanc, our dcmjs SCU, a raw-PDU peer, and Orthanc as the modality. Each modality's configured
 * port is one where nothing listens, so a report reaches it only on an association it opens itself.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { acceptReportsOn, connect, echo, requestCommitment, sendNAction, type ReceivedOnAssociation, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { apiTransaction, awaitOrthancReport, Pool, refsOf, sendOrthancCommitment, waitForTransaction, type ApiTransactionDetail } from '../harness/faults.js';
import { createInstances, freePort, newUid } from '../harness/orthanc.js';
import { IMPLICIT_VR_LITTLE_ENDIAN as IMPLICIT } from '../../src/dicom/dataset-writer.js';
import { abortPdu, nActionPdus, nEventReportResponse, pDataTf, STORAGE_COMMITMENT } from '../harness/pdus.js';
import { commandStatus, commandUs, RawPeer } from '../harness/raw-peer.js';
import { waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

type Detail = ApiTransactionDetail & { waitingForModality: boolean; delivery?: string; situation: string };

describe('reports to a modality that cannot be called back', () => {
  let stack: Stack;
  let pool: Pool;
  let blackHole: Server;
  const held: Socket[] = [];

  before(async () => {
    // Every port below is free now and nobody listens on it: dialling the modality can only fail.
    const [natPort, retryPort, rawPort, orthancDeadPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    // Accepts TCP and never answers (nor closes): an association to it hangs until our timeout.
    blackHole = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    stack = await startStack({
      peers: [
        { aet: 'NATSCU', port: natPort, callback: false },
        { aet: 'RETRYSCU', port: retryPort },
        { aet: 'RAWSCU', port: rawPort, callback: false },
        { aet: 'HOLESCU', port: (blackHole.address() as AddressInfo).port },
        // Overrides Orthanc's entry for the modality Orthanc: same AE title, a dead port, never dialled.
        { aet: 'MODALITY', port: orthancDeadPort, callback: false },
      ],
    });
    pool = new Pool(await createInstances(stack.pacs, 40));
  }, { timeout: 90_000 });

  after(async () => {
    for (const socket of held) socket.destroy();
    blackHole?.close();
    await stack?.stop();
  }, { timeout: 60_000 });

  const target = (callingAeTitle: string): ScuTarget => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle, calledAeTitle: 'STGCMT', timeoutMs: 10_000 });
  const detail = async (callingAet: string, transactionUid: string): Promise<Detail> => (await apiTransaction(stack.sidecar, { callingAet, transactionUid })) as Detail;

  /** N-ACTIONs that each release at once: the reports are owed. Returns their Transaction UIDs, oldest first. */
  async function owe(callingAeTitle: string, count: number): Promise<string[]> {
    const uids: string[] = [];
    for (let i = 0; i < count; i++) {
      const outcome = await requestCommitment(target(callingAeTitle), refsOf(pool.take(2)), { keepOpenMs: 0, reportTimeoutMs: 0 });
      assert.equal(outcome.nAction.status, 0);
      assert.equal(outcome.report, undefined, 'released before any report');
      uids.push(outcome.transactionUid);
    }
    return uids;
  }

  async function metric(pattern: RegExp): Promise<number> {
    const { body } = await stack.sidecar.api<string>('GET', '/metrics');
    return Number(pattern.exec(body)?.[1] ?? 0);
  }
  const viaModality = /^stgcmt_delivery_attempts_total\{via="modality-association",ok="true"\} (\d+)/m;

  /** Opens an association as `callingAeTitle` and collects every report it gets, answering each Success. */
  async function openCollecting(callingAeTitle: string): Promise<{ reports: ReceivedOnAssociation[]; open: Awaited<ReturnType<typeof connect>> }> {
    const open = await connect(target(callingAeTitle));
    const reports: ReceivedOnAssociation[] = [];
    acceptReportsOn(open, (report) => reports.push(report));
    return { reports, open };
  }

  /** Associates as `calling` (Storage Commitment only) and returns a reader of N-EVENT-REPORT-RQ commands. */
  async function rawAssociation(calling = 'RAWSCU'): Promise<{ peer: RawPeer; nextReport: (timeoutMs: number) => Promise<{ messageId: number; eventTypeId: number } | undefined> }> {
    const peer = await RawPeer.open(stack.sidecar.dicomPort);
    const ac = await peer.associate({ called: 'STGCMT', calling, contexts: [{ id: 1, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [IMPLICIT] }] });
    assert.equal(ac?.type, 0x02, 'association accepted');
    const nextReport = (timeoutMs: number): ReturnType<RawPeer['nextEventReport']> => peer.nextEventReport(timeoutMs);
    return { peer, nextReport };
  }

  it('callback: false: never dialled, shown as waiting; a later C-ECHO association gets every owed report, oldest first, each once', { timeout: 60_000 }, async () => {
    const uids = await owe('NATSCU', 3);
    for (const uid of uids) {
      // Settles there: right after the verdict, its delivery is under way (deliveryPending) for the few
      // milliseconds it takes to find that the modality cannot be called back.
      const waiting = await waitForTransaction(stack.sidecar, { callingAet: 'NATSCU', transactionUid: uid }, (t) => t.state === 'VERIFIED' && !t.deliveryPending, 10_000);
      assert.equal((waiting as Detail).waitingForModality, true);
      assert.match((waiting as Detail).delivery ?? '', /waiting for the modality to connect/);
      assert.equal((waiting as Detail).situation, 'waiting-for-modality', 'neither "delivering" nor "unreachable"');
    }
    // Several passes of the once-a-second delivery job: still nothing tried, nothing logged as an attempt.
    await sleep(2500);
    for (const uid of uids) {
      const t = await detail('NATSCU', uid);
      assert.equal(t.state, 'VERIFIED');
      assert.equal(t.deliveryAttemptLog.length, 0, 'no delivery attempt at all');
    }
    const logs = stack.sidecar.logLines().filter((l) => l['callingAet'] === 'NATSCU');
    assert.equal(logs.filter((l) => l['msg'] === 'delivering report').length, 0, 'no association opened to it');
    assert.equal(logs.filter((l) => /report waits for the modality/.test(String(l['msg']))).length, 3, 'said once per transaction');

    const deliveredBefore = await metric(viaModality);
    const { reports, open } = await openCollecting('NATSCU');
    assert.equal(await echo(open, 5000), 0);
    await waitUntil(() => reports.length >= 3, 10_000);
    await sleep(1000); // anything sent twice would have come by now
    await open.release();
    assert.deepEqual(reports.map((r) => r.transactionUid), uids, 'each owed report once, oldest first');
    assert.ok(reports.every((r) => r.eventTypeId === 1 && r.committed.length === 2));
    for (const uid of uids) {
      const t = await waitForTransaction(stack.sidecar, { callingAet: 'NATSCU', transactionUid: uid }, (d) => d.state === 'REPORTED', 5000);
      assert.equal(t.deliveryAttemptLog.length, 1);
      assert.equal(t.deliveryAttemptLog[0]!.ok, true);
      assert.equal(t.deliveryAttemptLog[0]!.via, 'same-association', 'on an association the modality opened');
      assert.equal((t as Detail).waitingForModality, false);
      assert.equal((t as Detail).situation, 'reported-all-committed');
    }
    assert.equal((await metric(viaModality)) - deliveredBefore, 3, 'counted as delivered via the modality association');
    const after = stack.sidecar.logLines().filter((l) => l['callingAet'] === 'NATSCU');
    assert.equal(after.filter((l) => l['msg'] === "report delivered via the modality's own association").length, 3);
    assert.equal(after.filter((l) => l['msg'] === 'delivering report').length, 0, 'still never dialled');
  });

  it('callback: false with the N-ACTION association kept open: the report goes on it at once, as for any peer', { timeout: 30_000 }, async () => {
    const outcome = await requestCommitment(target('NATSCU'), refsOf(pool.take(2)), { keepOpenMs: 10_000, reportTimeoutMs: 10_000 });
    assert.equal(outcome.nAction.status, 0);
    assert.equal(outcome.report?.via, 'same-association');
    assert.deepEqual(outcome.otherReports, [], 'nothing else was owed');
    const t = await waitForTransaction(stack.sidecar, { callingAet: 'NATSCU', transactionUid: outcome.transactionUid }, (d) => d.state === 'REPORTED', 5000);
    assert.deepEqual(t.deliveryAttemptLog.map((a) => [a.via, a.ok]), [['same-association', true]]);
  });

  it('callback true but unreachable: failing retries, then a new N-ACTION association gets the owed reports first, then its own', { timeout: 60_000 }, async () => {
    const uids = await owe('RETRYSCU', 2);
    for (const uid of uids) {
      const t = await waitForTransaction(stack.sidecar, { callingAet: 'RETRYSCU', transactionUid: uid }, (d) => d.state === 'DELIVERY_RETRY' && d.deliveryAttemptLog.length >= 2, 15_000);
      assert.ok(t.deliveryAttemptLog.every((a) => !a.ok && a.via === 'new-association' && /ECONNREFUSED/.test(a.error ?? '')), JSON.stringify(t.deliveryAttemptLog));
      assert.equal((t as Detail).waitingForModality, false);
    }
    const { reports, open } = await openCollecting('RETRYSCU');
    const own = newUid();
    const answer = await sendNAction(open, { transactionUid: own, references: refsOf(pool.take(2)) }, 5000);
    assert.equal(answer.status, 0, 'its own N-ACTION answered as usual');
    await waitUntil(() => reports.length >= 3, 15_000);
    await sleep(1000);
    await open.release();
    assert.deepEqual(reports.map((r) => r.transactionUid), [...uids, own], 'owed reports oldest first, then its own; each once');
    for (const uid of [...uids, own]) {
      const t = await waitForTransaction(stack.sidecar, { callingAet: 'RETRYSCU', transactionUid: uid }, (d) => d.state === 'REPORTED', 5000);
      assert.equal(t.deliveryAttemptLog.filter((a) => a.ok).length, 1, `${uid}: delivered exactly once`);
      assert.equal(t.deliveryAttemptLog.find((a) => a.ok)?.via, 'same-association');
    }
    // Delivered means no more retries: nothing new on record a few job passes later.
    const counts = await Promise.all(uids.map(async (uid) => (await detail('RETRYSCU', uid)).deliveryAttemptLog.length));
    await sleep(2500);
    assert.deepEqual(await Promise.all(uids.map(async (uid) => (await detail('RETRYSCU', uid)).deliveryAttemptLog.length)), counts);
  });

  it('a modality that fails a report mid-way (error status, then A-ABORT): the undelivered stay pending and come on its next association', { timeout: 60_000 }, async () => {
    const uids = await owe('RAWSCU', 4);
    for (const uid of uids) await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: uid }, (t) => t.state === 'VERIFIED', 10_000);


    // First association: the oldest is answered Success, the second with a failure status (0110H).
    const first = await rawAssociation();
    const r1 = await first.nextReport(10_000);
    assert.ok(r1, 'first owed report sent');
    first.peer.send(pDataTf(1, 0x03, nEventReportResponse(r1.messageId, r1.eventTypeId)));
    const r2 = await first.nextReport(10_000);
    assert.ok(r2, 'second owed report sent after the first one\'s answer');
    first.peer.send(pDataTf(1, 0x03, nEventReportResponse(r2.messageId, r2.eventTypeId, 0x0110)));
    assert.equal(await first.nextReport(1500), undefined, 'after a failure status nothing more is sent on that association');
    first.peer.destroy();
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: uids[0]! }, (t) => t.state === 'REPORTED', 5000);
    const failedOne = await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: uids[1]! }, (t) => t.deliveryAttemptLog.length === 1, 5000);
    assert.equal(failedOne.state, 'DELIVERY_RETRY');
    assert.equal(failedOne.deliveryAttemptLog[0]!.ok, false);
    assert.equal(failedOne.deliveryAttemptLog[0]!.category, 'peer-status');
    assert.equal((failedOne as Detail).waitingForModality, true, 'still waiting for the modality, not dialled');

    // Second association: the modality aborts while a report waits for its answer.
    const second = await rawAssociation();
    assert.ok(await second.nextReport(10_000), 'the failed one is sent again, first');
    second.peer.send(abortPdu());
    second.peer.destroy();
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: uids[1]! }, (t) => t.deliveryAttemptLog.length === 2, 5000);
    for (const uid of uids.slice(1)) assert.notEqual((await detail('RAWSCU', uid)).state, 'REPORTED', `${uid} stays pending`);

    // Third association, with our dcmjs SCU and a new N-ACTION: the three left, oldest first, each once.
    const { reports, open } = await openCollecting('RAWSCU');
    const own = newUid();
    assert.equal((await sendNAction(open, { transactionUid: own, references: refsOf(pool.take(1)) }, 5000)).status, 0);
    await waitUntil(() => reports.length >= 4, 15_000);
    await sleep(1000);
    await open.release();
    assert.deepEqual(reports.map((r) => r.transactionUid), [...uids.slice(1), own]);
    for (const uid of uids) {
      const t = await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: uid }, (d) => d.state === 'REPORTED', 5000);
      assert.equal(t.deliveryAttemptLog.filter((a) => a.ok).length, 1, `${uid} delivered once`);
      assert.ok(t.deliveryAttemptLog.every((a) => a.via === 'same-association'), 'never on an association of ours');
    }
  });

  it('an N-ACTION sent while an owed report waits for its answer is answered at once; its own report follows', { timeout: 30_000 }, async () => {
    const [owedUid] = await owe('RAWSCU', 1);
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: owedUid! }, (t) => t.state === 'VERIFIED', 10_000);
    const { peer, nextReport } = await rawAssociation();
    const owed = await nextReport(10_000);
    assert.ok(owed, 'the owed report is sent');
    // Not answered yet: the modality sends its own request on the same association.
    const own = newUid();
    peer.send(nActionPdus(7, own, refsOf(pool.take(1))));
    const started = performance.now();
    let rsp: number | undefined;
    while (rsp === undefined && performance.now() - started < 3000) {
      const pdu = await peer.nextPdu(3000);
      if (pdu?.type === 0x04 && commandUs(pdu.body, 0x0100) === 0x8130) rsp = commandStatus(pdu.body);
      else if (!pdu) break;
    }
    assert.equal(rsp, 0x0000, 'N-ACTION-RSP Success while our N-EVENT-REPORT-RQ is outstanding');
    peer.send(pDataTf(1, 0x03, nEventReportResponse(owed.messageId, owed.eventTypeId)));
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: owedUid! }, (t) => t.state === 'REPORTED', 5000);
    const next = await nextReport(10_000);
    assert.ok(next, 'then the report of the N-ACTION made on this association');
    peer.send(pDataTf(1, 0x03, nEventReportResponse(next.messageId, next.eventTypeId)));
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: own }, (t) => t.state === 'REPORTED', 5000);
    peer.destroy();
  });

  it('an association opened while an earlier one still carries an owed report: its own N-ACTION is listed as owed too, and still goes out, after the owed one', { timeout: 60_000 }, async () => {
    const [owedUid] = await owe('RAWSCU', 1);
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: owedUid! }, (t) => t.state === 'VERIFIED', 10_000);
    // First association: takes the owed report and never answers it, so its run of owed reports lasts
    // until the report times out (STGCMT_REPORT_TIMEOUT, 5 s here).
    const first = await rawAssociation();
    assert.ok(await first.nextReport(10_000), 'the owed report is sent on the first association');
    // Second association, meanwhile: its own N-ACTION is verified while the first run still goes on, so
    // when its turn comes the list of owed reports holds its own transaction too, whose report already
    // waits on this association behind the owed ones.
    const { reports, open } = await openCollecting('RAWSCU');
    const own = newUid();
    assert.equal((await sendNAction(open, { transactionUid: own, references: refsOf(pool.take(1)) }, 5000)).status, 0);
    await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: own }, (t) => t.state === 'VERIFIED', 10_000);
    await waitUntil(() => reports.length >= 2, 20_000);
    await sleep(1000); // anything sent twice would have come by now
    await open.release();
    first.peer.destroy();
    assert.deepEqual(reports.map((r) => r.transactionUid), [owedUid, own], 'the owed report first, then its own; each once');
    for (const uid of [owedUid!, own]) {
      const t = await waitForTransaction(stack.sidecar, { callingAet: 'RAWSCU', transactionUid: uid }, (d) => d.state === 'REPORTED', 5000);
      assert.equal(t.deliveryAttemptLog.filter((a) => a.ok).length, 1, `${uid} delivered once`);
    }
  });

  it('a report queued behind owed ones gives up as soon as its association ends, not after the report timeout; none is lost', { timeout: 60_000 }, async () => {
    // HOLESCU can be called back, but its port accepts TCP and never answers: each attempt to send its
    // report hangs until STGCMT_REPORT_TIMEOUT (5 s here).
    const [owedUid] = await owe('HOLESCU', 1);
    const attempts = (): number => stack.sidecar.logLines().filter((l) => l['transactionUid'] === owedUid && l['msg'] === 'delivering report').length;
    const before = attempts();
    await waitUntil(() => attempts() > before, 10_000);
    // An attempt hangs now: the modality's new association waits for it before it may carry that report.
    const { peer } = await rawAssociation('HOLESCU');
    const own = newUid();
    peer.send(nActionPdus(9, own, refsOf(pool.take(1))));
    await waitForTransaction(stack.sidecar, { callingAet: 'HOLESCU', transactionUid: own }, (t) => t.state === 'VERIFIED', 10_000);
    await sleep(500); // past the release grace: its report is queued on the association, behind the owed one
    peer.send(abortPdu());
    peer.destroy();
    const failed = await waitForTransaction(stack.sidecar, { callingAet: 'HOLESCU', transactionUid: own }, (t) => t.deliveryAttemptLog.length >= 1, 15_000);
    const first = failed.deliveryAttemptLog[0]!;
    assert.equal(first.ok, false);
    assert.equal(first.via, 'same-association');
    assert.match(first.error ?? '', /association ended before the report could be sent/);
    assert.ok(first.durationMs < 2000, `gave up with its association (${first.durationMs} ms), not after STGCMT_REPORT_TIMEOUT`);
    // Nothing lost: both stay pending, on their retry schedule.
    for (const uid of [owedUid!, own]) assert.notEqual((await detail('HOLESCU', uid)).state, 'REPORTED');
  });

  it('Orthanc as the modality: its later N-ACTION is answered as usual; it releases at once, so the owed report is not sent on it and stays pending', { timeout: 60_000 }, async () => {
    const firstId = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(pool.take(2)));
    const waiting = await waitForTransaction(stack.sidecar, { callingAet: 'MODALITY', transactionUid: firstId }, (t) => t.state === 'VERIFIED', 10_000);
    assert.equal((waiting as Detail).waitingForModality, true);
    // Orthanc's next storage commitment: an association proposing the Storage Commitment context.
    const secondId = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(pool.take(2)));
    await waitForTransaction(stack.sidecar, { callingAet: 'MODALITY', transactionUid: secondId }, (t) => t.state === 'VERIFIED', 10_000);
    const passed = await stack.sidecar.waitForLog((l) => l['callingAet'] === 'MODALITY' && /owed reports not all delivered/.test(String(l['msg'])), 10_000);
    assert.equal(passed['delivered'], 0, 'nothing sent: Orthanc released before the association was quiet');
    const first = await detail('MODALITY', firstId);
    assert.equal(first.state, 'VERIFIED');
    assert.equal(first.deliveryAttemptLog.length, 0, 'no attempt on Orthanc\'s association, none on a new one');
    assert.equal((await stack.modality.rest<{ Status: string }>('GET', `/storage-commitment/${firstId}`)).Status, 'Pending');
    // And the real SCU was not disturbed: its N-ACTION got Success (its job would say Failure otherwise).
    await assert.rejects(awaitOrthancReport(stack.modality, secondId, 1000), /still Pending/);
  });

  // Last: the sidecar restarts with a short report lifetime.
  it('callback: false still expires after STGCMT_REPORT_TTL, without a single attempt', { timeout: 60_000 }, async () => {
    await stack.sidecar.restart({ STGCMT_REPORT_TTL: '3s' });
    const [uid] = await owe('NATSCU', 1);
    const expired = await waitForTransaction(stack.sidecar, { callingAet: 'NATSCU', transactionUid: uid! }, (t) => t.state === 'EXPIRED', 20_000);
    assert.equal(expired.deliveryAttemptLog.length, 0);
    assert.equal((expired as Detail).waitingForModality, false, 'no longer waiting');
    const line = await stack.sidecar.waitForLog((l) => l['transactionUid'] === uid && /REPORT EXPIRED/.test(String(l['msg'])), 5000);
    assert.equal(line['attempts'], 0);
  });
});

