import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DatasetParseError, readCommitmentDataset } from '../../src/dicom/dataset-reader.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, encodeCommitmentDataset } from '../../src/dicom/dataset-writer.js';
import { Dataset } from '../../src/dicom/dimse.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const syntaxes = [
  ['implicit', IMPLICIT_VR_LITTLE_ENDIAN],
  ['explicit', EXPLICIT_VR_LITTLE_ENDIAN],
] as const;

describe('readCommitmentDataset', () => {
  for (const [name, ts] of syntaxes) {
    it(`reads what dcmjs writes (${name} VR, with other attributes to skip)`, () => {
      const elements = {
        TransactionUID: '1.2.3.4.5',
        PatientID: 'SKIPPED',
        ReferencedSOPSequence: [
          { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.1', ReferencedFrameNumber: '1' },
          { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.22' },
        ],
        FailedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.9', FailureReason: 0x0112 }],
        OtherPatientIDsSequence: [{ PatientID: 'X' }],
      };
      const bytes = new Dataset(elements, ts).getDenaturalizedDataset();
      assert.deepEqual(readCommitmentDataset(bytes, ts), {
        TransactionUID: '1.2.3.4.5',
        ReferencedSOPSequence: [
          { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.1' },
          { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.22' },
        ],
        FailedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.9', FailureReason: 0x0112 }],
      });
    });

    it(`reads what our writer writes (${name} VR)`, () => {
      const content = {
        transactionUid: '1.2.3',
        retrieveAeTitle: 'PACS',
        referenced: [{ sopClassUid: CT, sopInstanceUid: '1.2.3.4' }],
        failed: [{ sopClassUid: CT, sopInstanceUid: '1.2.3.5', failureReason: 0x0119 as const }],
      };
      assert.deepEqual(readCommitmentDataset(encodeCommitmentDataset(content, ts), ts), {
        RetrieveAETitle: 'PACS',
        TransactionUID: '1.2.3',
        ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.4' }],
        FailedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.5', FailureReason: 0x0119 }],
      });
    });
  }

  it('reads undefined-length sequences and items (implicit VR)', () => {
    const uid = (tag: [number, number], value: string): Buffer => {
      const padded = value.length % 2 ? `${value}\0` : value;
      const b = Buffer.alloc(8 + padded.length);
      b.writeUInt16LE(tag[0], 0);
      b.writeUInt16LE(tag[1], 2);
      b.writeUInt32LE(padded.length, 4);
      b.write(padded, 8, 'latin1');
      return b;
    };
    const marker = (element: number, length: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(0xfffe, 0);
      b.writeUInt16LE(element, 2);
      b.writeUInt32LE(length, 4);
      return b;
    };
    const seqHeader = Buffer.alloc(8);
    seqHeader.writeUInt16LE(0x0008, 0);
    seqHeader.writeUInt16LE(0x1199, 2);
    seqHeader.writeUInt32LE(0xffffffff, 4);
    const bytes = Buffer.concat([
      uid([0x0008, 0x1195], '1.2.3'),
      seqHeader,
      marker(0xe000, 0xffffffff),
      uid([0x0008, 0x1150], CT),
      uid([0x0008, 0x1155], '1.5'),
      marker(0xe00d, 0),
      marker(0xe0dd, 0),
    ]);
    assert.deepEqual(readCommitmentDataset(bytes, IMPLICIT_VR_LITTLE_ENDIAN), {
      TransactionUID: '1.2.3',
      ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.5' }],
    });
  });

  it('throws DatasetParseError on truncated or inconsistent input instead of guessing', () => {
    const bytes = encodeCommitmentDataset({ transactionUid: '1.2.3', retrieveAeTitle: undefined, referenced: [{ sopClassUid: CT, sopInstanceUid: '1.2' }], failed: [] }, EXPLICIT_VR_LITTLE_ENDIAN);
    for (const cut of [3, 10, bytes.length - 3]) {
      assert.throws(() => readCommitmentDataset(bytes.subarray(0, cut), EXPLICIT_VR_LITTLE_ENDIAN), DatasetParseError, `cut at ${cut}`);
    }
    assert.throws(() => readCommitmentDataset(Buffer.from([0x08, 0x00, 0x99, 0x11, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]), IMPLICIT_VR_LITTLE_ENDIAN), DatasetParseError);
  });
});
