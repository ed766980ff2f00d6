/**
 * What a newcomer sees in the log when the start is not quite right: a misspelt setting, no API token, an
 * Orthanc that cannot be reached (named by the URL tried, without its credentials).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, startOrthanc, type OrthancServer } from '../harness/orthanc.js';
import { startSidecar, type SidecarProcess } from '../harness/sidecar.js';

const WARN = 40;

describe('sidecar start-up warnings', () => {
  let pacs: OrthancServer;
  const started: SidecarProcess[] = [];

  before(async () => {
    pacs = await startOrthanc({ name: 'pacs', aet: 'PACS' });
  });

  after(async () => {
    for (const sidecar of started) {
      await sidecar.stop();
      sidecar.cleanup();
    }
    await pacs?.stop();
  });

  it('warns on a misspelt STGCMT_* variable, naming the setting it probably meant', async () => {
    const sidecar = await startSidecar({ orthancUrl: pacs.url, env: { STGCMT_ARIVAL_WAIT: '5s' } });
    started.push(sidecar);
    const warning = await sidecar.waitForLog((l) => l['setting'] === 'STGCMT_ARIVAL_WAIT', 5000);
    assert.equal(warning['level'], WARN);
    assert.match(String(warning['msg']), /did you mean STGCMT_ARRIVAL_WAIT\?/);
  });

  it('warns that the API answers 503 without STGCMT_API_TOKEN, and names the Orthanc URL it could not reach', async () => {
    const nobody = await freePort();
    const sidecar = await startSidecar({ orthancUrl: `http://stgcmt:s3cret-pw@127.0.0.1:${nobody}`, env: { STGCMT_API_TOKEN: '' } });
    started.push(sidecar);
    const token = await sidecar.waitForLog((l) => l['setting'] === 'STGCMT_API_TOKEN', 5000);
    assert.equal(token['level'], WARN);
    assert.match(String(token['msg']), /503/);
    const unreachable = await sidecar.waitForLog((l) => /Orthanc cannot be reached at start/.test(String(l['msg'])), 15_000);
    assert.equal(unreachable['level'], WARN);
    assert.equal(unreachable['orthancUrl'], `http://127.0.0.1:${nobody}`);
    assert.doesNotMatch(JSON.stringify(sidecar.logLines()), /s3cret-pw/, 'the password is in no log line');
    const api = await sidecar.api('GET', '/api/summary', undefined, 'whatever-token-0123456789');
    assert.equal(api.status, 503);
  });
});
