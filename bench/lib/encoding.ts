/**
 * The report encoding cost, in-process: our linear writer (encodeEventReport) against dcmjs's own writer
 * (what dcmjs-dimse would do with a plain Dataset), on the same N-EVENT-REPORT content.
 */
import type { EventReport } from '../../src/commitment/report.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, encodeEventReport } from '../../src/dicom/dataset-writer.js';
import { Dataset } from '../../src/dicom/dimse.js';
import { newUid, SECONDARY_CAPTURE_SOP_CLASS } from '../../test/harness/orthanc.js';
import { median } from './stats.js';

export interface EncodingFigure {
  readonly items: number;
  readonly encoder: 'linear (dataset-writer.ts)' | 'dcmjs Dataset.getDenaturalizedDataset';
  readonly runsMs: number[];
  readonly medianMs: number;
  readonly bytes: number;
}

function report(items: number): EventReport {
  return {
    eventTypeId: 1,
    transactionUid: newUid(),
    retrieveAeTitle: 'PACS',
    referenced: Array.from({ length: items }, () => ({ sopClassUid: SECONDARY_CAPTURE_SOP_CLASS, sopInstanceUid: newUid() })),
    failed: [],
  };
}

function time(fn: () => Buffer): { ms: number; bytes: number } {
  const t0 = performance.now();
  const bytes = fn().length;
  return { ms: performance.now() - t0, bytes };
}

export function encodeLinear(items: number, runs: number): EncodingFigure {
  const content = report(items);
  encodeEventReport(content, EXPLICIT_VR_LITTLE_ENDIAN); // warm-up (JIT)
  const measured = Array.from({ length: runs }, () => time(() => encodeEventReport(content, EXPLICIT_VR_LITTLE_ENDIAN)));
  return { items, encoder: 'linear (dataset-writer.ts)', runsMs: measured.map((m) => m.ms), medianMs: median(measured.map((m) => m.ms)), bytes: measured[0]!.bytes };
}

export function encodeDcmjs(items: number, runs: number): EncodingFigure & { sameBytesAsLinear: boolean } {
  const content = report(items);
  const elements = {
    RetrieveAETitle: content.retrieveAeTitle,
    TransactionUID: content.transactionUid,
    ReferencedSOPSequence: content.referenced.map((r) => ({ ReferencedSOPClassUID: r.sopClassUid, ReferencedSOPInstanceUID: r.sopInstanceUid })),
  };
  const encode = (): Buffer => new Dataset(elements, EXPLICIT_VR_LITTLE_ENDIAN).getDenaturalizedDataset();
  const measured = Array.from({ length: runs }, () => time(encode));
  const sameBytesAsLinear = Buffer.compare(encode(), encodeEventReport(content, EXPLICIT_VR_LITTLE_ENDIAN)) === 0;
  return {
    items,
    encoder: 'dcmjs Dataset.getDenaturalizedDataset',
    runsMs: measured.map((m) => m.ms),
    medianMs: median(measured.map((m) => m.ms)),
    bytes: measured[0]!.bytes,
    sameBytesAsLinear,
  };
}
