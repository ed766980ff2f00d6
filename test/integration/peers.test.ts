/**
 * Who may call the sidecar, as an administrator changes it in a real Orthanc: every change of the peer
 * list is logged, Orthanc losing all its modalities is said loudly (once), and a refusal of an unknown AE
 * says how fresh the list was. The shipped Orthanc configuration keeps modalities declared through the
 * REST API across Orthanc's restart.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, requestCommitment } from '../../src/cli/commitment-scu.js';
import { createInstances, freePort, startOrthanc } from '../harness/orthanc.js';
import { startStack, type Stack } from '../harness/stack.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const INFO = 30;
const ERROR = 50;

describe('peer list changes in Orthanc', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ sidecarEnv: { STGCMT_PEERS_REFRESH: '1s' } });
  });

  after(async () => {
    await stack?.stop();
  });

  it("logs the removal of Orthanc's only modality, and warns once, loudly, that Orthanc declares none", async () => {
    const { sidecar, pacs } = stack;
    await sidecar.waitForLog((l) => l['msg'] === 'peers loaded' && String(l['peers']).includes('MODALITY'));
    await pacs.rest('DELETE', '/modalities/modality');
    const removal = await sidecar.waitForLog((l) => l['msg'] === 'peer list changed' && (l['removed'] as string[]).includes('MODALITY'), 10_000);
    assert.equal(removal['level'], INFO);
    assert.deepEqual(removal['added'], []);
    const isWarning = (l: Record<string, unknown>): boolean => /ORTHANC NOW DECLARES NO MODALITY/.test(String(l['msg']));
    const warning = await sidecar.waitForLog(isWarning, 10_000);
    assert.equal(warning['level'], ERROR);
    assert.match(String(warning['msg']), /refused/);
    assert.match(String(warning['msg']), /pending/);
    assert.deepEqual(warning['removed'], ['MODALITY']);
    // Several refreshes later (every 1 s), still said once.
    await sleep(3500);
    assert.equal(sidecar.logLines().filter(isWarning).length, 1);
  });

  it('refuses the removed modality and names when the peer list was last refreshed', async () => {
    const { sidecar } = stack;
    await assert.rejects(connect({ host: '127.0.0.1', port: sidecar.dicomPort, callingAeTitle: 'MODALITY', calledAeTitle: sidecar.aeTitle, timeoutMs: 5000 }), /rejected/);
    const rejection = await sidecar.waitForLog((l) => l['msg'] === 'association rejected' && l['callingAet'] === 'MODALITY', 5000);
    assert.match(String(rejection['why']), /"MODALITY" is not a known peer \(0 peers known, list last refreshed \d{4}-\d\d-\d\dT[\d:.]+Z \(\d s ago\)\)/);
  });

  it('logs a modality declared again', async () => {
    const { sidecar, pacs } = stack;
    await pacs.rest('PUT', '/modalities/ct1', { AET: 'CT1', Host: '127.0.0.1', Port: 104 });
    const added = await sidecar.waitForLog((l) => l['msg'] === 'peer list changed' && (l['added'] as string[]).includes('CT1'), 10_000);
    assert.equal(added['level'], INFO);
  });

  it("compares AE titles as Orthanc does by default: a peer declared as us1 calling as US1 commits, recorded under us1", async () => {
    const { sidecar, pacs } = stack;
    await pacs.rest('PUT', '/modalities/us1', { AET: 'us1', Host: '127.0.0.1', Port: await freePort() });
    await sidecar.waitForLog((l) => l['msg'] === 'peer list changed' && (l['added'] as string[]).includes('us1'), 10_000);
    const [instance] = await createInstances(pacs, 1);
    const target = { host: '127.0.0.1', port: sidecar.dicomPort, callingAeTitle: 'US1', calledAeTitle: sidecar.aeTitle, timeoutMs: 5000 };
    const outcome = await requestCommitment(target, [{ sopClassUid: instance!.sopClassUid, sopInstanceUid: instance!.sopInstanceUid }], { keepOpenMs: 10_000, reportTimeoutMs: 10_000 });
    assert.equal(outcome.nAction.status, 0);
    assert.equal(outcome.report?.eventTypeId, 1, 'committed, reported on its association');
    // One transaction key per peer, whatever the case it calls with: the title configured for it.
    const recorded = await sidecar.api<{ callingAeTitle?: string; callingAet?: string }>('GET', `/api/transactions/us1/${outcome.transactionUid}`);
    assert.equal(recorded.status, 200, JSON.stringify(recorded.body));
    const upper = await sidecar.api('GET', `/api/transactions/US1/${outcome.transactionUid}`);
    assert.equal(upper.status, 404);
  });

  it('with STGCMT_STRICT_AET_COMPARISON=true refuses US1 for the peer us1, and says the titles differ in case', async () => {
    const { sidecar } = stack;
    await sidecar.restart({ STGCMT_STRICT_AET_COMPARISON: 'true' });
    await sidecar.waitForLog((l) => l['msg'] === 'peers loaded' && String(l['peers']).includes('us1@'));
    const target = { host: '127.0.0.1', port: sidecar.dicomPort, callingAeTitle: 'US1', calledAeTitle: sidecar.aeTitle, timeoutMs: 5000 };
    await assert.rejects(connect(target), /rejected/);
    const rejection = await sidecar.waitForLog((l) => l['msg'] === 'association rejected' && l['callingAet'] === 'US1', 5000);
    assert.match(String(rejection['why']), /"US1" is not a known peer .*"us1" differs only in case.*STGCMT_STRICT_AET_COMPARISON/);
    const exact = await connect({ ...target, callingAeTitle: 'us1' });
    await exact.release();
  });
});

describe("the shipped Orthanc configuration (orthanc-config/orthanc.json)", () => {
  it('keeps modalities declared through the REST API across a restart of Orthanc', async () => {
    const shipped = JSON.parse(readFileSync(resolve(ROOT, 'orthanc-config', 'orthanc.json'), 'utf8')) as Record<string, unknown>;
    const orthanc = await startOrthanc({ name: 'shipped-config', aet: 'PACS', extraConfig: { DicomModalitiesInDatabase: shipped['DicomModalitiesInDatabase'] ?? false } });
    try {
      await orthanc.rest('PUT', '/modalities/ct1', { AET: 'CT1', Host: '192.0.2.10', Port: 104 });
      await orthanc.restart();
      const modalities = await orthanc.rest<Record<string, { AET: string }>>('GET', '/modalities?expand');
      assert.equal(modalities['ct1']?.AET, 'CT1', `after the restart Orthanc declares ${JSON.stringify(Object.keys(modalities))}`);
    } finally {
      await orthanc.stop();
    }
  });
});
