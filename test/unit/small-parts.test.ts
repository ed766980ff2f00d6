import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import cron from 'node-cron';
import { TokenBuckets } from '../../src/http/rate-limit.js';
import { everyInterval } from '../../src/jobs/cron-expression.js';
import { mergePeers, peerMatchesAddress, type Peer } from '../../src/peers/peer-directory.js';
import { retryDelay } from '../../src/transactions/backoff.js';

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
  const peer = (host: string, addresses: string[] = []): Peer => ({ aeTitle: 'CT1', host, port: 104, tls: false, callback: true, source: 'file', addresses });

  it('lets a file entry override Orthanc for the same AE title', () => {
    const merged = mergePeers([[{ aeTitle: 'CT1', host: 'a', port: 1, tls: false, source: 'orthanc' }], [{ aeTitle: 'CT1', host: 'b', port: 2, tls: false, source: 'file' }]]);
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

describe('TokenBuckets', () => {
  it('grants a burst per key, then one per refill, and says how long to wait', () => {
    let now = 0;
    const buckets = new TokenBuckets({ capacity: 3, refillMs: 1000, now: () => now });
    assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0]);
    assert.equal(buckets.take('a'), 1000);
    assert.equal(buckets.take('b'), 0, 'another key has its own bucket');
    now = 400;
    assert.equal(buckets.take('a'), 600);
    now = 1000;
    assert.equal(buckets.take('a'), 0);
    assert.equal(buckets.take('a'), 1000);
    now = 100_000;
    assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0, 1000], 'refills up to the burst, no more');
  });

  it('keeps at most maxKeys buckets, forgetting full ones first', () => {
    let now = 0;
    const buckets = new TokenBuckets({ capacity: 2, refillMs: 1000, maxKeys: 3, now: () => now });
    for (const key of ['a', 'b', 'c']) buckets.take(key);
    buckets.take('c');
    now = 1000; // a and b are full again, c is not
    buckets.take('d');
    assert.equal(buckets.size, 2);
    assert.equal(buckets.take('c'), 0);
    assert.equal(buckets.take('c'), 1000, 'the busy bucket was kept');
    for (const key of ['e', 'f', 'g', 'h']) buckets.take(key);
    assert.ok(buckets.size <= 3);
  });
});
