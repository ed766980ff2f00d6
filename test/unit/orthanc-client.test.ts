/**
 * The Orthanc client against a stub HTTP server on 127.0.0.1 that answers every endpoint with a 200 and a
 * wrong body: every such answer is an Orthanc fault (OrthancInvalidAnswerError, which is an
 * OrthancUnavailableError), never an empty result; and an answer longer than the cap is refused.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { maxAnswerBytes, OrthancClient, OrthancInvalidAnswerError, OrthancUnavailableError } from '../../src/orthanc/client.js';

const ID = 'f5daaa1d-d3978424-ddc13c0d-57c56812-d807a699';
const WRONG: Array<[string, string, string]> = [
  ['HTML', '<html><body>PHI-MARKER</body></html>', 'text/html'],
  ['{}', '{}', 'application/json'],
  ['[1,2]', '[1,2]', 'application/json'],
  ['truncated JSON', '[ "f5daaa1d-d3978424-dd', 'application/json'],
];

describe('OrthancClient: wrong answers are faults', () => {
  let server: Server;
  let body = '';
  let contentType = 'application/json';
  let url = '';
  /** What GET /system answers in the lookup tests (which path the client takes); undefined: `body`. */
  let systemBody: string | undefined;
  const logged: string[] = [];
  const logger = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) }));
  const client = (): OrthancClient => new OrthancClient({ baseUrl: url, timeoutMs: 2000, batchSize: 10, concurrency: 2, logger });

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/system' && systemBody !== undefined) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(systemBody);
          return;
        }
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const CLASSIC = JSON.stringify({ DicomAet: 'PACS', Version: '1.10.1' });
  const EXTENDED = JSON.stringify({ DicomAet: 'PACS', Version: '1.12.7', Capabilities: { HasExtendedFind: true, HasExtendedChanges: true } });
  const calls: Array<[string, (c: OrthancClient) => Promise<unknown>, string | undefined]> = [
    ['GET /system', (c) => c.system(), undefined],
    ['lookup path (GET /system)', (c) => c.lookupPath(), undefined],
    ['GET /modalities?expand', (c) => c.modalities(), undefined],
    ['classic lookup by search (POST /tools/find)', (c) => c.lookupInstances(['1.2.3']), CLASSIC],
    ['classic lookup by ID (POST /tools/bulk-content)', (c) => c.lookupInstances(['1.2.3'], new Map([['1.2.3', ID]])), CLASSIC],
    ['extended-find lookup (POST /tools/find with ResponseContent)', (c) => c.lookupInstances(['1.2.3'], new Map([['1.2.3', ID]])), EXTENDED],
    ['POST /tools/bulk-content', (c) => c.describeInstances([ID]), undefined],
    // STGCMT_PROTECT: a wrong answer while climbing to patients, or to the protection itself, holds the report back.
    ['POST /tools/bulk-content (Series)', (c) => c.seriesContent([ID]), undefined],
    ['POST /tools/bulk-content (Study)', (c) => c.studyPatients([ID]), undefined],
    ['PUT /patients/{id}/protected', (c) => c.protectPatients([ID]), undefined],
    ['GET /changes?last', (c) => c.lastChangeSeq(), undefined],
    ['GET /changes', (c) => c.changes(0), undefined],
  ];

  for (const [name, call, system] of calls) {
    it(`${name}: HTML, {}, [1,2] and truncated JSON are faults, never an empty answer`, async () => {
      systemBody = system;
      for (const [what, wrong, type] of WRONG) {
        // {} is a valid answer from /modalities (no modality declared).
        if (name.includes('modalities') && what === '{}') continue;
        body = wrong;
        contentType = type;
        await assert.rejects(call(client()), (error: unknown) => {
          assert.ok(error instanceof OrthancInvalidAnswerError, `${what}: ${String(error)}`);
          assert.ok(error instanceof OrthancUnavailableError);
          return true;
        });
      }
    });
  }

  it('takes the extended-find path only when Orthanc says it has it, and reads it from /system', async () => {
    contentType = 'application/json';
    const item = { ID, MainDicomTags: { SOPInstanceUID: '1.2.3' }, Metadata: { SopClassUid: '1.2.840.10008.5.1.4.1.1.7' } };
    body = JSON.stringify([item]);
    systemBody = EXTENDED;
    const extended = client();
    assert.equal(await extended.lookupPath(), 'extended-find');
    // One /tools/find answers with the instance itself; the next round asks only for what is left (nothing).
    assert.deepEqual([...(await extended.lookupInstances(['1.2.3']))], [['1.2.3', { orthancId: ID, sopClassUid: '1.2.840.10008.5.1.4.1.1.7' }]]);
    // The same answer on the classic path is not a list of IDs: a fault, never "not stored".
    systemBody = CLASSIC;
    const classic = client();
    assert.equal(await classic.lookupPath(), 'classic');
    await assert.rejects(classic.lookupInstances(['1.2.3']), OrthancInvalidAnswerError);
    // An Orthanc that answers /system wrongly gives no path, and the lookup fails (the verifier waits).
    systemBody = '<html></html>';
    await assert.rejects(client().lookupInstances(['1.2.3']), OrthancInvalidAnswerError);
    systemBody = undefined;
  });

  it('the MD5 check does not take an HTML page for "intact"', async () => {
    body = WRONG[0]![1];
    contentType = 'text/html';
    await assert.rejects(client().verifyMd5(ID), OrthancInvalidAnswerError);
  });

  it('a modality list with one malformed entry is rejected whole', async () => {
    contentType = 'application/json';
    body = JSON.stringify({ good: { AET: 'CT1', Host: '10.0.0.1', Port: 104 }, bad: { AET: 'MR1', Host: '10.0.0.2' } });
    await assert.rejects(client().modalities(), OrthancInvalidAnswerError);
    body = JSON.stringify({ good: { AET: 'CT1', Host: '10.0.0.1', Port: 104 } });
    assert.deepEqual(await client().modalities(), [{ aeTitle: 'CT1', host: '10.0.0.1', port: 104, tls: false, source: 'orthanc' }]);
  });

  it('bulk-content naming an instance we did not ask about is a fault', async () => {
    body = JSON.stringify([{ ID: 'aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee', MainDicomTags: { SOPInstanceUID: '1.2.3' }, Metadata: { SopClassUid: '1.2' } }]);
    await assert.rejects(client().describeInstances([ID]), OrthancInvalidAnswerError);
  });

  it('logs a warning naming the endpoint and the problem, never the body', () => {
    const lines = logged.map((l) => JSON.parse(l) as { endpoint?: string; problem?: string });
    assert.ok(lines.some((l) => l.endpoint === 'POST /tools/find' && /expected array, received string/.test(l.problem ?? '')), JSON.stringify(lines));
    assert.ok(lines.some((l) => l.endpoint === 'GET /system' && /content-type text\/html/.test(l.problem ?? '')));
    assert.ok(!logged.join('').includes('PHI-MARKER'));
  });

  it('refuses an answer longer than the cap (derived from the batch sizes) instead of buffering it', async () => {
    const cap = maxAnswerBytes(10);
    assert.ok(cap >= 8 * 1024 * 1024 && cap < 64 * 1024 * 1024, `cap ${cap}`);
    contentType = 'application/json';
    body = `[${Array(Math.ceil(cap / 47) + 10).fill(`"${ID}"`).join(',')}]`;
    systemBody = CLASSIC;
    await assert.rejects(client().lookupInstances(['1.2.3']), OrthancInvalidAnswerError);
    systemBody = undefined;
  });
});
