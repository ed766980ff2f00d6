import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCommitmentRequest, type NActionInput } from '../../src/commitment/request.js';
import { DimseStatus, STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_SOP_INSTANCE } from '../../src/commitment/types.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const limits = { maxInstances: 10 };

function input(overrides: Partial<NActionInput> = {}, dataset: Record<string, unknown> | undefined = validDataset()): NActionInput {
  return { sopClassUid: STORAGE_COMMITMENT_SOP_CLASS, sopInstanceUid: STORAGE_COMMITMENT_SOP_INSTANCE, actionTypeId: 1, dataset, ...overrides };
}

function validDataset(): Record<string, unknown> {
  return {
    TransactionUID: '1.2.3.4.5',
    ReferencedSOPSequence: [
      { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.1' },
      { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.2\0' },
    ],
  };
}

function rejection(result: ReturnType<typeof parseCommitmentRequest>): number {
  assert.equal(result.ok, false);
  return result.ok ? -1 : result.rejection.status;
}

describe('parseCommitmentRequest', () => {
  it('parses a valid request, trimming UID padding', () => {
    const result = parseCommitmentRequest(input(), limits);
    assert.ok(result.ok);
    assert.equal(result.request.transactionUid, '1.2.3.4.5');
    assert.deepEqual(result.request.references, [
      { sopClassUid: CT, sopInstanceUid: '1.2.3.1' },
      { sopClassUid: CT, sopInstanceUid: '1.2.3.2' },
    ]);
  });

  it('answers 0123H for an Action Type ID other than 1', () => {
    assert.equal(rejection(parseCommitmentRequest(input({ actionTypeId: 2 }), limits)), DimseStatus.NoSuchActionType);
  });

  it('answers 0112H for a SOP Instance other than the well-known one', () => {
    assert.equal(rejection(parseCommitmentRequest(input({ sopInstanceUid: '1.2.3' }), limits)), DimseStatus.NoSuchSopInstance);
  });

  it('answers 0118H for another SOP Class', () => {
    assert.equal(rejection(parseCommitmentRequest(input({ sopClassUid: '1.2.840.10008.1.1' }), limits)), DimseStatus.NoSuchSopClass);
  });

  it('answers 0115H when the Transaction UID is missing, empty or not a UID', () => {
    for (const value of [undefined, '', 'abc', '1.2.3x', ['1.2', '1.3']]) {
      const dataset = { ...validDataset(), TransactionUID: value };
      assert.equal(rejection(parseCommitmentRequest(input({}, dataset), limits)), DimseStatus.InvalidArgumentValue, String(value));
    }
  });

  it('answers 0115H for a UID with a leading zero in a component, or an empty component (PS3.5 9.1)', () => {
    for (const value of ['1.02.3', '01.2', '1..2', '1.2.', '.1']) {
      const dataset = { ...validDataset(), TransactionUID: value };
      assert.equal(rejection(parseCommitmentRequest(input({}, dataset), limits)), DimseStatus.InvalidArgumentValue, value);
      const item = { ...validDataset(), ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: value }] };
      assert.equal(rejection(parseCommitmentRequest(input({}, item), limits)), DimseStatus.InvalidArgumentValue, `item ${value}`);
    }
    for (const value of ['1.0.2', '0', '2.25.0', '1.20.300']) {
      assert.ok(parseCommitmentRequest(input({}, { ...validDataset(), TransactionUID: value }), limits).ok, value);
    }
  });

  it('answers 0115H when the Referenced SOP Sequence is missing or empty', () => {
    assert.equal(rejection(parseCommitmentRequest(input({}, { TransactionUID: '1.2' }), limits)), DimseStatus.InvalidArgumentValue);
    assert.equal(rejection(parseCommitmentRequest(input({}, { TransactionUID: '1.2', ReferencedSOPSequence: [] }), limits)), DimseStatus.InvalidArgumentValue);
  });

  it('answers 0115H when an item lacks one of its UIDs', () => {
    const dataset = { TransactionUID: '1.2', ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.1' }, { ReferencedSOPClassUID: CT }] };
    const result = parseCommitmentRequest(input({}, dataset), limits);
    assert.equal(rejection(result), DimseStatus.InvalidArgumentValue);
    assert.match(result.ok ? '' : result.rejection.comment, /Item 2/);
  });

  it('answers 0115H when the Action Information is missing', () => {
    assert.equal(rejection(parseCommitmentRequest(input({ dataset: undefined }), limits)), DimseStatus.InvalidArgumentValue);
  });

  it('answers 0213H (resource limitation) beyond the instance cap', () => {
    const items = Array.from({ length: 11 }, (_, i) => ({ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: `1.2.${i}` }));
    assert.equal(rejection(parseCommitmentRequest(input({}, { TransactionUID: '1.2', ReferencedSOPSequence: items }), limits)), DimseStatus.ResourceLimitation);
  });

  it('keeps error comments within the 64 characters of the LO VR', () => {
    const result = parseCommitmentRequest(input({ actionTypeId: 123456789 }), limits);
    assert.ok(!result.ok && result.rejection.comment.length <= 64);
  });
});
