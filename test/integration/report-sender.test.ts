/**
 * The report sender's extensions of dcmjs-dimse, each against a real peer: roles proposed on the wire,
 * a granted / silent / refused role told apart, an A-ABORT noticed at once, an error status not taken
 * for delivery. Real Orthanc shows the lenient-but-conformant case.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildEventReport } from '../../src/commitment/report.js';
import { DeliveryConfigurationError, DeliveryError, deliveryErrorCategory, DeliveryStatusError, readyReport } from '../../src/dicom/event-report.js';
import { sendReportOnNewAssociation } from '../../src/dicom/report-sender.js';
import type { Peer } from '../../src/peers/peer-directory.js';
import { MisbehavingAcceptor } from '../harness/misbehaving-acceptor.js';
import { newUid, startOrthanc, type OrthancServer } from '../harness/orthanc.js';
import '../harness/stack.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const report = () => buildEventReport(newUid(), 'PACS', { committed: [{ sopClassUid: CT, sopInstanceUid: newUid() }], failed: [] });
const peerAt = (aeTitle: string, port: number): Peer => ({ aeTitle, host: '127.0.0.1', port, tls: false, callback: true, source: 'file', addresses: ['127.0.0.1'] });
const lenient = { timeoutMs: 30_000, strictRoleSelection: false, tls: undefined };

describe('report sender against real and misbehaving peers', () => {
  let acceptor: MisbehavingAcceptor;
  let orthanc: OrthancServer;

  before(async () => {
    acceptor = new MisbehavingAcceptor('refuse-scp-role');
    await acceptor.start();
    orthanc = await startOrthanc({ name: 'report-target', aet: 'MODALITY', dicomModalities: { stgcmt: { aet: 'STGCMT', host: '127.0.0.1', port: 1 } } });
  });

  after(async () => {
    await acceptor?.stop();
    await orthanc?.stop();
  });

  it('Orthanc grants the SCP role we propose and takes the report', async () => {
    const r = report();
    const delivery = await sendReportOnNewAssociation(peerAt('MODALITY', orthanc.dicomPort), 'STGCMT', readyReport(r), lenient);
    assert.equal(delivery.roleAnswer, 'granted');
    const stored = await orthanc.rest<{ Status: string; RemoteAET: string }>('GET', `/storage-commitment/${r.transactionUid}`);
    assert.equal(stored.Status, 'Success');
    assert.equal(stored.RemoteAET, 'STGCMT');
  });

  it('fails the attempt when the acceptor refuses our SCP role, without sending the report', async () => {
    acceptor.behavior = 'refuse-scp-role';
    acceptor.reportsSeen = 0;
    await assert.rejects(sendReportOnNewAssociation(peerAt('ANY', acceptor.port), 'STGCMT', readyReport(report()), lenient), /refused our SCP role/);
    assert.equal(acceptor.reportsSeen, 0);
  });

  it('tells a silent acceptor (no role item) apart: sends in lenient mode, refuses in strict mode', async () => {
    acceptor.behavior = 'omit-role-item';
    acceptor.reportsSeen = 0;
    const delivery = await sendReportOnNewAssociation(peerAt('ANY', acceptor.port), 'STGCMT', readyReport(report()), lenient);
    assert.equal(delivery.roleAnswer, 'silent');
    assert.equal(acceptor.reportsSeen, 1);
    await assert.rejects(sendReportOnNewAssociation(peerAt('ANY', acceptor.port), 'STGCMT', readyReport(report()), { ...lenient, strictRoleSelection: true }), /did not answer our role selection/);
    assert.equal(acceptor.reportsSeen, 1);
  });

  it('notices an A-ABORT at once instead of waiting for the 30 s timeout', async () => {
    for (const behavior of ['abort-on-report', 'abort-on-associate'] as const) {
      acceptor.behavior = behavior;
      const started = performance.now();
      await assert.rejects(sendReportOnNewAssociation(peerAt('ANY', acceptor.port), 'STGCMT', readyReport(report()), lenient), (error: unknown) => {
        assert.ok(error instanceof DeliveryError);
        assert.match(error.message, /abort|closed/i);
        return true;
      });
      assert.ok(performance.now() - started < 10_000, `${behavior}: gave up after ${Math.round(performance.now() - started)} ms`);
    }
  });

  it('does not count an error status as delivered', async () => {
    acceptor.behavior = 'error-status';
    await assert.rejects(sendReportOnNewAssociation(peerAt('ANY', acceptor.port), 'STGCMT', readyReport(report()), lenient), (error: unknown) => {
      assert.ok(error instanceof DeliveryStatusError, String(error));
      assert.match(error.message, /status 0x0110/);
      assert.equal(deliveryErrorCategory(error), 'peer-status');
      return true;
    });
  });

  it('tells each refusal that only a configuration change ends apart, with its kind and fix, without sending the report', async () => {
    const cases = [
      { behavior: 'refuse-scp-role', options: lenient, kind: 'role-refused', fix: /ANY to accept the Storage Commitment SOP Class as SCU with role selection .* from AE STGCMT/ },
      { behavior: 'omit-role-item', options: { ...lenient, strictRoleSelection: true }, kind: 'role-unanswered-strict', fix: /role selection .*STGCMT_STRICT_ROLE_SELECTION=false/ },
      { behavior: 'reject-context', options: lenient, kind: 'context-rejected', fix: /ANY to accept the Storage Commitment Push Model SOP Class \(1\.2\.840\.10008\.1\.20\.1\) from AE STGCMT/ },
      { behavior: 'reject-calling-ae', options: lenient, kind: 'association-rejected-permanent', fix: /declare AE STGCMT at 127\.0\.0\.1 on ANY/ },
    ] as const;
    for (const c of cases) {
      acceptor.behavior = c.behavior;
      acceptor.reportsSeen = 0;
      await assert.rejects(sendReportOnNewAssociation(peerAt('ANY', acceptor.port), 'STGCMT', readyReport(report()), c.options), (error: unknown) => {
        assert.ok(error instanceof DeliveryConfigurationError, `${c.behavior}: ${String(error)}`);
        assert.equal(error.kind, c.kind, c.behavior);
        assert.match(error.fix, c.fix, c.behavior);
        assert.equal(deliveryErrorCategory(error), 'configuration');
        return true;
      });
      assert.equal(acceptor.reportsSeen, 0, c.behavior);
    }
  });

  it('fails promptly when nobody listens', async () => {
    await assert.rejects(
      sendReportOnNewAssociation(peerAt('ANY', 1), 'STGCMT', readyReport(report()), lenient),
      (error: unknown) => error instanceof DeliveryError && /ECONNREFUSED/.test(error.message) && deliveryErrorCategory(error) === 'network',
    );
  });
});
