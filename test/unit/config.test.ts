import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, nearestName, settings, withoutCredentials } from '../../src/config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const { config } = loadConfig({});
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
    const { config } = loadConfig({ STGCMT_DICOM_PORT: '104', STGCMT_REPORT_TTL: '2h', STGCMT_ARRIVAL_WAIT: '1500', STGCMT_CHECK_PEER_HOST: 'false' });
    assert.equal(config.dicomPort, 104);
    assert.equal(config.reportTtl, 7_200_000);
    assert.equal(config.arrivalWait, 1500);
    assert.equal(config.checkPeerHost, false);
  });

  it('layers the environment over a JSON file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'stgcmt-config-')), 'config.json');
    writeFileSync(file, JSON.stringify({ STGCMT_AET: 'FROMFILE', STGCMT_HTTP_PORT: 9000 }));
    const { config } = loadConfig({ STGCMT_CONFIG_FILE: file, STGCMT_HTTP_PORT: '9100' });
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
    assert.throws(() => loadConfig({ STGCMT_CONFIG_FILE: file }), /unknown setting STGCMT_ARIVAL_WAIT \(did you mean STGCMT_ARRIVAL_WAIT\?\)/);
  });

  it('warns on an unknown STGCMT_* environment name, suggesting the nearest known one', () => {
    const token = { STGCMT_API_TOKEN: 'x'.repeat(24) };
    const { config, warnings } = loadConfig({ ...token, STGCMT_ARIVAL_WAIT: '10s', STGCMT_PEER_FILE: '/etc/peers.json', STGCMT_COMPLETELY_UNRELATED_THING: '1', PATH: '/usr/bin', ORTHANC_FOO: 'x', STGCMT_CONFIG_FILE: '' });
    assert.equal(config.arrivalWait, 30_000, 'a misspelt setting is not applied');
    assert.deepEqual(warnings, [
      { setting: 'STGCMT_ARIVAL_WAIT', message: 'unknown setting STGCMT_ARIVAL_WAIT is ignored: did you mean STGCMT_ARRIVAL_WAIT?' },
      { setting: 'STGCMT_COMPLETELY_UNRELATED_THING', message: 'unknown setting STGCMT_COMPLETELY_UNRELATED_THING is ignored' },
      { setting: 'STGCMT_PEER_FILE', message: 'unknown setting STGCMT_PEER_FILE is ignored: did you mean STGCMT_PEERS_FILE?' },
    ]);
    assert.deepEqual(loadConfig({ ...token, STGCMT_ARRIVAL_WAIT: '10s' }).warnings, []);
  });

  it('warns when STGCMT_API_TOKEN is unset: the API answers 503', () => {
    const { warnings } = loadConfig({});
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.setting, 'STGCMT_API_TOKEN');
    assert.match(warnings[0]?.message ?? '', /unset: .*503/);
  });

  it('accepts ORTHANC_URL only as an http(s) URL with a host', () => {
    for (const good of ['http://localhost:8042', 'https://pacs.example/orthanc/', 'http://192.0.2.1:8042', 'http://[::1]:8042']) {
      assert.equal(loadConfig({ ORTHANC_URL: good }).config.orthancUrl, good);
    }
    for (const bad of ['localhost:8042', 'orthanc:8042', 'ftp://pacs.example', 'http://', 'file:///etc/passwd', '8042']) {
      assert.throws(
        () => loadConfig({ ORTHANC_URL: bad }),
        (error: unknown) => error instanceof ConfigError && /^ORTHANC_URL: must be an http:\/\/ or https:\/\/ URL with a host, e\.g\. http:\/\/localhost:8042 /.test(error.message),
        bad,
      );
    }
  });

  it('names the node STGCMT_NODE_ID, the host name by default', () => {
    assert.equal(loadConfig({}).config.nodeId, hostname());
    assert.equal(loadConfig({ STGCMT_NODE_ID: '' }).config.nodeId, hostname(), 'empty is unset, as for every setting');
    for (const good of ['stgcmt-a', 'node_2.site-b', 'N', 'x'.repeat(64)]) assert.equal(loadConfig({ STGCMT_NODE_ID: good }).config.nodeId, good);
  });

  it('refuses a node ID outside 1 to 64 characters of A-Z a-z 0-9 . _ -, naming the setting in one line', () => {
    for (const bad of ['x'.repeat(65), 'node 1', 'node/1', 'nöde', 'node:1', ' node', 'node\n']) {
      assert.throws(
        () => loadConfig({ STGCMT_NODE_ID: bad }),
        (error: unknown) => error instanceof ConfigError && /^STGCMT_NODE_ID: use 1 to 64 characters/.test(error.message) && !error.message.includes('\n'),
        JSON.stringify(bad),
      );
    }
    const file = join(mkdtempSync(join(tmpdir(), 'stgcmt-config-')), 'config.json');
    writeFileSync(file, JSON.stringify({ STGCMT_NODE_ID: '' }));
    assert.throws(() => loadConfig({ STGCMT_CONFIG_FILE: file }), (error: unknown) => error instanceof ConfigError && error.message.startsWith('STGCMT_NODE_ID: '), 'empty in the file is a value, and refused');
  });

  it('every setting is documented in the README', () => {
    const readme = readFileSync(resolve(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    for (const setting of Object.values(settings)) assert.ok(readme.includes(`\`${setting.env}\``), `${setting.env} missing from README`);
  });

  it('keeps each share within its whole: lowering STGCMT_MAX_ASSOCIATIONS alone lowers the per-AE share', () => {
    const { config } = loadConfig({ STGCMT_MAX_ASSOCIATIONS: '2' });
    assert.equal(config.maxAssociationsPerAe, 2);
    assert.equal(config.maxConnections, 128);
    const wide = loadConfig({ STGCMT_MAX_ASSOCIATIONS: '300', STGCMT_MAX_CONNECTIONS_PER_HOST: '500' }).config;
    assert.equal(wide.maxConnections, 300);
    assert.equal(wide.maxConnectionsPerHost, 300);
  });
});

describe('nearestName', () => {
  it('finds the known name within a few edits, or none', () => {
    const known = ['STGCMT_ARRIVAL_WAIT', 'STGCMT_API_TOKEN', 'STGCMT_AET'];
    assert.equal(nearestName('STGCMT_ARIVAL_WAIT', known), 'STGCMT_ARRIVAL_WAIT');
    assert.equal(nearestName('STGCMT_TOKEN', known), 'STGCMT_API_TOKEN');
    assert.equal(nearestName('STGCMT_AE', known), 'STGCMT_AET');
    assert.equal(nearestName('STGCMT_WHATEVER_ELSE', known), undefined);
  });
});

describe('withoutCredentials', () => {
  it('drops user and password from a URL, and leaves anything else as it is', () => {
    assert.equal(withoutCredentials('http://stgcmt:s3cret@pacs.example:8042/orthanc'), 'http://pacs.example:8042/orthanc');
    assert.equal(withoutCredentials('http://localhost:8042'), 'http://localhost:8042');
    assert.equal(withoutCredentials('not a url'), 'not a url');
  });
});
