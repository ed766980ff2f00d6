/**
 * A refused role is a configuration problem, not an outage: the deliverer tells the failure categories
 * apart, retries a configuration refusal on its own slow schedule, logs it once (per change) at error
 * level with its fix, counts it, and the store keeps the category (also across the schema migration).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { loadConfig, ConfigError } from '../../src/config.js';
import { DeliveryConfigurationError, DeliveryError, deliveryErrorCategory, DeliveryStatusError, lazyReport } from '../../src/dicom/event-report.js';
import { Metrics } from '../../src/metrics/metrics.js';
import type { Peer } from '../../src/peers/peer-directory.js';
import { TransactionStore } from '../../src/store/transaction-store.js';
import { configurationRetryDelay } from '../../src/transactions/backoff.js';
import { HeldClaim } from '../../src/transactions/held-claim.js';
import { SqliteTransactionRepository } from '../../src/store/sqlite-repository.js';
import { deliverTransaction, type DelivererDeps } from '../../src/transactions/deliverer.js';
import { newRequest } from '../harness/store-fixtures.js';

const MINUTE = 60_000;
const peer: Peer = { aeTitle: 'CT1', host: '127.0.0.1', port: 104, tls: false, callback: true, source: 'file', addresses: ['127.0.0.1'] };
const roleRefused = (): DeliveryConfigurationError =>
  new DeliveryConfigurationError('CT1 refused our SCP role for Storage Commitment', 'role-refused', 'configure CT1 to accept the Storage Commitment SOP Class as SCU with role selection (us as SCP) from AE STGCMT');

describe('delivery failure categories', () => {
  it('configuration refusals, error statuses and everything else are told apart', () => {
    assert.equal(deliveryErrorCategory(roleRefused()), 'configuration');
    assert.equal(deliveryErrorCategory(new DeliveryStatusError('status 0x0110', 0x0110)), 'peer-status');
    assert.equal(deliveryErrorCategory(new DeliveryError('ECONNREFUSED')), 'network');
    assert.equal(deliveryErrorCategory(new Error('socket hang up')), 'network');
    assert.ok(roleRefused() instanceof DeliveryError, 'still a DeliveryError for existing callers');
  });
});

describe('configurationRetryDelay', () => {
  it('is constant with ±20 % jitter, whatever the attempt number', () => {
    assert.equal(configurationRetryDelay(5 * MINUTE, () => 0.5), 5 * MINUTE);
    assert.equal(configurationRetryDelay(5 * MINUTE, () => 0), 4 * MINUTE);
    assert.equal(configurationRetryDelay(5 * MINUTE, () => 1), 6 * MINUTE);
  });

  it('STGCMT_RETRY_CONFIG_ERROR defaults to 5m and refuses less than 1s', () => {
    assert.equal(loadConfig({}).config.retryConfigError, 5 * MINUTE);
    assert.equal(loadConfig({ STGCMT_RETRY_CONFIG_ERROR: '20s' }).config.retryConfigError, 20_000);
    assert.throws(() => loadConfig({ STGCMT_RETRY_CONFIG_ERROR: '0' }), ConfigError);
  });
});

describe('deliverTransaction classifies a failed attempt', () => {
  let store: TransactionStore;
  let metrics: Metrics;
  let lines: Array<Record<string, unknown>>;
  let failure: () => Error;
  let clock: number;
  let id: number;

  const deps = (): DelivererDeps => ({
    repo: new SqliteTransactionRepository(store),
    nodeId: 'node-a',
    leaseTtlMs: 30_000,
    findPeer: () => peer,
    transport: { prepare: lazyReport, sendOnNewAssociation: () => Promise.reject(failure()) },
    retrieveAeTitle: () => undefined,
    timeoutMs: 1000,
    retryInitialMs: 1000,
    retryMaxMs: 10 * MINUTE,
    retryConfigErrorMs: 5 * MINUTE,
    logger: pino(
      { level: 'debug' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    ),
    metrics,
    now: () => clock,
  });
  /** Delivers under a claim, as the service does (the claim is given up after the attempt). */
  const deliverWith = async (d: DelivererDeps): Promise<string> => {
    // "Later" in these tests means "when the retry is due": the schedule's jitter may put it past clock.
    clock = Math.max(clock, store.get(id)!.nextAttemptAt ?? 0);
    const claim = await d.repo.claim(id, 'deliver', d.nodeId, clock, d.leaseTtlMs);
    assert.ok(claim, 'the report is due');
    const held = new HeldClaim(d.repo, claim, d.leaseTtlMs, () => clock, d.logger);
    try {
      return await deliverTransaction(d, held, undefined);
    } finally {
      held.stop();
    }
  };
  const deliver = async (): Promise<void> => {
    assert.equal(await deliverWith(deps()), 'retry');
  };
  const refusalLogs = (): Array<Record<string, unknown>> => lines.filter((l) => l['level'] === 50 && l['category'] === 'configuration');
  const configurationCount = async (kind: string): Promise<number> => (await metrics.deliveryConfigurationErrors.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;

  beforeEach(() => {
    store = TransactionStore.open(mkdtempSync(join(tmpdir(), 'stgcmt-deliverer-')), { synchronous: 'normal' });
    metrics = new Metrics();
    lines = [];
    clock = 10_000;
    ({ id } = store.recordRequest(newRequest()));
    store.saveOutcomes(id, store.undecidedInstances(id).map((i) => ({ seq: i.seq, outcome: 'committed' as const })));
    store.completeVerification(id, 2000);
  });

  it('a refused role: category configuration, retried after STGCMT_RETRY_CONFIG_ERROR, logged at error level with the fix, counted', async () => {
    failure = roleRefused;
    await deliver();
    const record = store.get(id)!;
    assert.equal(record.state, 'DELIVERY_RETRY');
    assert.equal(record.lastErrorCategory, 'configuration');
    assert.match(record.lastError ?? '', /refused our SCP role.*to fix: configure CT1 to accept/);
    const delay = record.nextAttemptAt! - clock;
    assert.ok(delay >= 0.8 * 5 * MINUTE && delay <= 1.2 * 5 * MINUTE, `next attempt in ${delay} ms, not about 5 min`);
    assert.deepEqual(store.deliveryAttempts(id).map((a) => a.category), ['configuration']);
    const [logged] = refusalLogs();
    assert.equal(refusalLogs().length, 1);
    assert.equal(logged?.['kind'], 'role-refused');
    assert.match(String(logged?.['fix']), /role selection .* from AE STGCMT/);
    assert.match(String(logged?.['msg']), /configuration/);
    assert.equal(await configurationCount('role-refused'), 1);
  });

  it('the same refusal again is not logged at error level again; a changed one is', async () => {
    failure = roleRefused;
    await deliver();
    clock += 5 * MINUTE;
    await deliver();
    clock += 5 * MINUTE;
    await deliver();
    assert.equal(refusalLogs().length, 1, 'one error line for three identical refusals');
    assert.equal(await configurationCount('role-refused'), 3, 'every refused attempt is counted');
    // Each attempt waits the configuration interval, not a doubling one.
    const record = store.get(id)!;
    assert.ok(record.nextAttemptAt! - clock <= 1.2 * 5 * MINUTE);

    failure = () => new DeliveryError('CT1@127.0.0.1:104: connect ECONNREFUSED');
    clock += 5 * MINUTE;
    await deliver();
    assert.equal(store.get(id)!.lastErrorCategory, 'network');
    failure = roleRefused;
    clock += 5 * MINUTE;
    await deliver();
    assert.equal(refusalLogs().length, 2, 'a refusal after an outage is news again');
  });

  it('an outage keeps the exponential schedule and the network category; an error status is peer-status', async () => {
    failure = () => new DeliveryError('CT1@127.0.0.1:104: connect ECONNREFUSED');
    await deliver();
    let record = store.get(id)!;
    assert.equal(record.lastErrorCategory, 'network');
    assert.ok(record.nextAttemptAt! - clock <= 1200, 'first retry after STGCMT_RETRY_INITIAL');
    assert.equal(refusalLogs().length, 0);

    failure = () => new DeliveryStatusError('CT1 answered the N-EVENT-REPORT with status 0x0110', 0x0110);
    clock = record.nextAttemptAt!;
    await deliver();
    record = store.get(id)!;
    assert.equal(record.lastErrorCategory, 'peer-status');
    assert.deepEqual(store.deliveryAttempts(id).map((a) => a.category), ['network', 'peer-status']);
    assert.equal(await configurationCount('role-refused'), 0);
  });

  it('no peer for the calling AE is a configuration problem too', async () => {
    const noPeer: DelivererDeps = { ...deps(), findPeer: () => undefined };
    assert.equal(await deliverWith(noPeer), 'retry');
    assert.equal(store.get(id)!.lastErrorCategory, 'configuration');
    assert.equal(await configurationCount('peer-not-configured'), 1);
  });
});

describe('store migration to failure categories', () => {
  it('a store from before categories gains the columns; its old failures read as network', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stgcmt-migrate-'));
    const first = TransactionStore.open(dir, { synchronous: 'normal' });
    const { id } = first.recordRequest(newRequest());
    first.saveOutcomes(id, first.undecidedInstances(id).map((i) => ({ seq: i.seq, outcome: 'committed' as const })));
    first.completeVerification(id, 2000);
    first.recordDelivery(id, { at: 3000, via: 'new-association', ok: false, error: 'ECONNREFUSED', durationMs: 3 }, 8000);
    first.close();
    // Back to the version 1 schema.
    const db = new Database(join(dir, 'stgcmt.sqlite'));
    db.exec('ALTER TABLE delivery_attempts DROP COLUMN category; ALTER TABLE transactions DROP COLUMN last_error_category');
    db.pragma('user_version = 1');
    db.close();

    const store = TransactionStore.open(dir, { synchronous: 'normal' });
    assert.equal(store.get(id)!.lastErrorCategory, 'network');
    assert.deepEqual(store.deliveryAttempts(id).map((a) => a.category), ['network']);
    store.recordDelivery(id, { at: 9000, via: 'new-association', ok: false, error: 'refused', durationMs: 3, category: 'configuration' }, 20_000);
    assert.equal(store.get(id)!.lastErrorCategory, 'configuration');
    assert.deepEqual(store.deliveryAttempts(id).map((a) => a.category), ['network', 'configuration']);
    store.close();
  });
});
