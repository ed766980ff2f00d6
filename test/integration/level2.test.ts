/**
 * Level 2 storage commitment (PS3.4 J.3.3.1.2: what is reported committed is kept), against real parts:
 * a PACS Orthanc that recycles (MaximumPatientCount 2: storing a third patient deletes the oldest
 * unprotected one), a modality Orthanc as the Storage Commitment SCU, and the sidecar process.
 * - STGCMT_PROTECT on: the committed patient is protected before the report, and survives recycling.
 * - off: the sidecar warns at start; the recycled committed instances, and a study deleted through
 *   Orthanc's REST API after its report, are found by the watch, shown in the API and counted.
 * - on, with the protection failing (a proxy answers it wrongly): the report waits until it succeeds.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { awaitOrthancReport, refsOf, sendOrthancCommitment, waitForTransaction, type ApiTransactionDetail } from '../harness/faults.js';
import { createInstances, type CreatedInstance } from '../harness/orthanc.js';
import { WRONG_BODIES } from '../harness/orthanc-proxy.js';
import { waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const WATCH_INTERVAL_MS = 2000;

interface Detail extends ApiTransactionDetail {
  reportedAt: string | null;
  protectedAt: string | null;
  committedThenDeleted: number;
}

interface Vanished {
  callingAet: string;
  transactionUid: string;
  url: string;
  sopInstanceUid: string;
  vanishedAt: string;
}

interface Readyz {
  commitment?: { protect: boolean; orthancRecycling: 'on' | 'off' | 'unknown'; warning?: string };
}

/** Commits `instances` through the modality Orthanc; returns the Transaction UID once the report is in. */
async function commitThroughOrthanc(stack: Stack, instances: readonly CreatedInstance[]): Promise<string> {
  const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(instances));
  const report = await awaitOrthancReport(stack.modality, id, 30_000);
  assert.equal(report.Status, 'Success', `report: ${JSON.stringify(report.Failures?.slice(0, 3))}`);
  assert.equal(report.Success?.length, instances.length);
  return id;
}

async function orthancHas(stack: Stack, orthancId: string): Promise<boolean> {
  const response = await fetch(`${stack.pacs.url}/instances/${orthancId}`);
  await response.text();
  return response.ok;
}

async function patientOf(stack: Stack, instance: CreatedInstance): Promise<string> {
  return (await stack.pacs.rest<{ ID: string }>('GET', `/instances/${instance.orthancId}/patient`)).ID;
}

async function metric(stack: Stack, name: string): Promise<number> {
  const text = (await stack.sidecar.api<string>('GET', '/metrics', undefined, '')).body;
  const match = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  assert.ok(match, `${name} is exported`);
  return Number(match[1]);
}

describe('STGCMT_PROTECT on, Orthanc recycling (MaximumPatientCount 2)', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ pacsConfig: { MaximumPatientCount: 2 }, sidecarEnv: { STGCMT_PROTECT: 'true', STGCMT_WATCH_INTERVAL: `${WATCH_INTERVAL_MS}ms` } });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 60_000 });

  it('protects the committed patient before the report; recycling then removes others, never it', { timeout: 90_000 }, async () => {
    const committed = await createInstances(stack.pacs, 5, { patientId: 'L2-PROTECTED' });
    const id = await commitThroughOrthanc(stack, committed);
    const detail = await waitForTransaction(stack.sidecar, id, (t) => t.state === 'REPORTED', 10_000) as Detail;
    assert.ok(detail.protectedAt, 'the transaction records when its instances were protected');
    assert.ok(Date.parse(detail.protectedAt) <= Date.parse(detail.deliveryAttemptLog.find((a) => a.ok)!.at), 'protected before the report went out');
    const patient = await patientOf(stack, committed[0]!);
    assert.equal(String(await stack.pacs.rest('GET', `/patients/${patient}/protected`)), '1', 'Orthanc says the patient is protected');

    // Three more patients: with room for two, Orthanc recycles the oldest unprotected ones.
    const others: CreatedInstance[][] = [];
    for (const name of ['L2-B', 'L2-C', 'L2-D']) others.push(await createInstances(stack.pacs, 2, { patientId: name }));
    const patients = await stack.pacs.rest<string[]>('GET', '/patients');
    assert.equal(patients.length, 2, 'Orthanc recycled down to MaximumPatientCount');
    assert.ok(!(await orthancHas(stack, others[0]![0]!.orthancId)), 'an unprotected patient was recycled');
    for (const instance of committed) assert.ok(await orthancHas(stack, instance.orthancId), 'every committed instance survived recycling');

    // And the watch, which has had time for rounds, has nothing to report.
    await sleep(2 * WATCH_INTERVAL_MS);
    const after = (await stack.sidecar.api<Detail>('GET', `/api/transactions/MODALITY/${encodeURIComponent(id)}?instances=none`)).body;
    assert.equal(after.committedThenDeleted, 0);
    assert.equal(await metric(stack, 'stgcmt_committed_then_deleted_total'), 0);
  });

  it('/readyz shows the commitment holds (protection on), without a warning', async () => {
    const { status, body } = await stack.sidecar.api<Readyz>('GET', '/readyz', undefined, '');
    assert.equal(status, 200);
    assert.equal(body.commitment?.protect, true);
    assert.equal(body.commitment?.warning, undefined);
  });
});

describe('STGCMT_PROTECT off, Orthanc recycling (MaximumPatientCount 2): warned, and deletions are found', () => {
  let stack: Stack;
  let orthancVersion = '';

  before(async () => {
    stack = await startStack({ pacsConfig: { MaximumPatientCount: 2 }, sidecarEnv: { STGCMT_WATCH_INTERVAL: `${WATCH_INTERVAL_MS}ms` } });
    orthancVersion = (await stack.pacs.rest<{ Version: string }>('GET', '/system')).Version;
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 60_000 });

  it('warns loudly at start, and /readyz says why the commitment is weaker', async () => {
    // 1.12 shows MaximumPatientCount in /system: the sidecar knows Orthanc recycles (error). 1.10.1 does
    // not: the sidecar cannot tell, and says so (warning).
    const knows = !orthancVersion.startsWith('1.10.');
    const line = await stack.sidecar.waitForLog((l) => typeof l['msg'] === 'string' && /recycl/i.test(l['msg']) && (l['level'] as number) >= 40, 10_000);
    assert.equal(line['level'], knows ? 50 : 40);
    assert.match(line['msg'] as string, /STGCMT_PROTECT=true/);
    assert.equal(stack.sidecar.logLines().filter((l) => l['msg'] === line['msg']).length, 1, 'said once, not at every probe');
    const { status, body } = await stack.sidecar.api<Readyz>('GET', '/readyz', undefined, '');
    assert.equal(status, 200, 'a weaker commitment does not make the sidecar unready');
    assert.equal(body.commitment?.protect, false);
    assert.equal(body.commitment?.orthancRecycling, knows ? 'on' : 'unknown');
    assert.match(body.commitment?.warning ?? '', /PS3\.4 J\.3\.3\.1\.2/);
  });

  it('finds committed instances recycled after their report: API, list, metric and an error line without UIDs', { timeout: 90_000 }, async () => {
    const committed = await createInstances(stack.pacs, 3, { patientId: 'L2-RECYCLED' });
    const id = await commitThroughOrthanc(stack, committed);
    await waitForTransaction(stack.sidecar, id, (t) => t.state === 'REPORTED', 10_000);
    // Two newer patients: the committed one is the oldest, and unprotected.
    await createInstances(stack.pacs, 2, { patientId: 'L2-NEWER-1' });
    await createInstances(stack.pacs, 2, { patientId: 'L2-NEWER-2' });
    for (const instance of committed) assert.ok(!(await orthancHas(stack, instance.orthancId)), 'Orthanc recycled the committed patient');

    const found = await waitForTransaction(stack.sidecar, id, (t) => (t as Detail).committedThenDeleted === 3, 5 * WATCH_INTERVAL_MS) as Detail;
    assert.equal(found.state, 'REPORTED', 'an alarm, not a new report: the transaction stays reported');
    const vanished = (await stack.sidecar.api<{ items: Array<{ sopInstanceUid: string; outcome: string; vanishedAt?: string }> }>('GET', `/api/transactions/MODALITY/${encodeURIComponent(id)}/instances?outcome=vanished`)).body.items;
    assert.deepEqual(vanished.map((i) => i.sopInstanceUid).sort(), committed.map((i) => i.sopInstanceUid).sort());
    assert.ok(vanished.every((i) => i.outcome === 'committed' && i.vanishedAt && Date.parse(i.vanishedAt) >= Date.parse(found.reportedAt!)));

    const list = (await stack.sidecar.api<{ total: number; items: Vanished[] }>('GET', '/api/committed-then-deleted')).body;
    assert.equal(list.total, 3);
    assert.ok(list.items.every((v) => v.transactionUid === id && v.callingAet === 'MODALITY' && v.url === `/api/transactions/MODALITY/${encodeURIComponent(id)}`));
    assert.equal(await metric(stack, 'stgcmt_committed_then_deleted_total'), 3);

    const alarm = stack.sidecar.logLines().find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('COMMITTED INSTANCES DELETED'));
    assert.ok(alarm, 'logged');
    assert.equal(alarm['level'], 50);
    assert.equal(alarm['transactionUid'], id);
    const text = JSON.stringify(alarm);
    for (const instance of committed) assert.ok(!text.includes(instance.sopInstanceUid), 'no instance UID in the log line');
    assert.ok(!text.includes('L2-RECYCLED'), 'no patient ID in the log line');
  });

  it('finds a study deleted through Orthanc\'s REST API after its report, within the watch interval', { timeout: 90_000 }, async () => {
    const committed = await createInstances(stack.pacs, 4, { patientId: 'L2-DELETED-STUDY' });
    const id = await commitThroughOrthanc(stack, committed);
    await waitForTransaction(stack.sidecar, id, (t) => t.state === 'REPORTED', 10_000);
    const before = await metric(stack, 'stgcmt_committed_then_deleted_total');
    const study = (await stack.pacs.rest<{ ID: string }>('GET', `/instances/${committed[0]!.orthancId}/study`)).ID;
    await stack.pacs.rest('DELETE', `/studies/${study}`);
    const deletedAt = Date.now();
    await waitUntil(async () => ((await stack.sidecar.api<Detail>('GET', `/api/transactions/MODALITY/${encodeURIComponent(id)}?instances=none`)).body.committedThenDeleted === 4), 2 * WATCH_INTERVAL_MS + 2000, 100);
    const tookMs = Date.now() - deletedAt;
    // One round runs every interval; a round over a few instances takes milliseconds.
    assert.ok(tookMs <= WATCH_INTERVAL_MS + 1500, `found ${tookMs} ms after the deletion (interval ${WATCH_INTERVAL_MS} ms)`);
    assert.equal(await metric(stack, 'stgcmt_committed_then_deleted_total'), before + 4);
  });
});

describe('STGCMT_PROTECT on, Orthanc failing the protection: the report waits', () => {
  let stack: Stack;

  before(async () => {
    // The proxy between the sidecar and the PACS answers the protection with a page that is not Orthanc's answer.
    stack = await startStack({ orthancProxy: true, sidecarEnv: { STGCMT_PROTECT: 'true' } });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 60_000 });

  it('no report while the patient cannot be protected; it goes out, protected, once Orthanc answers', { timeout: 90_000 }, async () => {
    const committed = await createInstances(stack.pacs, 3, { patientId: 'L2-PROTECT-FAILS' });
    const patient = await patientOf(stack, committed[0]!);
    const proxy = stack.proxy!;
    proxy.fault(`PUT /patients/${patient}/protected`, { kind: 'bodies', bodies: [WRONG_BODIES.html] });
    const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(committed));
    // Several protection attempts (retry delays 0.5 s, 1 s, 2 s in the harness), and still no report.
    await waitUntil(() => proxy.served(`PUT /patients/${patient}/protected`).reduce((a, b) => a + b, 0) >= 3, 20_000, 100);
    const held = (await stack.sidecar.api<Detail & { protectionError?: { error: string; retryAt: string | null } }>('GET', `/api/transactions/MODALITY/${encodeURIComponent(id)}?instances=none`)).body;
    assert.equal(held.state, 'VERIFIED', 'verified, but not reported');
    assert.match(held.protectionError?.error ?? '', /PUT \/patients\/\{id\}\/protected: unexpected answer/, 'the API says why the report waits');
    assert.equal(held.protectedAt, null);
    assert.equal(held.deliveryAttempts, 0, 'no delivery was even attempted');
    assert.equal((await stack.modality.rest<{ Status: string }>('GET', `/storage-commitment/${id}`)).Status, 'Pending', 'the modality has no report');
    assert.equal(String(await stack.pacs.rest('GET', `/patients/${patient}/protected`)), '0');
    assert.ok((await metric(stack, 'stgcmt_protection_failures_total')) >= 3);
    assert.ok(stack.sidecar.logLines().some((l) => l['level'] === 50 && /protecting the committed instances in Orthanc failed; the report waits/.test(String(l['msg']))));

    proxy.clear();
    const report = await awaitOrthancReport(stack.modality, id, 20_000);
    assert.equal(report.Status, 'Success');
    const done = await waitForTransaction(stack.sidecar, id, (t) => t.state === 'REPORTED', 10_000) as Detail & { protectionError?: unknown };
    assert.ok(done.protectedAt);
    assert.equal(done.protectionError, undefined);
    assert.equal(String(await stack.pacs.rest('GET', `/patients/${patient}/protected`)), '1');
  });
});
