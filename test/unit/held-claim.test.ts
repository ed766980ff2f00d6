/** HeldClaim: a claim renewed while its work runs (every third of its lifetime, in real time here). */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { HeldClaim } from '../../src/transactions/held-claim.js';
import type { Claim, TransactionRepository } from '../../src/transactions/repository.js';

const TTL = 150;

function claim(epoch: number): Claim {
  return { id: 7, kind: 'deliver', owner: 'node-a', epoch, until: Date.now() + TTL, record: {} as Claim['record'] };
}

/** A repository that holds one claim (by epoch) and counts renewals. */
function repository(): { repo: TransactionRepository; held: { epoch: number | undefined }; renewals: number[] } {
  const state = { held: { epoch: undefined as number | undefined }, renewals: [] as number[] };
  const repo = {
    renew: async (c: Claim, now: number, ttlMs: number) => {
      state.renewals.push(c.epoch);
      return c.epoch === state.held.epoch ? { ...c, until: now + ttlMs } : undefined;
    },
  } as unknown as TransactionRepository;
  return { repo, ...state };
}

describe('HeldClaim', () => {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) }));

  it('a claim replaced after a releasing write is renewed again, and the release is not taken for a loss', async () => {
    const { repo, held, renewals } = repository();
    held.epoch = 1;
    const h = new HeldClaim(repo, claim(1), TTL, Date.now, logger);
    await sleep(TTL);
    assert.ok(renewals.includes(1), 'renewed while held');
    // The attempt is recorded (which releases the claim), then the transaction is claimed again.
    h.ending();
    held.epoch = undefined;
    await sleep(TTL);
    held.epoch = 2;
    h.replace(claim(2));
    renewals.length = 0;
    await sleep(TTL * 1.5);
    h.stop();
    assert.ok(renewals.includes(2), 'the new claim is renewed');
    assert.equal(h.isLost, false);
    assert.ok(!logs.some((l) => /claim lost/.test(String(l['msg']))), 'no loss logged for our own release');
  });

  it('a claim another node took is lost, and renewals stop', async () => {
    const { repo, held, renewals } = repository();
    held.epoch = 1;
    const h = new HeldClaim(repo, claim(1), TTL, Date.now, logger);
    held.epoch = 5;
    assert.equal(await h.confirm(), false);
    assert.equal(h.isLost, true);
    const count = renewals.length;
    await sleep(TTL);
    assert.equal(renewals.length, count, 'no renewal after the loss');
    h.stop();
  });
});
