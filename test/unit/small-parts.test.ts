import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import cron from 'node-cron';
import { limitsFor, PduGuard } from '../../src/dicom/pdu-guard.js';
import { everyInterval } from '../../src/jobs/cron-expression.js';
import { mergePeers, peerMatchesAddress, type Peer } from '../../src/peers/peer-directory.js';
import { retryDelay } from '../../src/transactions/backoff.js';

function pduHeader(type: number, length: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt8(type, 0);
  b.writeUInt32BE(length, 2);
  return b;
}

function pdv(control: number, value: Buffer): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt32BE(value.length + 2, 0);
  b.writeUInt8(1, 4);
  b.writeUInt8(control, 5);
  return Buffer.concat([b, value]);
}

function pData(...items: Buffer[]): Buffer {
  const body = Buffer.concat(items);
  return Buffer.concat([pduHeader(0x04, body.length), body]);
}

const associateRq = Buffer.concat([pduHeader(0x01, 10), Buffer.alloc(10)]);
const limits = { maxPduLength: 1000, maxCommandBytes: 100, maxDatasetBytes: 500 };

describe('PduGuard', () => {
  it('lets a well-formed conversation through, split at every byte boundary', () => {
    const stream = Buffer.concat([
      associateRq,
      pData(pdv(0x03, Buffer.alloc(80))),
      pData(pdv(0x00, Buffer.alloc(300)), pdv(0x02, Buffer.alloc(150))),
      pduHeader(0x05, 4),
      Buffer.alloc(4),
    ]);
    for (const step of [1, 7, 64, stream.length]) {
      const guard = new PduGuard(limits);
      for (let i = 0; i < stream.length; i += step) assert.equal(guard.inspect(stream.subarray(i, i + step)), undefined, `step ${step}`);
    }
  });

  it('refuses a P-DATA-TF longer than advertised before its body arrives', () => {
    const guard = new PduGuard(limits);
    assert.equal(guard.inspect(associateRq), undefined);
    assert.match(guard.inspect(pduHeader(0x04, 2 ** 31)) ?? '', /exceeds our maximum/);
  });

  it('adds up the fragments of one message: an endless data set is refused', () => {
    const guard = new PduGuard(limits);
    guard.inspect(associateRq);
    assert.equal(guard.inspect(pData(pdv(0x03, Buffer.alloc(50)))), undefined);
    assert.equal(guard.inspect(pData(pdv(0x00, Buffer.alloc(400)))), undefined);
    assert.match(guard.inspect(pData(pdv(0x00, Buffer.alloc(400)))) ?? '', /data set over 500 bytes/);
    const commands = new PduGuard(limits);
    commands.inspect(associateRq);
    assert.match(commands.inspect(pData(pdv(0x01, Buffer.alloc(60)), pdv(0x01, Buffer.alloc(60)))) ?? '', /command set over 100/);
  });

  it('refuses PDV items that do not fit their PDU', () => {
    const guard = new PduGuard(limits);
    guard.inspect(associateRq);
    const bad = pData(pdv(0x02, Buffer.alloc(10)));
    bad.writeUInt32BE(500, 6);
    assert.match(guard.inspect(bad) ?? '', /does not fit/);
  });

  it('refuses unknown types, PDUs a requestor never sends, and anything before A-ASSOCIATE-RQ', () => {
    assert.match(new PduGuard(limits).inspect(Buffer.from('GET / HTTP/1.1\r\n')) ?? '', /unknown PDU type/);
    assert.match(new PduGuard(limits).inspect(pduHeader(0x05, 4)) ?? '', /before any A-ASSOCIATE-RQ/);
    assert.match(new PduGuard(limits).inspect(pduHeader(0x03, 4)) ?? '', /never sent to an acceptor/);
    const twice = new PduGuard(limits);
    twice.inspect(associateRq);
    assert.match(twice.inspect(associateRq) ?? '', /second A-ASSOCIATE-RQ/);
    const release = new PduGuard(limits);
    release.inspect(associateRq);
    assert.match(release.inspect(pduHeader(0x07, 100)) ?? '', /expected 4/);
    assert.match(new PduGuard(limits).inspect(pduHeader(0x01, 50 * 1024 * 1024)) ?? '', /implausibly large/);
  });

  it('sizes the data set limit from the instance cap', () => {
    assert.ok(limitsFor(262144, 200_000).maxDatasetBytes > 200_000 * 152);
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
