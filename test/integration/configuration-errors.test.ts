/**
 * A modality that refuses our SCP role on the report association, end to end: the real sidecar (child
 * process) retries it on the slow configuration schedule (STGCMT_RETRY_CONFIG_ERROR), not like an outage,
 * logs it once at error level with the fix, shows it in the API as a configuration problem and counts it;
 * once the modality is fixed, a redelivery goes through.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { requestCommitment, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { apiTransactionsWithUid, waitForTransaction } from '../harness/faults.js';
import { MisbehavingAcceptor } from '../harness/misbehaving-acceptor.js';
import { newUid, SECONDARY_CAPTURE_SOP_CLASS } from '../harness/orthanc.js';
import { startStack, type Stack } from '../harness/stack.js';

const CONFIG_RETRY_MS = 20_000;

describe('a modality that refuses our SCP role', () => {
  let acceptor: MisbehavingAcceptor;
  let stack: Stack;

  before(async () => {
    acceptor = new MisbehavingAcceptor('refuse-scp-role');
    await acceptor.start();
    // The harness retries outages after 0.5-2 s: a configuration refusal must wait ~20 s instead.
    stack = await startStack({ peers: [{ aet: 'TESTSCU', port: acceptor.port }], sidecarEnv: { STGCMT_RETRY_CONFIG_ERROR: '20s' } });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    await acceptor?.stop();
  }, { timeout: 90_000 });

  it('is a configuration problem: slow retries, one error line with the fix, shown in the API and metrics', { timeout: 60_000 }, async () => {
    const target: ScuTarget = { host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'TESTSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 };
    // Absent instances (failed after STGCMT_ARRIVAL_WAIT) and a released association: the report must
    // go on an association of our own, to the acceptor that refuses our role.
    const outcome = await requestCommitment(target, [{ sopClassUid: SECONDARY_CAPTURE_SOP_CLASS, sopInstanceUid: newUid() }], { keepOpenMs: 0, reportTimeoutMs: 0 });
    assert.equal(outcome.nAction.status, 0);
    const uid = outcome.transactionUid;

    const retrying = await waitForTransaction(stack.sidecar, uid, (t) => t.state === 'DELIVERY_RETRY' && t.deliveryAttempts >= 1, 20_000);
    assert.equal(retrying.lastErrorCategory, 'configuration');
    assert.match(retrying.lastError ?? '', /refused our SCP role.*to fix: configure TESTSCU to accept the Storage Commitment SOP Class as SCU with role selection/);
    const last = retrying.deliveryAttemptLog.at(-1)!;
    assert.equal(last.ok, false);
    assert.equal(last.category, 'configuration');
    const gap = Date.parse(retrying.nextAttemptAt!) - Date.parse(last.at);
    assert.ok(gap >= 0.8 * CONFIG_RETRY_MS && gap <= 1.2 * CONFIG_RETRY_MS, `next attempt ${gap} ms after the refusal, not ~${CONFIG_RETRY_MS} ms`);
    assert.equal(acceptor.reportsSeen, 0, 'the report is not sent on a refused role');

    const listed = await apiTransactionsWithUid(stack.sidecar, uid);
    assert.equal(listed[0]?.lastErrorCategory, 'configuration', 'the list shows the category too');

    const refusals = stack.sidecar.logLines().filter((l) => l['level'] === 50 && l['transactionUid'] === uid && l['kind'] === 'role-refused');
    assert.equal(refusals.length, 1, 'one error-level line');
    assert.match(String(refusals[0]!['fix']), /TESTSCU .*role selection .*from AE STGCMT/);
    assert.match(String(refusals[0]!['msg']), /configuration/);

    const metrics = await stack.sidecar.api<string>('GET', '/metrics', undefined, '');
    assert.match(metrics.body, /stgcmt_delivery_configuration_errors_total\{kind="role-refused"\} 1\b/);

    // The outage schedule would have tried again by now (0.5 s, then 1 s, 2 s).
    await sleep(4000);
    const later = await waitForTransaction(stack.sidecar, uid, () => true, 1000);
    assert.equal(later.deliveryAttempts, retrying.deliveryAttempts, 'no retry within 4 s');

    // The modality is reconfigured (it now takes the report); the operator need not wait for the next retry.
    acceptor.behavior = 'omit-role-item';
    const redeliver = await stack.sidecar.api('POST', `/api/transactions/TESTSCU/${uid}/redeliver`);
    assert.equal(redeliver.status, 202);
    const done = await waitForTransaction(stack.sidecar, uid, (t) => t.state === 'REPORTED', 15_000);
    assert.equal(done.lastError, null);
    assert.equal(done.lastErrorCategory, null);
    assert.equal(acceptor.reportsSeen, 1);
  });
});
