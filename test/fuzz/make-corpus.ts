/**
 * Writes the fuzz corpus (test/fuzz/corpus/*.bin): the valid PDUs of a small Storage Commitment
 * conversation that the fuzzer mutates. Run once with `node --import tsx test/fuzz/make-corpus.ts`; the
 * files are committed so that a failing seed replays against the very same bytes.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { A_RELEASE_RQ, actionInformation, associateRq, cEchoCommand, nActionCommand, pDataTf, STORAGE_COMMITMENT, VERIFICATION } from '../harness/pdus.js';

const dir = resolve(import.meta.dirname, 'corpus');
const IMPLICIT = '1.2.840.10008.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';
const CT = '1.2.840.10008.5.1.4.1.1.2';

const files: Record<string, Buffer> = {
  'associate-rq.bin': associateRq({
    called: 'STGCMT',
    calling: 'TESTSCU',
    maxPduLength: 16384,
    contexts: [
      { id: 1, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [IMPLICIT], roles: { scu: true, scp: false } },
      { id: 3, abstractSyntax: VERIFICATION, transferSyntaxes: [IMPLICIT] },
      { id: 5, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [EXPLICIT, IMPLICIT] },
    ],
  }),
  'n-action-command.bin': pDataTf(1, 0x03, nActionCommand(1)),
  'n-action-dataset.bin': pDataTf(
    1,
    0x02,
    actionInformation('1.2.826.0.1.3680043.8.498.1', [
      { sopClassUid: CT, sopInstanceUid: '1.2.826.0.1.3680043.8.498.10' },
      { sopClassUid: CT, sopInstanceUid: '1.2.826.0.1.3680043.8.498.11' },
      { sopClassUid: VERIFICATION, sopInstanceUid: '1.2.826.0.1.3680043.8.498.12' },
    ]),
  ),
  'c-echo.bin': pDataTf(3, 0x03, cEchoCommand(2)),
  'release-rq.bin': A_RELEASE_RQ,
};

for (const [name, bytes] of Object.entries(files)) writeFileSync(resolve(dir, name), bytes);
console.log(`wrote ${Object.keys(files).length} files to ${dir}`);
