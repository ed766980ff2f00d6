import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAssociateRq } from '../../src/dicom/associate-rq.js';
import { associateRqBody, item, STORAGE_COMMITMENT, VERIFICATION } from '../harness/pdus.js';

const EXPLICIT = '1.2.840.10008.1.2.1';

describe('parseAssociateRq', () => {
  it('reads AE titles, contexts in proposed order with their IDs, roles, max length and implementation', () => {
    const result = parseAssociateRq(
      associateRqBody({
        called: 'STGCMT',
        calling: 'CT 1',
        maxPduLength: 32768,
        contexts: [
          { id: 7, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [EXPLICIT, '1.2.840.10008.1.2'], roles: { scu: true, scp: false } },
          { id: 1, abstractSyntax: VERIFICATION },
        ],
      }),
    );
    assert.ok(result.ok);
    assert.equal(result.rq.calledAeTitle, 'STGCMT');
    assert.equal(result.rq.callingAeTitle, 'CT 1');
    assert.equal(result.rq.maxPduLength, 32768);
    assert.equal(result.rq.implementationClassUid, '1.2.3.4.5.6.7');
    assert.deepEqual(result.rq.contexts, [
      { id: 7, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [EXPLICIT, '1.2.840.10008.1.2'], roles: { scu: true, scp: false } },
      { id: 1, abstractSyntax: VERIFICATION, transferSyntaxes: ['1.2.840.10008.1.2'] },
    ]);
  });

  it('accepts all 128 odd IDs, in any order', () => {
    const ids = Array.from({ length: 128 }, (_, i) => 255 - 2 * i);
    const result = parseAssociateRq(associateRqBody({ called: 'A', calling: 'B', contexts: ids.map((id) => ({ id, abstractSyntax: VERIFICATION })) }));
    assert.ok(result.ok);
    assert.deepEqual(result.rq.contexts.map((c) => c.id), ids);
  });

  it('refuses duplicate, even and zero presentation context IDs (A-ABORT reason 6)', () => {
    for (const ids of [[255, 255], [1, 3, 1], [2], [0]]) {
      const result = parseAssociateRq(associateRqBody({ called: 'A', calling: 'B', contexts: ids.map((id) => ({ id, abstractSyntax: VERIFICATION })) }));
      assert.ok(!result.ok, `ids ${ids.join(',')}`);
      assert.equal(result.abortReason, 6);
    }
    const tooMany = Array.from({ length: 129 }, (_, i) => ({ id: (2 * i + 1) % 256, abstractSyntax: VERIFICATION }));
    assert.ok(!parseAssociateRq(associateRqBody({ called: 'A', calling: 'B', contexts: tooMany })).ok);
  });

  it('refuses lengths that overrun, a context without abstract or transfer syntax, and a short fixed part', () => {
    const body = associateRqBody({ called: 'A', calling: 'B', contexts: [{ id: 1, abstractSyntax: VERIFICATION }] });
    const overrun = Buffer.from(body);
    overrun.writeUInt16BE(0xffff, 68 + 2);
    assert.match(parseAssociateRq(overrun).ok ? '' : (parseAssociateRq(overrun) as { why: string }).why, /overruns/);
    assert.ok(!parseAssociateRq(body.subarray(0, 40)).ok);
    const noTs = Buffer.concat([body.subarray(0, 68), item(0x20, Buffer.concat([Buffer.from([1, 0, 0, 0]), item(0x30, Buffer.from(VERIFICATION))]))]);
    assert.match((parseAssociateRq(noTs) as { why: string }).why, /no transfer syntax/);
    const noAs = Buffer.concat([body.subarray(0, 68), item(0x20, Buffer.concat([Buffer.from([1, 0, 0, 0]), item(0x40, Buffer.from('1.2.840.10008.1.2'))]))]);
    assert.match((parseAssociateRq(noAs) as { why: string }).why, /no abstract syntax/);
  });

  it('never throws on random bytes', () => {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const base = associateRqBody({ called: 'A', calling: 'B', contexts: [{ id: 1, abstractSyntax: VERIFICATION, roles: { scu: true, scp: false } }] });
    for (let n = 0; n < 20_000; n++) {
      const mutated = Buffer.from(base);
      for (let k = 0; k < 1 + (random() % 4); k++) mutated[random() % mutated.length] = random() & 0xff;
      parseAssociateRq(mutated.subarray(0, random() % (mutated.length + 1)));
    }
  });
});
