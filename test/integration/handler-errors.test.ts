/**
 * A bug in a handler costs one association, never the process (issue 9.1): the DICOM listener in this
 * process, with an intake that throws where it must not, driven by our dcmjs SCU over loopback. Any
 * unhandled rejection or uncaught exception on the way fails the test.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { connect, echo, sendNAction, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { DimseStatus, type CommitmentRequest } from '../../src/commitment/types.js';
import { DicomListener } from '../../src/dicom/listener.js';
import type { Peer } from '../../src/peers/peer-directory.js';
import type { CommitmentIntake, IntakeAnswer } from '../../src/transactions/intake.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const THROWS = '2.25.1001';
const REJECTS = '2.25.1002';
const MODALITY: Peer = { aeTitle: 'MODALITY', host: '127.0.0.1', port: 11112, tls: false, callback: true, source: 'file', addresses: ['127.0.0.1'] };

/** Records what it is given; throws synchronously for THROWS (a bug), rejects for REJECTS (a store fault). */
class BuggyIntake implements CommitmentIntake {
  readonly received: string[] = [];
  associationsOffered = 0;
  receive(request: CommitmentRequest): Promise<IntakeAnswer> {
    if (request.transactionUid === THROWS) throw new TypeError('a bug in the intake');
    if (request.transactionUid === REJECTS) return Promise.reject(new Error('disk I/O error'));
    this.received.push(request.transactionUid);
    return Promise.resolve({ status: DimseStatus.Success });
  }
  /** Looking up owed reports fails too: the association must be served without them. */
  associationOpened(): void {
    this.associationsOffered++;
    throw new Error('store unreadable');
  }
}

describe('a handler that throws', () => {
  const logs: Array<{ level: number; msg: string }> = [];
  const intake = new BuggyIntake();
  let handlerErrors = 0;
  const strays: unknown[] = [];
  const onStray = (error: unknown): void => void strays.push(error);
  let listener: DicomListener;

  before(async () => {
    process.on('unhandledRejection', onStray);
    process.on('uncaughtException', onStray);
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as { level: number; msg: string });
          done();
        },
      }),
    );
    listener = new DicomListener(
      {
        host: '127.0.0.1',
        port: 0,
        limits: { maxConnections: 16, maxConnectionsPerHost: 16, maxAssociations: 8, maxAssociationsPerAe: 8 },
        timers: { artimMs: 10_000, idleMs: 60_000, stalledMs: 60_000, maxLifetimeMs: 900_000 },
        maxBufferedBytes: 16 * 1024 * 1024,
        tls: undefined,
      },
      {
        logger,
        intake,
        acceptance: { ourAeTitle: 'STGCMT', findPeer: (ae) => (ae === 'MODALITY' ? MODALITY : undefined), checkPeerHost: true, peerListStatus: () => ({ known: 1, refreshedAt: Date.now() }) },
        maxInstances: 1000,
        maxPduLength: 65536,
      },
      { connectionRefused: () => undefined, connectionClosed: () => undefined, associationRejected: () => undefined, handlerError: () => void handlerErrors++ },
      logger,
    );
    await listener.start();
  });

  after(async () => {
    await listener.stop(0);
    process.off('unhandledRejection', onStray);
    process.off('uncaughtException', onStray);
  });

  const target = (): ScuTarget => ({ host: '127.0.0.1', port: listener.port, callingAeTitle: 'MODALITY', calledAeTitle: 'STGCMT', timeoutMs: 5000 });
  const references = [{ sopClassUid: CT, sopInstanceUid: '2.25.2001' }];

  it('an association whose owed-report lookup throws is still served', async () => {
    const open = await connect(target());
    assert.equal(await echo(open, 5000), 0);
    assert.equal((await sendNAction(open, { transactionUid: '2.25.1000', references }, 5000)).status, 0);
    await open.release();
    assert.ok(intake.associationsOffered >= 1);
    assert.ok(logs.some((l) => /could not look up the reports owed/.test(l.msg)));
    assert.deepEqual(intake.received, ['2.25.1000']);
  });

  it('a synchronous throw in the N-ACTION handler aborts that association, logged and counted; the next one is served', async () => {
    const open = await connect(target());
    await assert.rejects(sendNAction(open, { transactionUid: THROWS, references }, 5000), /closed before the N-ACTION-RSP/);
    assert.equal(handlerErrors, 1);
    const line = logs.find((l) => /internal error while handling N-ACTION; aborting this association/.test(l.msg));
    assert.equal(line?.level, 50);
    const next = await connect(target());
    assert.equal((await sendNAction(next, { transactionUid: '2.25.1003', references }, 5000)).status, 0);
    await next.release();
    assert.deepEqual(intake.received, ['2.25.1000', '2.25.1003']);
  });

  it('a request the store could not record is answered 0110H, so the modality keeps its images', async () => {
    const open = await connect(target());
    const answer = await sendNAction(open, { transactionUid: REJECTS, references }, 5000);
    assert.equal(answer.status, DimseStatus.ProcessingFailure);
    assert.equal(answer.errorComment, 'Could not record the request');
    assert.equal(await echo(open, 5000), 0, 'the association goes on');
    await open.release();
  });

  it('no error reached the process', () => {
    assert.deepEqual(strays, []);
  });
});
