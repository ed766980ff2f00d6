import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildEventReport } from '../../src/commitment/report.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, encodeEventReport } from '../../src/dicom/dataset-writer.js';
import { Dataset } from '../../src/dicom/dimse.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';

function sampleReport(committed: number, failed: number) {
  return buildEventReport('1.2.826.0.1.3680043.2.1', 'ORTHANC', {
    committed: Array.from({ length: committed }, (_, i) => ({ sopClassUid: CT, sopInstanceUid: `1.2.3.${i}` })),
    failed: Array.from({ length: failed }, (_, i) => ({ sopClassUid: CT, sopInstanceUid: `1.2.4.${i}1`, failureReason: i % 2 ? 0x0119 : 0x0112 })),
  });
}

describe('encodeEventReport', () => {
  for (const ts of [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN]) {
    it(`round-trips through dcmjs's reader in ${ts === IMPLICIT_VR_LITTLE_ENDIAN ? 'implicit' : 'explicit'} VR`, () => {
      const bytes = encodeEventReport(sampleReport(3, 2), ts);
      assert.equal(bytes.length % 2, 0);
      const decoded = new Dataset(bytes, ts).getElements() as Record<string, unknown>;
      assert.equal(decoded['TransactionUID'], '1.2.826.0.1.3680043.2.1');
      assert.equal(decoded['RetrieveAETitle'], 'ORTHANC');
      const referenced = decoded['ReferencedSOPSequence'] as Array<Record<string, unknown>>;
      assert.deepEqual(referenced.map((i) => i['ReferencedSOPInstanceUID']), ['1.2.3.0', '1.2.3.1', '1.2.3.2']);
      assert.equal(referenced[0]?.['ReferencedSOPClassUID'], CT);
      const failed = decoded['FailedSOPSequence'] as Array<Record<string, unknown>>;
      assert.deepEqual(failed.map((i) => [i['ReferencedSOPInstanceUID'], i['FailureReason']]), [['1.2.4.01', 0x0112], ['1.2.4.11', 0x0119]]);
    });
  }

  it('writes no Referenced SOP Sequence when none were committed', () => {
    const decoded = new Dataset(encodeEventReport(sampleReport(0, 1), EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN).getElements() as Record<string, unknown>;
    assert.equal(decoded['ReferencedSOPSequence'], undefined);
    assert.equal(decoded['RetrieveAETitle'], undefined);
    assert.equal((decoded['FailedSOPSequence'] as unknown[]).length, 1);
  });

  it('sizes large reports exactly (100,000 items; speed is measured by npm run bench)', () => {
    const bytes = encodeEventReport(sampleReport(100_000, 0), IMPLICIT_VR_LITTLE_ENDIAN);
    // Each item: 8-byte item header + two UI elements (8-byte header + even-padded value).
    const itemBytes = (uid: string): number => 8 + (8 + CT.length + (CT.length % 2)) + (8 + uid.length + (uid.length % 2));
    let expected = 8 + 24 /* TransactionUID */ + 8 + 8 /* RetrieveAETitle */ + 8 /* sequence header */;
    for (let i = 0; i < 100_000; i++) expected += itemBytes(`1.2.3.${i}`);
    assert.equal(bytes.length, expected);
  });

  it('rejects a transfer syntax it cannot write', () => {
    assert.throws(() => encodeEventReport(sampleReport(1, 0), '1.2.840.10008.1.2.2'), /unsupported/);
  });
});
