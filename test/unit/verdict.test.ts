import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildEventReport } from '../../src/commitment/report.js';
import { EventType, FailureReason } from '../../src/commitment/types.js';
import { sopClassSupport } from '../../src/commitment/sop-classes.js';
import { buildVerdict, judgeAtIntake, judgeInstance, type InstanceFinding } from '../../src/commitment/verdict.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const ref = { sopClassUid: CT, sopInstanceUid: '1.2.3' };
const closed = { arrivalOpen: false, verifyOpen: false };
const open = { arrivalOpen: true, verifyOpen: true };

describe('judgeInstance', () => {
  it('commits an instance stored under the requested SOP Class', () => {
    assert.deepEqual(judgeInstance(ref, { kind: 'stored', sopClassUid: CT }, closed), { outcome: 'committed' });
    assert.deepEqual(judgeInstance(ref, { kind: 'stored', sopClassUid: CT, integrity: 'ok' }, closed), { outcome: 'committed' });
  });

  it('fails an absent instance with 0112H once the arrival window is closed, and waits while it is open', () => {
    assert.deepEqual(judgeInstance(ref, { kind: 'absent' }, closed), { outcome: 'failed', reason: FailureReason.NoSuchObjectInstance });
    assert.deepEqual(judgeInstance(ref, { kind: 'absent' }, open), { outcome: 'pending', waitingFor: 'arrival' });
  });

  it('fails an instance stored under another SOP Class with 0119H, without waiting', () => {
    assert.deepEqual(judgeInstance(ref, { kind: 'stored', sopClassUid: MR }, open), { outcome: 'failed', reason: FailureReason.ClassInstanceConflict });
  });

  it('fails a corrupt or unverifiable file with 0110H', () => {
    assert.deepEqual(judgeInstance(ref, { kind: 'stored', sopClassUid: CT, integrity: 'corrupt' }, open), { outcome: 'failed', reason: FailureReason.ProcessingFailure });
    assert.deepEqual(judgeInstance(ref, { kind: 'stored', sopClassUid: CT, integrity: 'unverifiable' }, open), { outcome: 'failed', reason: FailureReason.ProcessingFailure });
  });

  it('fails a class that is never stored with 0122H at once, whatever Orthanc holds', () => {
    const verification = { sopClassUid: '1.2.840.10008.1.1', sopInstanceUid: '1.2.3' };
    for (const finding of [{ kind: 'stored', sopClassUid: CT } as InstanceFinding, { kind: 'absent' } as InstanceFinding, undefined]) {
      assert.deepEqual(judgeInstance(verification, finding, open), { outcome: 'failed', reason: FailureReason.ReferencedSopClassNotSupported });
    }
  });

  it('commits a private class only when Orthanc holds the instance under it; otherwise 0122H, after the arrival window', () => {
    const privateRef = { sopClassUid: '1.3.12.2.1107.5.9.1', sopInstanceUid: '1.2.3' };
    assert.deepEqual(judgeInstance(privateRef, { kind: 'stored', sopClassUid: privateRef.sopClassUid }, closed), { outcome: 'committed' });
    assert.deepEqual(judgeInstance(privateRef, { kind: 'stored', sopClassUid: CT }, open), { outcome: 'failed', reason: FailureReason.ReferencedSopClassNotSupported });
    assert.deepEqual(judgeInstance(privateRef, { kind: 'absent' }, open), { outcome: 'pending', waitingFor: 'arrival' });
    assert.deepEqual(judgeInstance(privateRef, { kind: 'absent' }, closed), { outcome: 'failed', reason: FailureReason.ReferencedSopClassNotSupported });
  });

  it('never says yes without a finding: unknown waits for Orthanc, then fails with 0110H', () => {
    for (const finding of [{ kind: 'unknown' } as InstanceFinding, undefined]) {
      assert.deepEqual(judgeInstance(ref, finding, open), { outcome: 'pending', waitingFor: 'orthanc' });
      assert.deepEqual(judgeInstance(ref, finding, closed), { outcome: 'failed', reason: FailureReason.ProcessingFailure });
    }
  });
});

describe('buildVerdict and buildEventReport', () => {
  const refs = [
    { sopClassUid: CT, sopInstanceUid: '1.1' },
    { sopClassUid: CT, sopInstanceUid: '1.2' },
    { sopClassUid: CT, sopInstanceUid: '1.3' },
  ];

  it('puts every reference in exactly one list, in request order', () => {
    const verdict = buildVerdict(refs, (r) => (r.sopInstanceUid === '1.2' ? { outcome: 'failed', reason: FailureReason.NoSuchObjectInstance } : { outcome: 'committed' }));
    assert.deepEqual(verdict.committed.map((r) => r.sopInstanceUid), ['1.1', '1.3']);
    assert.deepEqual(verdict.failed, [{ sopClassUid: CT, sopInstanceUid: '1.2', failureReason: 0x0112 }]);
    const report = buildEventReport('9.9', 'ORTHANC', verdict);
    assert.equal(report.eventTypeId, EventType.SomeFailed);
    assert.equal(report.retrieveAeTitle, 'ORTHANC');
  });

  it('refuses to build a verdict while an instance is pending', () => {
    assert.throws(() => buildVerdict(refs, () => ({ outcome: 'pending', waitingFor: 'arrival' })), /pending/);
  });

  it('reports Event Type 1 when all are committed, without a Failed SOP Sequence', () => {
    const report = buildEventReport('9.9', 'ORTHANC', buildVerdict(refs, () => ({ outcome: 'committed' })));
    assert.equal(report.eventTypeId, EventType.AllCommitted);
    assert.equal(report.failed.length, 0);
    assert.equal(report.referenced.length, 3);
  });

  it('omits the Retrieve AE Title when nothing was committed', () => {
    const report = buildEventReport('9.9', 'ORTHANC', buildVerdict(refs, () => ({ outcome: 'failed', reason: FailureReason.NoSuchObjectInstance })));
    assert.equal(report.retrieveAeTitle, undefined);
    assert.equal(report.referenced.length, 0);
  });
});

describe('sopClassSupport', () => {
  it('knows the Storage SOP Classes from the ones never stored', () => {
    for (const uid of [CT, MR, '1.2.840.10008.5.1.4.1.1.88.22', '1.2.840.10008.5.1.4.1.1.104.1', '1.2.840.10008.5.1.4.38.1', '1.2.840.10008.5.1.4.34.7']) assert.equal(sopClassSupport(uid), 'storage', uid);
    for (const uid of ['1.2.840.10008.1.1', '1.2.840.10008.1.20.1', '1.2.840.10008.5.1.4.1.2.2.1', '1.2.840.10008.5.1.4.31', '1.2.840.10008.3.1.2.3.3']) assert.equal(sopClassSupport(uid), 'never-stored', uid);
    assert.equal(sopClassSupport('1.3.12.2.1107.5.9.1'), 'private');
  });
});

describe('judgeAtIntake', () => {
  it('fails every listing of an instance listed under two classes with 0119H, and never-stored classes with 0122H', () => {
    const decided = judgeAtIntake([
      { sopClassUid: CT, sopInstanceUid: '1.1' },
      { sopClassUid: MR, sopInstanceUid: '1.1' },
      { sopClassUid: CT, sopInstanceUid: '1.2' },
      { sopClassUid: CT, sopInstanceUid: '1.2' },
      { sopClassUid: '1.2.840.10008.1.1', sopInstanceUid: '1.3' },
    ]);
    assert.deepEqual(decided, new Map([[0, FailureReason.ClassInstanceConflict], [1, FailureReason.ClassInstanceConflict], [4, FailureReason.ReferencedSopClassNotSupported]]));
  });
});
