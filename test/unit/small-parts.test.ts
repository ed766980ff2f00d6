import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import cron from 'node-cron';
import { PduGuard } from '../../src/dicom/pdu-guard.js';
import { everyInterval } from '../../src/jobs/cron-expression.js';
import { mergePeers, peerMatchesAddress, type Peer } from '../../src/peers/peer-directory.js';
import { retryDelay } from '../../src/transactions/backoff.js';

function pduHeader(type: number, length: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt8(type, 0);
  b.writeUInt32BE(length, 2);
  return b;
}

describe('PduGuard', () => {
  it('lets well-formed PDUs through, across chunk boundaries', () => {
    const guard = new PduGuard(1000);
    const stream = Buffer.concat([pduHeader(0x01, 10), Buffer.alloc(10), pduHeader(0x04, 1000), Buffer.alloc(1000), pduHeader(0x05, 4), Buffer.alloc(4)]);
    for (let i = 0; i < stream.length; i += 7) assert.equal(guard.inspect(stream.subarray(i, i + 7)), undefined);
  });

  it('refuses a P-DATA-TF longer than advertised before its body arrives', () => {
    assert.match(new PduGuard(1000).inspect(pduHeader(0x04, 2 ** 31)) ?? '', /exceeds our maximum/);
  });

  it('refuses unknown PDU types and odd release/abort lengths', () => {
    assert.match(new PduGuard(1000).inspect(Buffer.from('GET / HTTP/1.1\r\n')) ?? '', /unknown PDU type/);
    assert.match(new PduGuard(1000).inspect(pduHeader(0x07, 100)) ?? '', /expected 4/);
    assert.match(new PduGuard(1000).inspect(pduHeader(0x01, 50 * 1024 * 1024)) ?? '', /implausibly large/);
  });
});

describe('retryDelay', () => {
  it('doubles from the initial delay, caps at the maximum, jitters by ±20 %', () => {
    assert.equal(retryDelay(1, 1000, 60_000, () => 0.5), 1000);
    assert.equal(retryDelay(4, 1000, 60_000, () => 0.5), 8000);
    assert.equal(retryDelay(50, 1000, 60_000, () => 0.5), 60_000);
    assert.equal(retryDelay(1, 1000, 60_000, () => 0), 800);
    assert.equal(retryDelay(1, 1000, 60_000, () => 1), 1200);
  });
});

describe('everyInterval', () => {
  it('turns intervals into valid node-cron expressions', () => {
    assert.equal(everyInterval(1000), '*/1 * * * * *');
    assert.equal(everyInterval(60_000), '0 */1 * * * *');
    assert.equal(everyInterval(3600_000), '0 0 */1 * * *');
    for (const ms of [200, 5000, 90_000, 7200_000, 30 * 86400_000]) assert.ok(cron.validate(everyInterval(ms)), everyInterval(ms));
  });
});

describe('peers', () => {
  const peer = (host: string, addresses: string[] = []): Peer => ({ aeTitle: 'CT1', host, port: 104, tls: false, source: 'file', addresses });

  it('lets a file entry override Orthanc for the same AE title', () => {
    const merged = mergePeers([{ aeTitle: 'CT1', host: 'a', port: 1, tls: false, source: 'orthanc' }], [{ aeTitle: 'CT1', host: 'b', port: 2, tls: false, source: 'file' }]);
    assert.equal(merged.get('CT1')?.host, 'b');
  });

  it('matches the calling host by name, resolved address, IPv4-mapped form or loopback', () => {
    assert.ok(peerMatchesAddress(peer('10.0.0.5'), '::ffff:10.0.0.5'));
    assert.ok(peerMatchesAddress(peer('ct.local', ['10.0.0.5']), '10.0.0.5'));
    assert.ok(peerMatchesAddress(peer('localhost'), '127.0.0.1'));
    assert.ok(!peerMatchesAddress(peer('10.0.0.5'), '10.0.0.6'));
    assert.ok(!peerMatchesAddress(peer('127.0.0.1'), '10.0.0.6'));
  });
});
