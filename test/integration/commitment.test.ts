/**
 * End to end against real parts: a PACS Orthanc behind the sidecar process, a modality Orthanc as the
 * Storage Commitment SCU, and our dcmjs-based SCU and strict acceptor as a second client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, echo, requestCommitment, sendNAction } from '../../src/cli/commitment-scu.js';
import { ReportReceiver } from '../../src/cli/report-receiver.js';
import { DimseStatus, FailureReason } from '../../src/commitment/types.js';
import { AssociationRejectedError } from '../../src/dicom/requestor.js';
import { constants } from '../../src/dicom/dimse.js';
import { createInstances, freePort, newUid, storageCommitment, type CreatedInstance } from '../harness/orthanc.js';
import { waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';

/** A stack whose peers include our strict report acceptor as TESTSCU. */
async function startWithReceiver(): Promise<{ stack: Stack; receiver: ReportReceiver }> {
  const receiverPort = await freePort();
  const receiver = new ReportReceiver({ aeTitle: 'TESTSCU', port: receiverPort, strictRoles: true });
  await receiver.start();
  return { stack: await startStack({ peers: [{ aet: 'TESTSCU', port: receiverPort }] }), receiver };
}

describe('storage commitment end to end', () => {
  let stack: Stack;
  let receiver: ReportReceiver;
  let stored: CreatedInstance[];
  let storedMr: CreatedInstance[];

  const target = () => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 });

  before(async () => {
    ({ stack, receiver } = await startWithReceiver());
    stored = await createInstances(stack.pacs, 40, { sopClassUid: CT });
    storedMr = await createInstances(stack.pacs, 3, { sopClassUid: MR });
  });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
  });

  it('answers C-ECHO', async () => {
    const open = await connect(target());
    try {
      assert.equal(await echo(open, 5000), 0);
    } finally {
      await open.release();
    }
  });

  it('reports Success with every instance when all are stored (Orthanc as SCU)', async () => {
    const result = await storageCommitment(stack.modality, stack.sidecarModalityName, stored.slice(0, 10));
    assert.equal(result.status, 'Success');
    assert.equal(result.raw.RemoteAET, 'STGCMT');
    assert.deepEqual(new Set(result.raw.Success?.map((s) => s.SOPInstanceUID)), new Set(stored.slice(0, 10).map((s) => s.sopInstanceUid)));
    assert.equal(result.raw.Failures?.length ?? 0, 0);
  });

  it('fails exactly the absent (0112H) and wrong-class (0119H) instances (Orthanc as SCU)', async () => {
    const absent = [newUid(), newUid()].map((uid) => ({ sopClassUid: CT, sopInstanceUid: uid }));
    const wrongClass = storedMr.slice(0, 2).map((i) => ({ sopClassUid: CT, sopInstanceUid: i.sopInstanceUid }));
    const good = stored.slice(10, 15);
    const result = await storageCommitment(stack.modality, stack.sidecarModalityName, [...good, ...absent, ...wrongClass]);
    assert.equal(result.status, 'Failure');
    assert.deepEqual(new Set(result.raw.Success?.map((s) => s.SOPInstanceUID)), new Set(good.map((g) => g.sopInstanceUid)));
    const reasons = new Map(result.raw.Failures?.map((f) => [f.SOPInstanceUID, f.FailureReason]));
    assert.equal(reasons.size, 4);
    for (const a of absent) assert.equal(reasons.get(a.sopInstanceUid), FailureReason.NoSuchObjectInstance);
    for (const w of wrongClass) assert.equal(reasons.get(w.sopInstanceUid), FailureReason.ClassInstanceConflict);
    // The API says under which class a 0119H instance is stored (the Transaction UID is Orthanc's job ID).
    type Detail = { instanceOutcomes: Array<{ sopInstanceUid: string; storedSopClassUid?: string }> };
    await waitUntil(async () => (await stack.sidecar.api('GET', `/api/transactions/${result.id}`)).status === 200, 5000);
    const detail = (await stack.sidecar.api<Detail>('GET', `/api/transactions/${result.id}`)).body;
    for (const w of wrongClass) assert.equal(detail.instanceOutcomes.find((i) => i.sopInstanceUid === w.sopInstanceUid)?.storedSopClassUid, MR);
    for (const a of absent) assert.equal(detail.instanceOutcomes.find((i) => i.sopInstanceUid === a.sopInstanceUid)?.storedSopClassUid, undefined);
  });

  it('answers each malformed N-ACTION with its DIMSE status, and keeps serving', async () => {
    const item = { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: stored[20]!.sopInstanceUid };
    const cases: Array<[string, Parameters<typeof sendNAction>[1], number]> = [
      ['wrong Action Type ID', { actionTypeId: 7, elements: { TransactionUID: newUid(), ReferencedSOPSequence: [item] } }, DimseStatus.NoSuchActionType],
      ['wrong SOP Instance', { sopInstanceUid: '1.2.3.4', elements: { TransactionUID: newUid(), ReferencedSOPSequence: [item] } }, DimseStatus.NoSuchSopInstance],
      ['missing Transaction UID', { elements: { ReferencedSOPSequence: [item] } }, DimseStatus.InvalidArgumentValue],
      ['empty sequence', { elements: { TransactionUID: newUid(), ReferencedSOPSequence: [] } }, DimseStatus.InvalidArgumentValue],
      ['missing sequence', { elements: { TransactionUID: newUid() } }, DimseStatus.InvalidArgumentValue],
      ['item without instance UID', { elements: { TransactionUID: newUid(), ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT }] } }, DimseStatus.InvalidArgumentValue],
      ['item without class UID', { elements: { TransactionUID: newUid(), ReferencedSOPSequence: [{ ReferencedSOPInstanceUID: '1.2.3' }] } }, DimseStatus.InvalidArgumentValue],
    ];
    const open = await connect(target());
    try {
      for (const [name, spec, status] of cases) {
        const result = await sendNAction(open, spec, 5000);
        assert.equal(result.status, status, `${name}: got 0x${result.status.toString(16)}`);
        assert.ok(result.errorComment, `${name}: an Error Comment says why`);
      }
    } finally {
      await open.release();
    }
    // Log lines reach the file through a pipe: wait for them rather than race them.
    await waitUntil(() => stack.sidecar.logLines().filter((l) => l['msg'] === 'N-ACTION refused').length >= cases.length, 5000);
    // The service is still up and right after all that.
    const outcome = await requestCommitment(target(), [{ sopClassUid: CT, sopInstanceUid: stored[20]!.sopInstanceUid }], { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver });
    assert.equal(outcome.nAction.status, 0);
    assert.equal(outcome.report?.eventTypeId, 1);
  });

  it('rejects an association from an unknown calling AE, or to another called AE, with the standard reasons', async () => {
    await assert.rejects(connect({ ...target(), callingAeTitle: 'STRANGER' }), (error: unknown) => {
      assert.ok(error instanceof AssociationRejectedError);
      assert.equal(error.result, constants.RejectResult.Permanent);
      assert.equal(error.source, constants.RejectSource.ServiceUser);
      assert.equal(error.reason, constants.RejectReason.CallingAeNotRecognized);
      return true;
    });
    await assert.rejects(connect({ ...target(), calledAeTitle: 'NOTUS' }), (error: unknown) => {
      assert.ok(error instanceof AssociationRejectedError);
      assert.equal(error.reason, constants.RejectReason.CalledAeNotRecognized);
      return true;
    });
  });

  it('delivers on a new association to a strict acceptor, proposing SCU-role 0 / SCP-role 1, calling from the AE the modality called', async () => {
    const refs = stored.slice(21, 25).map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopInstanceUid }));
    const outcome = await requestCommitment(target(), refs, { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver });
    assert.equal(outcome.nAction.status, 0);
    const report = outcome.report;
    assert.ok(report, 'report received');
    assert.equal(report.via, 'new-association');
    assert.deepEqual(receiver.reports.find((r) => r.transactionUid === outcome.transactionUid)?.proposedRoles, { scu: false, scp: true });
    assert.equal(receiver.reports.find((r) => r.transactionUid === outcome.transactionUid)?.callingAeTitle, 'STGCMT');
    assert.equal(receiver.reports.find((r) => r.transactionUid === outcome.transactionUid)?.calledAeTitle, 'TESTSCU');
    assert.equal(report.eventTypeId, 1);
    assert.equal(report.retrieveAeTitle, 'PACS');
    assert.deepEqual(report.committed, refs);
    assert.equal(receiver.rejections.length, 0);
  });

  it('delivers on the same association while the modality keeps it open', async () => {
    const refs = [...stored.slice(25, 28).map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopInstanceUid })), { sopClassUid: CT, sopInstanceUid: newUid() }];
    const outcome = await requestCommitment(target(), refs, { keepOpenMs: 10_000, reportTimeoutMs: 10_000 });
    assert.equal(outcome.report?.via, 'same-association');
    assert.equal(outcome.report?.eventTypeId, 2);
    assert.equal(outcome.report?.committed.length, 3);
    assert.deepEqual(outcome.report?.failed.map((f) => f.failureReason), [FailureReason.NoSuchObjectInstance]);
  });

  it('serves an SCU that proposes only Implicit VR Little Endian, reporting in that transfer syntax', async () => {
    const refs = stored.slice(31, 33).map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopInstanceUid }));
    const outcome = await requestCommitment({ ...target(), transferSyntaxes: ['1.2.840.10008.1.2'] }, refs, { keepOpenMs: 10_000, reportTimeoutMs: 10_000 });
    assert.equal(outcome.nAction.status, 0);
    assert.equal(outcome.report?.via, 'same-association');
    assert.deepEqual(outcome.report?.committed, refs);
  });

  it('records each transaction with its state and delivery attempts (HTTP API)', async () => {
    const outcome = await requestCommitment(target(), [{ sopClassUid: CT, sopInstanceUid: stored[30]!.sopInstanceUid }], { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver });
    type Detail = { state: string; deliveryAttemptLog: Array<{ ok: boolean; via: string }> };
    let detail = await stack.sidecar.api<Detail>('GET', `/api/transactions/${outcome.transactionUid}`);
    // The report is marked delivered right after the modality's response; we may have seen it first.
    await waitUntil(async () => (detail = await stack.sidecar.api<Detail>('GET', `/api/transactions/${outcome.transactionUid}`)).body.state === 'REPORTED', 5000);
    const { status, body } = detail;
    assert.equal(status, 200);
    assert.equal(body.state, 'REPORTED');
    assert.deepEqual(body.deliveryAttemptLog.map((a) => [a.via, a.ok]), [['new-association', true]]);
  });

  it('never commits an instance deleted from Orthanc after the UID index saw it arrive', async () => {
    const [kept, deleted] = await createInstances(stack.pacs, 2, { sopClassUid: CT });
    // Let the changes follower index both (it polls every second), then delete one behind its back:
    // Orthanc 1.10.1 does not log deletions in /changes, so the index still points at it.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    await stack.pacs.rest('DELETE', `/instances/${deleted!.orthancId}`);
    const result = await storageCommitment(stack.modality, stack.sidecarModalityName, [kept!, deleted!]);
    assert.equal(result.status, 'Failure');
    assert.deepEqual(result.raw.Success?.map((s) => s.SOPInstanceUID), [kept!.sopInstanceUid]);
    assert.deepEqual(result.raw.Failures?.map((f) => [f.SOPInstanceUID, f.FailureReason]), [[deleted!.sopInstanceUid, FailureReason.NoSuchObjectInstance]]);
  });

  for (const count of [300, 3000]) {
    it(`commits ${count} instances end to end through Orthanc's SCU`, async (t) => {
      const batch = await createInstances(stack.pacs, count, { sopClassUid: CT });
      const result = await storageCommitment(stack.modality, stack.sidecarModalityName, batch, { timeoutMs: 120_000 });
      assert.equal(result.status, 'Success');
      assert.equal(result.raw.Success?.length, count);
      t.diagnostic(`${count} instances: request sent -> report received in ${Math.round(result.elapsedMs)} ms`);
    });
  }
});

describe("Retrieve AE Title follows Orthanc's AE title", () => {
  let stack: Stack;
  let receiver: ReportReceiver;
  const target = () => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 });

  before(async () => {
    ({ stack, receiver } = await startWithReceiver());
  });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
  });

  it('names the AE title Orthanc has when the report is built, also after an administrator renames it', async () => {
    const before1 = await createInstances(stack.pacs, 2);
    const refsOf = (list: CreatedInstance[]) => list.map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopInstanceUid }));
    const first = await requestCommitment(target(), refsOf(before1), { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver });
    assert.equal(first.report?.retrieveAeTitle, 'PACS');
    // The same Orthanc, renamed: its instances are now retrieved from PACS_RENAMED.
    await stack.pacs.restart({ DicomAet: 'PACS_RENAMED' });
    // Orthanc is probed every 2 s (2 s timeout at most): two probes later the sidecar knows.
    await new Promise((resolve) => setTimeout(resolve, 4500));
    const second = await requestCommitment(target(), refsOf(before1), { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver });
    assert.equal(second.report?.eventTypeId, 1);
    assert.equal(second.report?.retrieveAeTitle, 'PACS_RENAMED');
    assert.ok(stack.sidecar.logLines().some((l) => l['msg'] === "Orthanc's AE title changed; reports name the new one as Retrieve AE Title" && l['previous'] === 'PACS' && l['now'] === 'PACS_RENAMED'), 'the rename is logged');
  });
});
