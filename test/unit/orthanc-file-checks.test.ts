/**
 * The size and fetch checks of OrthancClient against a stub HTTP server on 127.0.0.1, for what a real
 * Orthanc cannot be made to answer on demand: a proxy's HTML page, a transfer that breaks off, a chunked
 * answer, a budget running out mid-file. (What the real Orthanc 1.10.1 answers for damaged files is in
 * test/integration/verification-policies.test.ts.) A fault must throw, never pass for evidence.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { OrthancClient, OrthancInvalidAnswerError, OrthancUnavailableError } from '../../src/orthanc/client.js';
import { ReadBudget } from '../../src/transactions/verification-policy.js';

const ID = 'f5daaa1d-d3978424-ddc13c0d-57c56812-d807a699';
const RECORDED = 4096;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('OrthancClient size and fetch checks', () => {
  let server: Server;
  let url = '';
  let info: Handler;
  let data: Handler;
  const dataRequests: number[] = [];
  const client = (): OrthancClient => new OrthancClient({ baseUrl: url, timeoutMs: 2000, batchSize: 10, concurrency: 2 });
  const budget = (maxBytes = 1e9, maxMs = 60_000): ReadBudget => new ReadBudget({ maxBytes, maxMs });
  const file = (res: ServerResponse, length: number, headers: Record<string, string> = {}): void => {
    res.writeHead(200, { 'content-type': 'application/dicom', 'content-length': String(length), ...headers });
    res.end(Buffer.alloc(length, 7));
  };

  before(async () => {
    server = createServer((req, res) => {
      if (req.url?.endsWith('/attachments/dicom/info')) info(req, res);
      else if (req.url?.endsWith('/attachments/dicom/data')) {
        dataRequests.push(Date.now());
        data(req, res);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });

  beforeEach(() => {
    dataRequests.length = 0;
    info = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ UncompressedSize: RECORDED, CompressedSize: RECORDED, Uuid: 'x' }));
    };
    data = (_req, res) => file(res, RECORDED);
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('the recorded size arriving is ok for both', async () => {
    assert.equal(await client().checkStoredSize(ID), 'ok');
    assert.equal(await client().fetchStoredFile(ID, budget()), 'ok');
  });

  it('a shorter or longer file is corrupt; so is a 500 or 404 (Orthanc could not read it) and an attachment gone from the index', async () => {
    for (const length of [100, RECORDED + 1]) {
      data = (_req, res) => file(res, length);
      assert.equal(await client().checkStoredSize(ID), 'corrupt', `size, ${length} bytes`);
      assert.equal(await client().fetchStoredFile(ID, budget()), 'corrupt', `fetch, ${length} bytes`);
    }
    for (const status of [500, 404]) {
      data = (_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end('{"Message":"The specified path does not point to a regular file"}');
      };
      assert.equal(await client().checkStoredSize(ID), 'corrupt', `size, HTTP ${status}`);
      assert.equal(await client().fetchStoredFile(ID, budget()), 'corrupt', `fetch, HTTP ${status}`);
    }
    info = (_req, res) => {
      res.writeHead(404);
      res.end();
    };
    assert.equal(await client().fetchStoredFile(ID, budget()), 'corrupt');
  });

  it('size takes the announced length of a large file without its body; a chunked answer is counted instead', async () => {
    assert.equal(await client().checkStoredSize(ID), 'ok');
    const large = 32 * 1024 * 1024;
    info = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ UncompressedSize: large }));
    };
    let sent = 0;
    data = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/dicom', 'content-length': String(large) });
      // Written in 64 KiB pieces, as long as the client takes them: it stops taking at once.
      const piece = Buffer.alloc(64 * 1024);
      const more = (): void => {
        while (sent < large) {
          sent += piece.length;
          if (!res.write(piece)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('error', () => undefined);
      more();
    };
    assert.equal(await client().checkStoredSize(ID), 'ok', 'large file, announced length');
    assert.ok(sent < large, `only ${sent} of ${large} bytes left the server: the body was not read`);
    beforeEachInfo();
    data = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/dicom' });
      res.write(Buffer.alloc(1000));
      res.end(Buffer.alloc(RECORDED - 1000));
    };
    assert.equal(await client().checkStoredSize(ID), 'ok', 'chunked, whole');
    data = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/dicom' });
      res.end(Buffer.alloc(10));
    };
    assert.equal(await client().checkStoredSize(ID), 'corrupt', 'chunked, short');
  });

  it('faults throw: a page instead of a file, a wrong info answer, a transfer broken off, an HTTP error that says nothing about the file', async () => {
    data = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': String(RECORDED) });
      res.end(Buffer.alloc(RECORDED));
    };
    await assert.rejects(client().checkStoredSize(ID), OrthancInvalidAnswerError);
    await assert.rejects(client().fetchStoredFile(ID, budget()), OrthancInvalidAnswerError);

    data = (_req, res) => file(res, RECORDED);
    info = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"Size":"big"}');
    };
    await assert.rejects(client().fetchStoredFile(ID, budget()), OrthancInvalidAnswerError);
    await assert.rejects(client().checkStoredSize(ID), OrthancInvalidAnswerError);

    beforeEachInfo();
    data = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/dicom', 'content-length': String(RECORDED) });
      res.write(Buffer.alloc(100), () => res.destroy());
    };
    await assert.rejects(client().fetchStoredFile(ID, budget()), (error: unknown) => error instanceof OrthancUnavailableError && /broke off after 100 bytes/.test(error.message));

    data = (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>bad gateway</html>');
    };
    await assert.rejects(client().fetchStoredFile(ID, budget()), (error: unknown) => error instanceof OrthancUnavailableError && error.status === 502);
    await assert.rejects(client().checkStoredSize(ID), (error: unknown) => error instanceof OrthancUnavailableError && error.status === 502);
  });

  it('fetch: once the round\'s budget is spent, the rest is unverifiable, never read or committed', async () => {
    const small = budget(RECORDED + 10);
    const found = await client().fetchStoredFileMany([ID, ID.replace('f5', 'a5'), ID.replace('f5', 'b5')], small);
    // Two reads in flight at once (concurrency 2): the second one crosses the limit mid-file.
    assert.deepEqual([...found.values()].sort(), ['ok', 'unverifiable', 'unverifiable']);
    assert.ok(dataRequests.length <= 2, `${dataRequests.length} reads started; none once the budget was spent`);
    small.end();

    // Time: a file that stalls is abandoned when the round's time is up.
    data = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/dicom', 'content-length': String(RECORDED) });
      res.write(Buffer.alloc(10));
    };
    const short = budget(1e9, 200);
    const started = Date.now();
    assert.equal(await client().fetchStoredFile(ID, short), 'unverifiable');
    assert.ok(Date.now() - started < 1500, 'stopped at the deadline, not at the REST timeout');
    short.end();
  });

  function beforeEachInfo(): void {
    info = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ UncompressedSize: RECORDED }));
    };
  }
});
