/**
 * The application layer (CommitmentService, with its verifier and deliverer) unit-tested with fakes: no
 * network, no Orthanc, no DICOM. The repository is the real SQLite one in a temp dir (fast, and its
 * claims are the real rules); "another node" is a second claimer on that same repository. The catalog,
 * the transport, the modality's channel and the clock are fakes the tests steer.
 *
 * Timers: HeldClaim renews every leaseTtlMs / 3 in real time, so the lease is long (30 s) and expiry is
 * driven by the fake clock. The service's own rechecks use real timers based on the fake clock; the tests
 * call process()/resume()/onNewInstances() themselves and wait until the service is idle.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { EventReport } from '../../src/commitment/report.js';
import { DimseStatus, EventType, FailureReason, type CommitmentRequest } from '../../src/commitment/types.js';
import { Metrics } from '../../src/metrics/metrics.js';
import type { Peer } from '../../src/peers/peer-directory.js';
import { SqliteTransactionRepository } from '../../src/store/sqlite-repository.js';
import { TransactionStore } from '../../src/store/transaction-store.js';
import { CommitmentService } from '../../src/transactions/commitment-service.js';
import type { CatalogEntry, InstanceCatalog } from '../../src/transactions/instance-catalog.js';
import type { RequestOrigin } from '../../src/transactions/intake.js';
import { DeliveryConfigurationError, DeliveryError, type OutgoingReport, type ReportChannel, type ReportTransport } from '../../src/transactions/report-transport.js';
import type { TransactionRecord } from '../../src/transactions/records.js';
import type { TransactionRepository } from '../../src/transactions/repository.js';
import type { VerificationPolicy } from '../../src/transactions/verification-policy.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const NODE = 'node-a';
const OTHER = 'node-b';
const START = Date.UTC(2024, 0, 1, 8, 0, 0);
const LEASE_TTL = 30_000;
const ARRIVAL_WAIT = 10_000;
const VERIFY_TIMEOUT = 60_000;
const REPORT_TTL = 3_600_000;
const RETRY_INITIAL = 60_000;
const RETRY_MAX = 600_000;
const RETRY_CONFIG = 300_000;
const REPORT_TIMEOUT = 5_000;

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** What the PACS holds: UID -> class; can be told to fail, or to hang until released. */
class FakeCatalog implements InstanceCatalog {
  readonly stored = new Map<string, string>();
  failure: Error | undefined;
  gate: Deferred | undefined;
  calls = 0;

  hold(uid: string, sopClassUid = CT): void {
    this.stored.set(uid, sopClassUid);
  }

  async find(uids: readonly string[]): Promise<Map<string, CatalogEntry>> {
    this.calls++;
    if (this.gate) await this.gate.promise;
    if (this.failure) throw this.failure;
    const found = new Map<string, CatalogEntry>();
    for (const uid of uids) {
      const sopClassUid = this.stored.get(uid);
      if (sopClassUid !== undefined) found.set(uid, { id: `orthanc-${uid}`, sopClassUid });
    }
    return found;
  }
}

interface Sent {
  readonly peer: string;
  readonly callingAeTitle: string;
  readonly report: EventReport;
}

/** Encodes the report as JSON (the content is what matters here). */
function prepare(instanceCount: number, build: () => EventReport): OutgoingReport {
  return {
    instanceCount,
    encode: () => {
      const report = build();
      return { eventTypeId: report.eventTypeId, bytes: Buffer.from(JSON.stringify(report)) };
    },
  };
}

function decode(report: OutgoingReport): EventReport {
  return JSON.parse(report.encode('1.2.840.10008.1.2.1').bytes.toString()) as EventReport;
}

/**
 * New associations, as the real transport behaves: "connects" (may hang until released, or fail), then
 * awaits the report's beforeSend once the association is up, and only then "sends".
 */
class FakeTransport implements ReportTransport {
  readonly sent: Sent[] = [];
  /** Failures for the next attempts, in order. */
  readonly failures: Error[] = [];
  attempts = 0;
  refusedBeforeSend = 0;
  gate: Deferred | undefined;
  connecting = deferred();

  prepare(instanceCount: number, build: () => EventReport): OutgoingReport {
    return prepare(instanceCount, build);
  }

  async sendOnNewAssociation(peer: Peer, callingAeTitle: string, report: OutgoingReport): Promise<void> {
    this.attempts++;
    this.connecting.resolve();
    if (this.gate) await this.gate.promise;
    const failure = this.failures.shift();
    if (failure) throw failure;
    try {
      await report.beforeSend?.();
    } catch (error) {
      this.refusedBeforeSend++;
      throw error;
    }
    this.sent.push({ peer: peer.aeTitle, callingAeTitle, report: decode(report) });
  }
}

/** The modality's own association. */
class FakeChannel implements ReportChannel {
  readonly sent: Array<{ report: EventReport; timeoutMs: number }> = [];
  released = 0;
  constructor(
    public open: boolean,
    public status = 0x0000,
  ) {}
  release(): void {
    this.released++;
  }
  isOpen(): boolean {
    return this.open;
  }
  async stillOpen(): Promise<boolean> {
    return this.open;
  }
  async send(report: OutgoingReport, baseTimeoutMs: number): Promise<number> {
    this.sent.push({ report: decode(report), timeoutMs: baseTimeoutMs });
    return this.status;
  }
}

const MODALITY: Peer = { aeTitle: 'MODALITY', host: '192.0.2.10', port: 11112, tls: false, callback: true, source: 'file', addresses: ['192.0.2.10'] };

/** Every id verified 'ok' (the `exists` policy's behaviour: the lookup under the class is all it asks). */
const okPolicy: VerificationPolicy = { name: 'exists', begin: () => ({ check: async (ids) => new Map(ids.map((id) => [id, 'ok' as const])) }) };

type LogLine = { level: number; msg: string } & Record<string, unknown>;

interface Harness {
  readonly repo: SqliteTransactionRepository;
  readonly service: CommitmentService;
  readonly catalog: FakeCatalog;
  readonly transport: FakeTransport;
  readonly clock: { t: number };
  readonly logs: LogLine[];
  /** Sends an N-ACTION through the intake; returns the answer and the transaction's id. */
  receive(uids: readonly string[], options?: { channel?: ReportChannel; transactionUid?: string; sopClassUid?: string }): Promise<{ id: number; status: number; afterResponse: (() => void) | undefined }>;
}

const opened: Array<{ service: CommitmentService; repo: SqliteTransactionRepository; dir: string }> = [];

function setup(options: { wrap?: (repo: SqliteTransactionRepository) => TransactionRepository; leaseTtlMs?: number } = {}): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'stgcmt-service-'));
  const repo = new SqliteTransactionRepository(TransactionStore.open(dir, { synchronous: 'normal' }));
  const used = options.wrap ? options.wrap(repo) : repo;
  const clock = { t: START };
  const now = (): number => clock.t;
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logs.push(JSON.parse(chunk.toString()) as LogLine), done()) }));
  const catalog = new FakeCatalog();
  const transport = new FakeTransport();
  const metrics = new Metrics();
  const service = new CommitmentService(
    // As sidecar.ts wires it: the verdict hands its claim over to the delivery.
    { repo: used, handOverTtlMs: options.leaseTtlMs ?? LEASE_TTL, catalog, policyFor: () => okPolicy, logger: logger.child({ component: 'verifier' }), now },
    {
      repo: used,
      nodeId: NODE,
      leaseTtlMs: options.leaseTtlMs ?? LEASE_TTL,
      findPeer: (aeTitle) => (aeTitle === MODALITY.aeTitle ? MODALITY : undefined),
      transport,
      retrieveAeTitle: () => 'ORTHANC',
      timeoutMs: REPORT_TIMEOUT,
      retryInitialMs: RETRY_INITIAL,
      retryMaxMs: RETRY_MAX,
      retryConfigErrorMs: RETRY_CONFIG,
      logger: logger.child({ component: 'delivery' }),
      metrics,
      now,
    },
    { arrivalWaitMs: ARRIVAL_WAIT, verifyTimeoutMs: VERIFY_TIMEOUT, reportTtlMs: REPORT_TTL, retentionMs: 86_400_000, maxInstancesInFlight: 1000 },
    metrics,
    logger.child({ component: 'transactions' }),
  );
  opened.push({ service, repo, dir });
  let transactions = 0;
  return {
    repo,
    service,
    catalog,
    transport,
    clock,
    logs,
    async receive(uids, { channel = new FakeChannel(false), transactionUid = `2.25.${++transactions}`, sopClassUid = CT } = {}) {
      const request: CommitmentRequest = { transactionUid, references: uids.map((sopInstanceUid) => ({ sopClassUid, sopInstanceUid })) };
      const origin: RequestOrigin = { callingAeTitle: MODALITY.aeTitle, calledAeTitle: 'STGCMT', remoteAddress: '192.0.2.10', peer: MODALITY, channel };
      const answer = await service.receive(request, origin);
      const found = (await repo.workDue('verify', NODE, clock.t, 1000)).concat(await repo.workDue('deliver', NODE, clock.t, 1000));
      // The newest transaction with this UID (ids grow).
      let id = -1;
      for (const candidate of found) if ((await repo.get(candidate))?.transactionUid === transactionUid) id = Math.max(id, candidate);
      return { id, status: answer.status, afterResponse: answer.afterResponse };
    },
  };
}

afterEach(async () => {
  for (const { service, repo, dir } of opened.splice(0)) {
    await service.stop();
    // The search indexing the verifier starts beside it runs a tick or two after.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    await repo.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The service has nothing in flight (its single-flight maps are empty): peeked, to wait without guessing. */
async function idle(service: CommitmentService, timeoutMs = 2000): Promise<void> {
  const inner = service as unknown as { verifying: Map<number, unknown>; delivering: Map<number, unknown> };
  const deadline = Date.now() + timeoutMs;
  // A few turns first: process() starts its work on a later tick.
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  while (inner.verifying.size > 0 || inner.delivering.size > 0) {
    if (Date.now() > deadline) throw new Error('the service did not become idle');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

async function until(repo: TransactionRepository, id: number, predicate: (record: TransactionRecord) => boolean, timeoutMs = 2000): Promise<TransactionRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await repo.get(id);
    if (record && predicate(record)) return record;
    if (Date.now() > deadline) throw new Error(`transaction ${id} did not reach the expected state; it is ${JSON.stringify(record)}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function state(repo: TransactionRepository, id: number): Promise<TransactionRecord> {
  const record = await repo.get(id);
  assert.ok(record, `transaction ${id} exists`);
  return record;
}

describe('CommitmentService with fakes', () => {
  describe('1. receive', () => {
    it('answers Success only once the request is in the repository, and verifies only after the response', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      // A repository whose record waits for the test: the answer must wait with it.
      const gate = deferred();
      const gated = setup({
        wrap: (repo) =>
          new Proxy(repo, {
            get(target, property) {
              if (property === 'record') return async (...args: Parameters<TransactionRepository['record']>) => (await gate.promise, target.record(...args));
              const value = Reflect.get(target, property, target) as unknown;
              return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
            },
          }),
      });
      let answered = false;
      const pending = gated.service
        .receive({ transactionUid: '2.25.77', references: [{ sopClassUid: CT, sopInstanceUid: '1.1' }] }, { callingAeTitle: 'MODALITY', calledAeTitle: 'STGCMT', remoteAddress: '192.0.2.10', peer: MODALITY, channel: new FakeChannel(false) })
        .then((answer) => ((answered = true), answer));
      await idle(gated.service);
      assert.equal(answered, false, 'no answer while the record is not durable');
      assert.equal(await gated.repo.get(1), undefined);
      gate.resolve();
      const answer = await pending;
      assert.equal(answer.status, DimseStatus.Success);
      const record = await state(gated.repo, 1);
      assert.equal(record.state, 'RECEIVED');
      assert.equal(record.transactionUid, '2.25.77');
      assert.equal(record.instanceCount, 1);

      // The plain harness: nothing is verified or sent before afterResponse runs.
      const { id, status, afterResponse } = await h.receive(['1.1']);
      assert.equal(status, DimseStatus.Success);
      await idle(h.service);
      assert.equal(h.catalog.calls, 0);
      assert.equal((await state(h.repo, id)).state, 'RECEIVED');
      afterResponse!();
      await until(h.repo, id, (r) => r.state === 'REPORTED');
    });

    it('rejects (the handler then answers 0110H) when the repository cannot record, and sends nothing', async () => {
      const h = setup({
        wrap: (repo) =>
          new Proxy(repo, {
            get(target, property) {
              if (property === 'record') return async () => Promise.reject(new Error('SQLITE_FULL: database or disk is full'));
              const value = Reflect.get(target, property, target) as unknown;
              return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
            },
          }),
      });
      h.catalog.hold('1.1');
      await assert.rejects(h.receive(['1.1']), /disk is full/);
      await h.service.resume();
      await idle(h.service);
      assert.equal(await h.repo.get(1), undefined);
      assert.equal(h.catalog.calls, 0);
      assert.equal(h.transport.attempts, 0);
    });
  });

  it('2. all instances stored: verified (Event Type 1), reported once on a new association, claim released', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.catalog.hold('1.2');
    const { id, afterResponse } = await h.receive(['1.1', '1.2'], { transactionUid: '2.25.100' });
    afterResponse!();
    const record = await until(h.repo, id, (r) => r.state === 'REPORTED');
    await idle(h.service);
    assert.equal(record.committedCount, 2);
    assert.equal(record.failedCount, 0);
    assert.equal(record.eventTypeId, EventType.AllCommitted);
    assert.equal(record.deliveryAttempts, 1);
    assert.equal(record.reportedAt, START);
    assert.equal(record.lastError, null);
    assert.equal((await state(h.repo, id)).leaseOwner, null, 'no claim left behind');
    assert.equal(h.transport.attempts, 1);
    assert.deepEqual(h.transport.sent, [
      {
        peer: 'MODALITY',
        // The association is opened as the AE title the modality called.
        callingAeTitle: 'STGCMT',
        report: {
          eventTypeId: 1,
          transactionUid: '2.25.100',
          retrieveAeTitle: 'ORTHANC',
          referenced: [
            { sopClassUid: CT, sopInstanceUid: '1.1' },
            { sopClassUid: CT, sopInstanceUid: '1.2' },
          ],
          failed: [],
        },
      },
    ]);
    // Nothing more goes out on later passes.
    await h.service.resume();
    await idle(h.service);
    assert.equal(h.transport.attempts, 1);
  });

  it('3. an instance absent while the arrival window is open: waits holding its verify claim; committed once it arrives', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    const { id, afterResponse } = await h.receive(['1.1', '1.2']);
    afterResponse!();
    await idle(h.service);
    let record = await state(h.repo, id);
    assert.equal(record.state, 'RECEIVED');
    assert.equal(record.leaseOwner, NODE, 'the verify claim stays with this node between rounds');
    assert.deepEqual(
      (await h.repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).map((i) => i.sopInstanceUid),
      ['1.2'],
    );
    assert.equal(await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL), undefined, 'another node cannot claim it');
    assert.deepEqual(await h.repo.workDue('verify', OTHER, h.clock.t, 10), [], 'nor sees it as work due');
    assert.equal(h.transport.attempts, 0);

    // Waking it before the instance is there changes nothing.
    h.clock.t += 1000;
    h.service.onNewInstances();
    await idle(h.service);
    assert.equal((await state(h.repo, id)).state, 'RECEIVED');

    h.clock.t += 1000;
    h.catalog.hold('1.2');
    h.service.onNewInstances();
    record = await until(h.repo, id, (r) => r.state === 'REPORTED');
    assert.equal(record.committedCount, 2);
    assert.equal(record.eventTypeId, EventType.AllCommitted);
    assert.equal(record.verifiedAt, START + 2000);
    assert.equal(h.transport.sent.length, 1);
    assert.deepEqual(h.transport.sent[0]!.report.referenced.map((r) => r.sopInstanceUid), ['1.1', '1.2']);
  });

  describe('4. failures', () => {
    it('absent after the arrival window: 0112H, Event Type 2', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      const { id, afterResponse } = await h.receive(['1.1', '1.2']);
      h.clock.t = START + ARRIVAL_WAIT;
      afterResponse!();
      const record = await until(h.repo, id, (r) => r.state === 'REPORTED');
      assert.equal(record.committedCount, 1);
      assert.equal(record.failedCount, 1);
      assert.equal(record.eventTypeId, EventType.SomeFailed);
      assert.deepEqual(await h.repo.verdict(id), {
        committed: [{ sopClassUid: CT, sopInstanceUid: '1.1' }],
        failed: [{ sopClassUid: CT, sopInstanceUid: '1.2', failureReason: FailureReason.NoSuchObjectInstance }],
      });
      assert.equal(h.transport.sent.length, 1);
      const report = h.transport.sent[0]!.report;
      assert.equal(report.eventTypeId, 2);
      assert.deepEqual(report.referenced, [{ sopClassUid: CT, sopInstanceUid: '1.1' }]);
      assert.deepEqual(report.failed, [{ sopClassUid: CT, sopInstanceUid: '1.2', failureReason: 0x0112 }]);
    });

    it('stored under another SOP Class: 0119H at once, without waiting for the window', async () => {
      const h = setup();
      h.catalog.hold('1.1', MR);
      const { id, afterResponse } = await h.receive(['1.1']);
      afterResponse!();
      const record = await until(h.repo, id, (r) => r.state === 'REPORTED');
      assert.equal(record.failedCount, 1);
      assert.equal(record.eventTypeId, EventType.SomeFailed);
      const [failed] = await h.repo.instancePage(id, { outcome: 'failed', afterSeq: -1, limit: 10 });
      assert.equal(failed!.failureReason, FailureReason.ClassInstanceConflict);
      assert.equal(failed!.storedSopClassUid, MR, 'says under which class it is stored');
      assert.deepEqual(h.transport.sent[0]!.report.failed, [{ sopClassUid: CT, sopInstanceUid: '1.1', failureReason: 0x0119 }]);
      assert.equal(h.transport.sent[0]!.report.retrieveAeTitle, undefined, 'nothing committed: no Retrieve AE Title');
    });
  });

  it('5. catalog failing: no verdict, instances stay undecided; the transaction is retried and then verified', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.catalog.failure = new Error('Orthanc: connect ECONNREFUSED');
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    await idle(h.service);
    const record = await state(h.repo, id);
    assert.equal(record.state, 'RECEIVED');
    assert.equal(record.committedCount, null);
    assert.equal(record.failedCount, null);
    assert.equal((await h.repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).length, 1);
    assert.equal(h.transport.attempts, 0);
    assert.ok(h.logs.some((l) => l.level === 40 && l.msg === 'Orthanc lookup failed; instances stay undecided'));

    // Still failing at the next round (the recheck timer's call): still nothing decided.
    h.clock.t += 5000;
    h.service.process(id);
    await idle(h.service);
    assert.equal(h.catalog.calls, 2);
    assert.equal((await h.repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).length, 1);

    h.catalog.failure = undefined;
    h.clock.t += 5000;
    h.service.process(id);
    const done = await until(h.repo, id, (r) => r.state === 'REPORTED');
    assert.equal(done.committedCount, 1);
    assert.equal(done.eventTypeId, EventType.AllCommitted);
    assert.equal(h.transport.sent.length, 1);
  });

  describe('6. delivery failures', () => {
    it('a network error: DELIVERY_RETRY at the backoff; resume() past it delivers', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      h.transport.failures.push(new DeliveryError('connect ECONNREFUSED 192.0.2.10:11112'));
      const { id, afterResponse } = await h.receive(['1.1']);
      afterResponse!();
      const retry = await until(h.repo, id, (r) => r.state === 'DELIVERY_RETRY');
      await idle(h.service);
      assert.equal(retry.deliveryAttempts, 1);
      assert.equal(retry.lastError, 'connect ECONNREFUSED 192.0.2.10:11112');
      assert.equal(retry.lastErrorCategory, 'network');
      assert.ok(retry.nextAttemptAt !== null);
      // retryDelay(1): the initial delay, ±20 %.
      assert.ok(retry.nextAttemptAt >= START + 0.8 * RETRY_INITIAL && retry.nextAttemptAt <= START + 1.2 * RETRY_INITIAL, `nextAttemptAt ${retry.nextAttemptAt - START} ms after`);
      assert.equal((await state(h.repo, id)).leaseOwner, null);
      assert.equal(h.transport.sent.length, 0);

      // Not due yet: resume() leaves it alone.
      h.clock.t = retry.nextAttemptAt - 1;
      await h.service.resume();
      await idle(h.service);
      assert.equal(h.transport.attempts, 1);

      h.clock.t = retry.nextAttemptAt + 1;
      await h.service.resume();
      const done = await until(h.repo, id, (r) => r.state === 'REPORTED');
      assert.equal(done.deliveryAttempts, 2);
      assert.equal(done.reportedAt, retry.nextAttemptAt + 1);
      assert.equal(done.nextAttemptAt, null);
      assert.equal(h.transport.attempts, 2);
      assert.equal(h.transport.sent.length, 1);
    });

    it('a DeliveryConfigurationError: category configuration, the fix on record and logged at error level, slow retry', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      h.transport.failures.push(new DeliveryConfigurationError('the modality refused the SCP role', 'role-refused', 'allow the SCP role for Storage Commitment on the modality'));
      const { id, afterResponse } = await h.receive(['1.1']);
      afterResponse!();
      const retry = await until(h.repo, id, (r) => r.state === 'DELIVERY_RETRY');
      await idle(h.service);
      assert.equal(retry.lastErrorCategory, 'configuration');
      assert.equal(retry.lastError, 'the modality refused the SCP role; to fix: allow the SCP role for Storage Commitment on the modality');
      assert.ok(retry.nextAttemptAt! >= START + 0.8 * RETRY_CONFIG && retry.nextAttemptAt! <= START + 1.2 * RETRY_CONFIG);
      const logged = h.logs.find((l) => l.level === 50 && l.kind === 'role-refused');
      assert.ok(logged, 'logged at error level');
      assert.equal(logged.fix, 'allow the SCP role for Storage Commitment on the modality');
    });
  });

  describe('7. another node holds the claim', () => {
    it('none can take a new request between its N-ACTION-RSP and this node\'s start: it is claimed as it is recorded, and the report goes on the association', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      const channel = new FakeChannel(true);
      const { id, afterResponse } = await h.receive(['1.1'], { channel });
      // Another node's periodic pass comes first (under load, this node's own start can lag).
      assert.deepEqual(await h.repo.claimDue('verify', OTHER, h.clock.t, LEASE_TTL, 100), []);
      assert.equal(await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL), undefined);
      assert.equal((await state(h.repo, id)).leaseOwner, NODE);
      afterResponse!();
      await until(h.repo, id, (r) => r.state === 'REPORTED');
      assert.equal(channel.sent.length, 1, 'on the modality\'s association');
      assert.equal(h.transport.attempts, 0, 'no association of ours');
    });

    it('a re-sent request that reopens a report: its delivery is this node\'s at once, on the association it came on', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      const first = await h.receive(['1.1'], { transactionUid: '2.25.500' });
      first.afterResponse!();
      await until(h.repo, first.id, (r) => r.state === 'REPORTED');
      const channel = new FakeChannel(true);
      const again = await h.receive(['1.1'], { transactionUid: '2.25.500', channel });
      assert.equal(again.id, first.id);
      assert.equal(await h.repo.claim(first.id, 'deliver', OTHER, h.clock.t, LEASE_TTL), undefined, 'another node cannot take it');
      again.afterResponse!();
      await until(h.repo, first.id, (r) => r.state === 'REPORTED' && r.deliveryAttempts === 2);
      assert.equal(channel.sent.length, 1);
    });

    it('deliver: nothing is done while its lease lives; once it runs out this node takes over and delivers', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      const { id } = await h.receive(['1.1']);
      // This node stalls right after recording it: the claim taken with the record runs out.
      h.clock.t += LEASE_TTL;
      // Node B verifies it, then claims its delivery (and stalls).
      const verifyB = await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL);
      assert.ok(verifyB);
      await h.repo.completeVerification(verifyB, [], h.clock.t);
      const deliverB = await h.repo.claim(id, 'deliver', OTHER, h.clock.t, LEASE_TTL);
      assert.ok(deliverB);

      h.service.process(id);
      await h.service.resume();
      await idle(h.service);
      assert.equal(h.transport.attempts, 0);
      assert.equal(h.catalog.calls, 0);
      let record = await state(h.repo, id);
      assert.equal(record.state, 'VERIFIED');
      assert.equal(record.leaseOwner, OTHER);

      h.clock.t = deliverB.until - 1;
      await h.service.resume();
      await idle(h.service);
      assert.equal(h.transport.attempts, 0, 'still held, one ms before it runs out');

      h.clock.t = deliverB.until;
      await h.service.resume();
      record = await until(h.repo, id, (r) => r.state === 'REPORTED');
      assert.equal(record.deliveryAttempts, 1);
      assert.equal(h.transport.sent.length, 1);
      // Node B's stale claim can write nothing any more.
      await assert.rejects(h.repo.recordDelivery(deliverB, { at: h.clock.t, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined), { name: 'LeaseLostError' });
    });

    it('verify: a RECEIVED transaction node B is verifying is left alone until its lease runs out', async () => {
      const h = setup();
      h.catalog.hold('1.1');
      const { id, afterResponse } = await h.receive(['1.1']);
      // This node stalls right after recording it: the claim taken with the record runs out.
      h.clock.t += LEASE_TTL;
      const verifyB = await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL);
      assert.ok(verifyB);
      afterResponse!();
      await h.service.resume();
      await idle(h.service);
      assert.equal(h.catalog.calls, 0);
      assert.equal((await state(h.repo, id)).state, 'RECEIVED');

      h.clock.t += LEASE_TTL;
      await h.service.resume();
      await until(h.repo, id, (r) => r.state === 'REPORTED');
      assert.equal(h.transport.sent.length, 1);
      await assert.rejects(h.repo.saveOutcomes(verifyB, []), { name: 'LeaseLostError' });
    });
  });

  it('8. the claim is taken over while the association is being opened: beforeSend refuses, nothing sent, nothing recorded', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.transport.gate = deferred();
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    await h.transport.connecting.promise;
    // This node stalls while connecting; its lease runs out and node B takes the report over.
    h.clock.t += LEASE_TTL + 1;
    const claimB = await h.repo.claim(id, 'deliver', OTHER, h.clock.t, LEASE_TTL);
    assert.ok(claimB, 'node B can claim it once the lease ran out');
    h.transport.gate.resolve();
    await idle(h.service);

    assert.equal(h.transport.attempts, 1);
    assert.equal(h.transport.refusedBeforeSend, 1, "the report's beforeSend refused once the association was up");
    assert.deepEqual(h.transport.sent, []);
    const record = await state(h.repo, id);
    assert.equal(record.state, 'VERIFIED', 'the attempt is not recorded');
    assert.equal(record.deliveryAttempts, 0);
    assert.equal(record.lastError, null);
    assert.equal(record.leaseOwner, OTHER);
    assert.ok(await h.repo.renew(claimB, h.clock.t, LEASE_TTL), "node B's claim is intact");
    assert.ok(h.logs.some((l) => l.level === 40 && /claim lost/.test(l.msg)));
    // Not retried behind node B's back.
    await h.service.resume();
    await idle(h.service);
    assert.equal(h.transport.attempts, 1);
  });

  it("9. the modality's association still open: the report goes on it, not on a new association", async () => {
    const h = setup();
    h.catalog.hold('1.1');
    const channel = new FakeChannel(true);
    const { id, afterResponse } = await h.receive(['1.1'], { channel, transactionUid: '2.25.9' });
    afterResponse!();
    const record = await until(h.repo, id, (r) => r.state === 'REPORTED');
    await idle(h.service);
    assert.equal(record.deliveryAttempts, 1);
    assert.equal(h.transport.attempts, 0);
    assert.equal(channel.sent.length, 1);
    assert.equal(channel.sent[0]!.timeoutMs, REPORT_TIMEOUT);
    assert.deepEqual(channel.sent[0]!.report, { eventTypeId: 1, transactionUid: '2.25.9', retrieveAeTitle: 'ORTHANC', referenced: [{ sopClassUid: CT, sopInstanceUid: '1.1' }], failed: [] });
  });

  it("another node holds the transaction: the modality's association is told to stop waiting for its report", async () => {
    const h = setup();
    h.catalog.hold('1.1');
    const channel = new FakeChannel(true);
    // node-b verifies it first (this node stalled after recording it, and the claim taken with the record
    // ran out; its verification then finds the claim taken) and delivers it itself.
    const { id, afterResponse } = await h.receive(['1.1'], { channel, transactionUid: '2.25.12' });
    h.clock.t += LEASE_TTL;
    const verify = await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL);
    assert.ok(verify);
    afterResponse!();
    await idle(h.service);
    // node-b's verdict hands the delivery to node-b, which has no way onto this association.
    assert.equal(channel.released, 1, 'released once another node holds the transaction');
    const verified = await h.repo.completeVerification(verify, [], h.clock.t, { ttlMs: LEASE_TTL });
    await h.repo.recordDelivery(verified.deliverClaim!, { at: h.clock.t, via: 'new-association', ok: true, error: null, durationMs: 1 }, undefined);
    await h.service.resume();
    assert.equal(channel.released, 1, 'released once, not again');
    assert.equal(channel.sent.length, 0, 'this node sent nothing');
  });

  it('10. expireOverdue() past the report TTL: EXPIRED, logged at error level; redeliver() sends it again', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.transport.failures.push(new DeliveryError('connect ETIMEDOUT'));
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    await until(h.repo, id, (r) => r.state === 'DELIVERY_RETRY');
    await idle(h.service);

    h.clock.t = START + REPORT_TTL - 1;
    await h.service.expireOverdue();
    assert.equal((await state(h.repo, id)).state, 'DELIVERY_RETRY', 'not before its lifetime ends');

    h.clock.t = START + REPORT_TTL;
    await h.service.expireOverdue();
    const expired = await state(h.repo, id);
    assert.equal(expired.state, 'EXPIRED');
    assert.equal(expired.expiredAt, START + REPORT_TTL);
    const logged = h.logs.find((l) => l.level === 50 && /REPORT EXPIRED/.test(l.msg));
    assert.ok(logged);
    assert.equal(logged.attempts, 1);
    assert.equal(logged.lastError, 'connect ETIMEDOUT');
    // An expired report is not work any more.
    await h.service.resume();
    await idle(h.service);
    assert.equal(h.transport.attempts, 1);

    const outcome = await h.service.redeliver(id);
    assert.equal(outcome.kind, 'started');
    const done = await until(h.repo, id, (r) => r.state === 'REPORTED');
    assert.equal(done.deliveryAttempts, 2);
    assert.equal(h.transport.sent.length, 1);
    assert.equal(h.transport.sent[0]!.report.eventTypeId, 1);
  });

  it('stop() during a verification: the verdict is saved, its delivery does not start, and its claim is handed back', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.catalog.gate = deferred();
    const { id, afterResponse } = await h.receive(['1.1'], { transactionUid: '2.25.13' });
    afterResponse!();
    while (h.catalog.calls === 0) await new Promise((resolve) => setImmediate(resolve));
    const stopping = h.service.stop();
    h.catalog.gate.resolve();
    await stopping;
    // Anything stop() let slip would run now: give it a few turns.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    const record = await state(h.repo, id);
    assert.equal(record.state, 'VERIFIED', 'the round that was running finished');
    assert.equal(h.transport.attempts, 0, 'no delivery started after stop()');
    assert.equal(record.leaseOwner, null, 'the delivery claim taken with the verdict was handed back');
    assert.ok(await h.repo.claim(id, 'deliver', OTHER, h.clock.t, LEASE_TTL), 'another node delivers it at once');
  });

  it('a verify claim taken over while the catalog hangs: the stalled round writes nothing, the other node keeps it', async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.catalog.gate = deferred();
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    while (h.catalog.calls === 0) await new Promise((resolve) => setImmediate(resolve));
    h.clock.t += LEASE_TTL + 1;
    const claimB = await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL);
    assert.ok(claimB);
    h.catalog.gate.resolve();
    await idle(h.service);
    const record = await state(h.repo, id);
    assert.equal(record.state, 'RECEIVED');
    assert.equal(record.leaseOwner, OTHER);
    assert.equal((await h.repo.undecidedInstances(id, { afterSeq: -1, limit: 10 })).length, 1, 'no outcome saved under the lost claim');
    assert.equal(h.transport.attempts, 0);
    assert.ok(await h.repo.renew(claimB, h.clock.t, LEASE_TTL));
    assert.ok(h.logs.some((l) => l.level === 40 && /verification stopped: the claim on this transaction ended/.test(l.msg)));
  });

  it('a delivered report the repository could not record: held, then recorded late without being sent again', async () => {
    let failures = 1;
    const h = setup({
      wrap: (repo) =>
        new Proxy(repo, {
          get(target, property) {
            if (property === 'recordDelivery') {
              return async (...args: Parameters<TransactionRepository['recordDelivery']>) => (failures-- > 0 ? Promise.reject(new Error('SQLITE_IOERR: disk I/O error')) : target.recordDelivery(...args));
            }
            const value = Reflect.get(target, property, target) as unknown;
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        }),
    });
    h.catalog.hold('1.1');
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    await idle(h.service);
    assert.equal(h.transport.sent.length, 1);
    let record = await state(h.repo, id);
    assert.equal(record.state, 'VERIFIED', 'the delivery is not on record yet');
    assert.ok(h.logs.some((l) => l.level === 50 && /report delivered, but the delivery could not be recorded/.test(l.msg)));

    // Held for the retry delay: the next passes leave it alone.
    await h.service.resume();
    await idle(h.service);
    assert.equal(h.transport.attempts, 1);

    h.clock.t += 1.2 * RETRY_INITIAL + 1;
    await h.service.resume();
    record = await until(h.repo, id, (r) => r.state === 'REPORTED');
    assert.equal(record.reportedAt, START, 'recorded with the time it was delivered');
    assert.equal(record.deliveryAttempts, 1);
    assert.equal(h.transport.attempts, 1, 'not sent again');
  });

  it("an owed report in retry goes on an association the modality opens", async () => {
    const h = setup();
    h.catalog.hold('1.1');
    h.transport.failures.push(new DeliveryError('connect EHOSTUNREACH'));
    const { id, afterResponse } = await h.receive(['1.1'], { transactionUid: '2.25.55' });
    afterResponse!();
    const retry = await until(h.repo, id, (r) => r.state === 'DELIVERY_RETRY');
    await idle(h.service);
    const channel = new FakeChannel(true);
    const done = deferred();
    h.clock.t += 1000;
    h.service.associationOpened({ peer: MODALITY, channel, done: () => done.resolve() });
    await done.promise;
    const record = await until(h.repo, id, (r) => r.state === 'REPORTED');
    assert.ok(retry.nextAttemptAt! > h.clock.t, 'sent before its planned retry');
    assert.equal(record.deliveryAttempts, 2);
    assert.equal(channel.sent.length, 1);
    assert.equal(channel.sent[0]!.report.transactionUid, '2.25.55');
    assert.equal(h.transport.attempts, 1);
  });

  it('a kept waiting claim whose renewal fails (store error) is not left renewing itself: the transaction is verified later', async () => {
    // A short lease, so that HeldClaim's real-time renewals (every 50 ms) happen within the test.
    const ttl = 150;
    let renewFails = false;
    const h = setup({
      leaseTtlMs: ttl,
      wrap: (repo) =>
        new Proxy(repo, {
          get(target, property) {
            if (property === 'renew') {
              return async (...args: Parameters<TransactionRepository['renew']>) => {
                if (renewFails) {
                  renewFails = false;
                  throw new Error('SQLITE_BUSY: database is locked');
                }
                return target.renew(...args);
              };
            }
            const value = Reflect.get(target, property, target) as unknown;
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        }),
    });
    // The start-up pass (it drops the claims of this node's previous run once).
    await h.service.resume();
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    await idle(h.service);
    assert.equal((await state(h.repo, id)).leaseOwner, NODE, 'waiting, its claim kept');

    // The next round: confirming the kept claim fails once (the store was busy).
    renewFails = true;
    h.clock.t += 1000;
    h.service.process(id);
    await idle(h.service);
    assert.ok(h.logs.some((l) => l.level === 50 && /verification failed unexpectedly/.test(l.msg)));

    // Past the hold, the instance has arrived: the transaction must be verified, by this node or another.
    h.catalog.hold('1.1');
    h.clock.t += 1.2 * RETRY_INITIAL + 1;
    await new Promise((resolve) => setTimeout(resolve, 200));
    await h.service.resume();
    await idle(h.service);
    h.service.process(id);
    await idle(h.service);
    const record = await state(h.repo, id);
    assert.notEqual(record.state, 'RECEIVED', `still RECEIVED, its lease held by ${record.leaseOwner} until ${record.leaseUntil === null ? null : record.leaseUntil - h.clock.t} ms from now: a claim nobody works under keeps renewing`);
  });

  it('11. stop() hands back the claim of a transaction waiting for late arrivals', async () => {
    const h = setup();
    const { id, afterResponse } = await h.receive(['1.1']);
    afterResponse!();
    await idle(h.service);
    assert.equal((await state(h.repo, id)).leaseOwner, NODE);
    assert.equal(await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL), undefined);
    await h.service.stop();
    const claimB = await h.repo.claim(id, 'verify', OTHER, h.clock.t, LEASE_TTL);
    assert.ok(claimB, 'another node claims it at once, without waiting for the lease to run out');
    assert.equal(claimB.record.state, 'RECEIVED');
    // A stopped service starts nothing new.
    h.catalog.hold('1.1');
    h.service.process(id);
    await h.service.resume();
    await idle(h.service);
    assert.equal(h.catalog.calls, 1);
  });
});
