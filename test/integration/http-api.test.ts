/**
 * The operator's side of the sidecar, against a running stack: health, readiness, metrics, the
 * transactions API (auth, filters, paging, redeliver), start-up configuration errors, calling-host
 * checks, DICOM TLS both ways, and a clean SIGTERM.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { connect, requestCommitment } from '../../src/cli/commitment-scu.js';
import { ReportReceiver } from '../../src/cli/report-receiver.js';
import { constants } from '../../src/dicom/dimse.js';
import { AssociationRejectedError } from '../../src/dicom/requestor.js';
import { makeTestPki } from '../harness/certificates.js';
import { createInstances, freePort, newUid, type CreatedInstance } from '../harness/orthanc.js';
import { startSidecar, TEST_API_TOKEN, waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const ROOT = resolve(import.meta.dirname, '..', '..');

interface Page {
  total: number;
  items: Array<{ transactionUid: string; callingAet: string; state: string; instances: number; committed: number; failed: number }>;
}

describe('HTTP API and operations', () => {
  let stack: Stack;
  let receiver: ReportReceiver;
  let receiver2: ReportReceiver;
  let stored: CreatedInstance[];
  const uids: string[] = [];
  const target = (callingAeTitle: string) => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle, calledAeTitle: 'STGCMT', timeoutMs: 10_000 });

  before(async () => {
    const [port, port2] = [await freePort(), await freePort()];
    receiver = new ReportReceiver({ aeTitle: 'OPS1', port, strictRoles: true });
    receiver2 = new ReportReceiver({ aeTitle: 'OPS2', port: port2, strictRoles: true });
    await Promise.all([receiver.start(), receiver2.start()]);
    stack = await startStack({
      peers: [
        { aet: 'OPS1', port },
        { aet: 'OPS2', port: port2 },
      ],
    });
    stored = await createInstances(stack.pacs, 5, { sopClassUid: CT });
    const runs: Array<[string, string[]]> = [
      ['OPS1', [stored[0]!.sopInstanceUid, stored[1]!.sopInstanceUid]],
      ['OPS2', [stored[2]!.sopInstanceUid]],
      ['OPS1', [stored[3]!.sopInstanceUid, newUid()]],
    ];
    for (const [aet, instances] of runs) {
      const outcome = await requestCommitment(target(aet), instances.map((sopInstanceUid) => ({ sopClassUid: CT, sopInstanceUid })), { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver: aet === 'OPS1' ? receiver : receiver2 });
      assert.ok(outcome.report, `report for ${aet}`);
      uids.push(outcome.transactionUid);
    }
    await waitUntil(async () => (await stack.sidecar.api<Page>('GET', '/api/transactions?state=REPORTED')).body.total === 3, 5000);
  });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
    await receiver2?.stop();
  });

  it('answers health, readiness and metrics without a token', async () => {
    assert.deepEqual((await stack.sidecar.api('GET', '/healthz', undefined, '')).body, { status: 'ok' });
    const ready = await stack.sidecar.api<{ checks: Record<string, boolean> }>('GET', '/readyz', undefined, '');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body.checks, { dicomListener: true, store: true, orthanc: true });
    const metrics = await stack.sidecar.api<string>('GET', '/metrics', undefined, '');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /stgcmt_transactions_total\{outcome="committed"\} 2/);
    assert.match(metrics.body, /stgcmt_transactions_total\{outcome="failed"\} 1/);
    assert.match(metrics.body, /stgcmt_instances_total\{result="0x0112"\} 1/);
    assert.match(metrics.body, /stgcmt_delivery_attempts_total\{via="new-association",ok="true"\} 3/);
    assert.match(metrics.body, /stgcmt_verification_seconds_count 3/);
    assert.match(metrics.body, /stgcmt_open_associations \d+/);
  });

  it('refuses the API without the right bearer token, with JSON and no stack trace', async () => {
    for (const token of ['', 'wrong-token-0123456789', `${TEST_API_TOKEN}x`]) {
      const response = await stack.sidecar.api<{ error: string }>('GET', '/api/transactions', undefined, token);
      assert.equal(response.status, 401, token);
      assert.match(response.body.error, /bearer token/);
    }
  });

  it('lists transactions with filters and paging', async () => {
    const all = (await stack.sidecar.api<Page>('GET', '/api/transactions')).body;
    assert.equal(all.total, 3);
    assert.deepEqual(all.items.map((i) => i.transactionUid), [...uids].reverse());
    const ops1 = (await stack.sidecar.api<Page>('GET', '/api/transactions?callingAet=OPS1')).body;
    assert.deepEqual(ops1.items.map((i) => i.transactionUid), [uids[2], uids[0]]);
    const second = (await stack.sidecar.api<Page>('GET', '/api/transactions?limit=1&offset=1')).body;
    assert.equal(second.total, 3);
    assert.deepEqual(second.items.map((i) => i.transactionUid), [uids[1]]);
    const future = (await stack.sidecar.api<Page>('GET', `/api/transactions?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).body;
    assert.equal(future.total, 0);
    const past = (await stack.sidecar.api<Page>('GET', `/api/transactions?to=${encodeURIComponent(new Date().toISOString())}&state=REPORTED`)).body;
    assert.equal(past.total, 3);
    assert.deepEqual(all.items.find((i) => i.transactionUid === uids[2]), { ...all.items.find((i) => i.transactionUid === uids[2])!, instances: 2, committed: 1, failed: 1 });
  });

  it('answers bad input with 4xx JSON errors', async () => {
    for (const query of ['limit=0', 'limit=abc', 'state=BOGUS', 'from=yesterday', 'offset=-1']) {
      const response = await stack.sidecar.api<{ error: string }>('GET', `/api/transactions?${query}`);
      assert.equal(response.status, 400, query);
      assert.match(response.body.error, /invalid query parameter/);
    }
    assert.equal((await stack.sidecar.api('GET', '/api/transactions/1.2.3.4.404')).status, 404);
    assert.equal((await stack.sidecar.api('POST', '/api/transactions/1.2.3.4.404/redeliver')).status, 404);
    assert.equal((await stack.sidecar.api('GET', '/no/such/route')).status, 404);
  });

  it('shows a transaction in detail and redelivers its report on request', async () => {
    type Detail = { state: string; instanceOutcomes: Array<{ outcome: string; failureReasonHex?: string; failureReasonText?: string }>; deliveryAttemptLog: Array<{ ok: boolean }> };
    const detail = (await stack.sidecar.api<Detail>('GET', `/api/transactions/${uids[2]}`)).body;
    assert.deepEqual(detail.instanceOutcomes.map((i) => i.outcome), ['committed', 'failed']);
    assert.equal(detail.instanceOutcomes[1]?.failureReasonHex, '0x0112');
    const attention = (await stack.sidecar.api<Detail>('GET', `/api/transactions/${uids[2]}?instances=not-committed`)).body;
    assert.deepEqual(attention.instanceOutcomes.map((i) => i.outcome), ['failed']);
    assert.equal((await stack.sidecar.api('GET', `/api/transactions/${uids[2]}?instances=some`)).status, 400);
    assert.match(detail.instanceOutcomes[1]?.failureReasonText ?? '', /No such object instance/);
    const before = receiver.reports.filter((r) => r.transactionUid === uids[2]).length;
    const response = await stack.sidecar.api<{ state: string }>('POST', `/api/transactions/${uids[2]}/redeliver`);
    assert.equal(response.status, 202);
    await waitUntil(() => receiver.reports.filter((r) => r.transactionUid === uids[2]).length === before + 1, 10_000);
    await waitUntil(async () => (await stack.sidecar.api<Detail>('GET', `/api/transactions/${uids[2]}`)).body.deliveryAttemptLog.length === 2, 5000);
    assert.equal((await stack.sidecar.api<Detail>('GET', `/api/transactions/${uids[2]}`)).body.state, 'REPORTED');
  });

  it('serves its OpenAPI description', async () => {
    const response = await fetch(`${stack.sidecar.url}/openapi.yaml`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /openapi: 3/);
  });

  it('refuses a known AE title calling from another host than its configured one', async () => {
    const port = await freePort();
    const peers = join(mkdtempSync('/dev/shm/stgcmt-peers-'), 'peers.json');
    writeFileSync(peers, JSON.stringify({ peers: [{ aet: 'FARHOST', host: '192.0.2.1', port }, { aet: 'NEARHOST', host: '127.0.0.1', port }] }));
    const sidecar = await startSidecar({ orthancUrl: stack.pacs.url, env: { STGCMT_PEERS_FILE: peers } });
    try {
      const t = { host: '127.0.0.1', port: sidecar.dicomPort, calledAeTitle: 'STGCMT', timeoutMs: 5000 };
      await assert.rejects(connect({ ...t, callingAeTitle: 'FARHOST' }), (error: unknown) => error instanceof AssociationRejectedError && error.reason === constants.RejectReason.CallingAeNotRecognized);
      const near = await connect({ ...t, callingAeTitle: 'NEARHOST' });
      await near.release();
      await sidecar.waitForLog((l) => l['msg'] === 'association rejected' && String(l['why']).includes('not from its configured host'));
    } finally {
      await sidecar.stop();
      sidecar.cleanup();
    }
  });

  it('speaks DICOM TLS on its port and to TLS peers, and refuses plain TCP there', async () => {
    const pki = makeTestPki();
    const port = await freePort();
    const tlsReceiver = new ReportReceiver({
      aeTitle: 'TLSSCU',
      port,
      strictRoles: true,
      tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caCert), requestCert: true, rejectUnauthorized: true },
    });
    await tlsReceiver.start();
    const peers = join(mkdtempSync('/dev/shm/stgcmt-peers-'), 'peers.json');
    writeFileSync(peers, JSON.stringify({ peers: [{ aet: 'TLSSCU', host: '127.0.0.1', port, tls: true }] }));
    const sidecar = await startSidecar({
      orthancUrl: stack.pacs.url,
      env: { STGCMT_PEERS_FILE: peers, STGCMT_TLS_CERT: pki.serverCert, STGCMT_TLS_KEY: pki.serverKey, STGCMT_TLS_CA: pki.caCert, STGCMT_TLS_REQUIRE_CLIENT_CERT: 'true' },
    });
    try {
      const clientTls = { ca: readFileSync(pki.caCert), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey), servername: 'localhost' };
      const t = { host: '127.0.0.1', port: sidecar.dicomPort, callingAeTitle: 'TLSSCU', calledAeTitle: 'STGCMT', timeoutMs: 5000 };
      const outcome = await requestCommitment({ ...t, tls: clientTls }, [{ sopClassUid: CT, sopInstanceUid: stored[4]!.sopInstanceUid }], { keepOpenMs: 0, reportTimeoutMs: 10_000, receiver: tlsReceiver });
      assert.equal(outcome.nAction.status, 0);
      assert.equal(outcome.report?.via, 'new-association');
      assert.equal(outcome.report?.eventTypeId, 1);
      await assert.rejects(connect(t));
      await assert.rejects(connect({ ...t, tls: { ca: readFileSync(pki.caCert), servername: 'localhost' } }), 'a client without certificate is refused');
    } finally {
      await sidecar.stop();
      sidecar.cleanup();
      await tlsReceiver.stop();
    }
  });

  it('stops the start with one clear line on a configuration error', async () => {
    const result = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts')], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', STGCMT_DICOM_PORT: 'eleven' },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim().split('\n').length, 1);
    assert.match(result.stderr, /STGCMT_DICOM_PORT/);
  });

  it('reports not ready while Orthanc is down, and exits cleanly on SIGTERM', async () => {
    await stack.pacs.stop();
    const ready = await stack.sidecar.api<{ checks: Record<string, boolean> }>('GET', '/readyz', undefined, '');
    assert.equal(ready.status, 503);
    assert.equal(ready.body.checks['orthanc'], false);
    assert.equal(await stack.sidecar.stop(), 0);
    await stack.sidecar.waitForLog((l) => l['msg'] === 'stopped');
  });
});
