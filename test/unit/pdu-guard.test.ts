import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { limitsFor, PduGuard, type GuardStep } from '../../src/dicom/pdu-guard.js';
import { associateRq, cEchoCommand, pduHeader } from '../harness/pdus.js';

function pdv(control: number, value: Buffer, contextId = 1): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt32BE(value.length + 2, 0);
  b.writeUInt8(contextId, 4);
  b.writeUInt8(control, 5);
  return Buffer.concat([b, value]);
}

function pData(...items: Buffer[]): Buffer {
  const body = Buffer.concat(items);
  return Buffer.concat([pduHeader(0x04, body.length), body]);
}

const rq = associateRq({ called: 'STGCMT', calling: 'CT1', contexts: [{ id: 1, abstractSyntax: '1.2.840.10008.1.20.1' }] });
const limits = { maxPduLength: 1000, maxCommandBytes: 100, maxDatasetBytes: 500 };

/** A guard that has seen the RQ and whose association was accepted on context 1. */
function associated(): PduGuard {
  const guard = new PduGuard(limits);
  guard.inspect(rq);
  guard.associationAccepted([1]);
  return guard;
}

function refusal(steps: GuardStep[]): string {
  const last = steps.at(-1);
  return last?.kind === 'refuse' ? last.why : '';
}

describe('PduGuard', () => {
  it('hands us the A-ASSOCIATE-RQ whole, dcmjs-dimse each message part assembled, at any split of the stream', () => {
    const command = Buffer.alloc(80, 0x43);
    const data = [Buffer.alloc(300, 0x44), Buffer.alloc(150, 0x45)];
    const release = Buffer.concat([pduHeader(0x05, 4), Buffer.alloc(4)]);
    const stream = Buffer.concat([rq, pData(pdv(0x03, command)), pData(pdv(0x00, data[0]!), pdv(0x02, data[1]!)), release]);
    const expectedForward = Buffer.concat([pData(pdv(0x03, command)), pData(pdv(0x02, Buffer.alloc(0))), release]);
    for (const step of [1, 7, 64, stream.length]) {
      const guard = new PduGuard(limits);
      const forwarded: Buffer[] = [];
      const bodies: Buffer[] = [];
      const datasets: Buffer[] = [];
      const take = (steps: GuardStep[]): void => {
        for (const s of steps) {
          assert.notEqual(s.kind, 'refuse', `step ${step}: ${s.kind === 'refuse' ? s.why : ''}`);
          if (s.kind === 'forward') {
            forwarded.push(Buffer.from(s.bytes));
            if (s.dataset) datasets.push(s.dataset);
          }
          if (s.kind === 'associate-rq') {
            bodies.push(s.body);
            guard.associationAccepted([1]);
          }
        }
      };
      for (let i = 0; i < stream.length; i += step) {
        take(guard.inspect(stream.subarray(i, i + step)));
        while (guard.holdsBytes) take(guard.inspect(Buffer.alloc(0)));
      }
      assert.equal(bodies.length, 1);
      assert.deepEqual(bodies[0], rq.subarray(6));
      assert.deepEqual(Buffer.concat(forwarded), expectedForward, `step ${step}`);
      assert.deepEqual(datasets, [Buffer.concat(data)], `step ${step}`);
    }
  });

  it('refuses a data set fragment with no command before it on its context', () => {
    assert.match(refusal(associated().inspect(pData(pdv(0x02, Buffer.alloc(10))))), /without a command/);
  });

  it('tells how many bytes of an unfinished message are held, and on which context each part came', () => {
    const guard = associated();
    const [command] = guard.inspect(pData(pdv(0x03, Buffer.alloc(50))));
    assert.equal(command?.kind === 'forward' && command.contextId, 1);
    guard.inspect(pData(pdv(0x00, Buffer.alloc(200))));
    assert.equal(guard.bytesHeld, 200);
    assert.ok(guard.inMessage);
    const [last] = guard.inspect(pData(pdv(0x02, Buffer.alloc(10))));
    assert.equal(last?.kind === 'forward' && last.contextId, 1);
    assert.equal(last?.kind === 'forward' && last.dataset?.length, 210);
    assert.equal(guard.bytesHeld, 0);
    assert.ok(!guard.inMessage);
  });

  it('refuses a data set after a command that announced none (Command Data Set Type 0101H)', () => {
    const guard = associated();
    guard.inspect(pData(pdv(0x03, cEchoCommand(1))));
    assert.match(refusal(guard.inspect(pData(pdv(0x02, Buffer.alloc(10))))), /without a command announcing it/);
  });

  it('refuses a P-DATA-TF longer than advertised before its body arrives', () => {
    assert.match(refusal(associated().inspect(pduHeader(0x04, 2 ** 31))), /exceeds our maximum/);
  });

  it('refuses P-DATA before the association was accepted, and on a context that was not accepted', () => {
    const early = new PduGuard(limits);
    early.inspect(rq);
    assert.match(refusal(early.inspect(pData(pdv(0x03, Buffer.alloc(10))))), /before the association was accepted/);
    assert.match(refusal(associated().inspect(pData(pdv(0x03, Buffer.alloc(10), 3)))), /context 3, which was not accepted/);
  });

  it('refuses a message that changes presentation context midway', () => {
    const guard = new PduGuard(limits);
    guard.inspect(rq);
    guard.associationAccepted([1, 3]);
    guard.inspect(pData(pdv(0x03, Buffer.alloc(10), 1)));
    guard.inspect(pData(pdv(0x00, Buffer.alloc(10), 1)));
    assert.match(refusal(guard.inspect(pData(pdv(0x00, Buffer.alloc(10), 3)))), /in the middle of a message/);
  });

  it('adds up the fragments of one message: an endless data set is refused', () => {
    const guard = associated();
    guard.inspect(pData(pdv(0x03, Buffer.alloc(50))));
    assert.equal(refusal(guard.inspect(pData(pdv(0x00, Buffer.alloc(400))))), '');
    assert.match(refusal(guard.inspect(pData(pdv(0x00, Buffer.alloc(400))))), /data set over 500 bytes/);
    assert.match(refusal(associated().inspect(pData(pdv(0x01, Buffer.alloc(60)), pdv(0x01, Buffer.alloc(60))))), /command set over 100/);
  });

  it('refuses PDV items that do not fit their PDU', () => {
    const bad = pData(pdv(0x02, Buffer.alloc(10)));
    bad.writeUInt32BE(500, 6);
    assert.match(refusal(associated().inspect(bad)), /does not fit/);
  });

  it('refuses unknown types, PDUs a requestor never sends, anything before A-ASSOCIATE-RQ, and a huge RQ', () => {
    assert.match(refusal(new PduGuard(limits).inspect(Buffer.from('GET / HTTP/1.1\r\n'))), /unknown PDU type/);
    assert.match(refusal(new PduGuard(limits).inspect(pduHeader(0x05, 4))), /before any A-ASSOCIATE-RQ/);
    assert.match(refusal(new PduGuard(limits).inspect(pduHeader(0x03, 4))), /never sent to an acceptor/);
    assert.match(refusal(associated().inspect(rq)), /second A-ASSOCIATE-RQ/);
    assert.match(refusal(associated().inspect(pduHeader(0x07, 100))), /expected 4/);
    assert.match(refusal(new PduGuard(limits).inspect(pduHeader(0x01, 50 * 1024 * 1024))), /A-ASSOCIATE-RQ of \d+ bytes/);
  });

  it('says nothing more after a refusal', () => {
    const guard = new PduGuard(limits);
    guard.inspect(Buffer.from('GET / HTTP/1.1'));
    assert.deepEqual(guard.inspect(rq), []);
  });

  it('sizes the data set limit from the instance cap', () => {
    assert.ok(limitsFor(262144, 200_000).maxDatasetBytes > 200_000 * 152);
  });
});
