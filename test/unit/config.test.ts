import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, settings } from '../../src/config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({});
    assert.equal(config.orthancUrl, 'http://localhost:8042');
    assert.equal(config.aeTitle, 'STGCMT');
    assert.equal(config.dicomPort, 11112);
    assert.equal(config.httpPort, 8080);
    assert.equal(config.dataDir, './data');
    assert.equal(config.reportTtl, 24 * 3600 * 1000);
    assert.equal(config.arrivalWait, 30_000);
    assert.equal(config.verifyPolicy, 'exists');
  });

  it('reads the environment, with durations in words', () => {
    const config = loadConfig({ STGCMT_DICOM_PORT: '104', STGCMT_REPORT_TTL: '2h', STGCMT_ARRIVAL_WAIT: '1500', STGCMT_CHECK_PEER_HOST: 'false' });
    assert.equal(config.dicomPort, 104);
    assert.equal(config.reportTtl, 7_200_000);
    assert.equal(config.arrivalWait, 1500);
    assert.equal(config.checkPeerHost, false);
  });

  it('layers the environment over a JSON file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'stgcmt-config-')), 'config.json');
    writeFileSync(file, JSON.stringify({ STGCMT_AET: 'FROMFILE', STGCMT_HTTP_PORT: 9000 }));
    const config = loadConfig({ STGCMT_CONFIG_FILE: file, STGCMT_HTTP_PORT: '9100' });
    assert.equal(config.aeTitle, 'FROMFILE');
    assert.equal(config.httpPort, 9100);
  });

  it('stops with one line naming the setting on a wrong value', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ STGCMT_DICOM_PORT: 'eleven' }, /^STGCMT_DICOM_PORT: /],
      [{ STGCMT_AET: 'MUCH_TOO_LONG_AE_TITLE' }, /^STGCMT_AET: /],
      [{ STGCMT_REPORT_TTL: 'soon' }, /^STGCMT_REPORT_TTL: not a duration/],
      [{ STGCMT_VERIFY: 'sha1' }, /^STGCMT_VERIFY: /],
      [{ ORTHANC_URL: 'not a url' }, /^ORTHANC_URL: /],
      [{ STGCMT_API_TOKEN: 'short' }, /^STGCMT_API_TOKEN: use at least 16/],
      [{ STGCMT_TLS_CERT: '/x.pem' }, /STGCMT_TLS_CERT and STGCMT_TLS_KEY/],
      [{ STGCMT_CONFIG_FILE: '/nonexistent.json' }, /^STGCMT_CONFIG_FILE: cannot read/],
    ];
    for (const [env, message] of cases) {
      assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && message.test(error.message) && !error.message.includes('\n'), JSON.stringify(env));
    }
  });

  it('refuses unknown keys in the JSON file (a typo must not pass silently)', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'stgcmt-config-')), 'config.json');
    writeFileSync(file, JSON.stringify({ STGCMT_ARIVAL_WAIT: '10s' }));
    assert.throws(() => loadConfig({ STGCMT_CONFIG_FILE: file }), /unknown setting STGCMT_ARIVAL_WAIT/);
  });

  it('every setting is documented in the README', () => {
    const readme = readFileSync(resolve(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    for (const setting of Object.values(settings)) assert.ok(readme.includes(`\`${setting.env}\``), `${setting.env} missing from README`);
  });
});
