/**
 * A tiny HTTP proxy (node:http, 127.0.0.1) in front of a real Orthanc: it forwards every request, but can
 * be told to answer a given endpoint itself with a 200 and a wrong body (HTML, `{}`, `[1,2]`, truncated
 * JSON...), or to hold its requests without ever answering (a hung Orthanc). The sidecar's ORTHANC_URL
 * points here, so what it gets is exactly what a confused reverse proxy or a broken Orthanc would send.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** What to answer instead of Orthanc: bodies served in turn (each with a 200), or no answer at all. */
export type Fault = { readonly kind: 'bodies'; readonly bodies: readonly WrongBody[] } | { readonly kind: 'hang' };

export interface WrongBody {
  readonly body: string;
  readonly contentType: string;
}

/** The wrong answers a test cycles through: none of them is a valid Orthanc answer to a lookup. */
export const WRONG_BODIES = {
  html: { body: '<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1><p>PHI-MARKER-DOE^JANE</p></body></html>', contentType: 'text/html' },
  emptyObject: { body: '{}', contentType: 'application/json' },
  numbers: { body: '[1,2]', contentType: 'application/json' },
  truncated: { body: '[ "f5daaa1d-d3978424-ddc13c0d-57c56812-d8', contentType: 'application/json' },
} as const satisfies Record<string, WrongBody>;

export interface OrthancProxy {
  readonly url: string;
  readonly port: number;
  /** Answer `METHOD /path` (the path without its query string) with the fault from now on. */
  fault(endpoint: string, fault: Fault): void;
  /** Forward `endpoint` (or everything) to Orthanc again; requests held so far are answered 503. */
  clear(endpoint?: string): void;
  /** How many requests to `endpoint` the proxy answered itself (or held), per body index for 'bodies'. */
  served(endpoint: string): number[];
  close(): Promise<void>;
}

export async function startOrthancProxy(target: string): Promise<OrthancProxy> {
  const upstream = new URL(target);
  const faults = new Map<string, Fault>();
  const counts = new Map<string, number[]>();
  const held = new Map<string, Array<() => void>>();
  const sockets = new Set<Socket>();

  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const outgoing = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    outgoing.on('error', () => res.destroy());
    req.pipe(outgoing);
  };

  const server: Server = createServer((req, res) => {
    const endpoint = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
    const fault = faults.get(endpoint);
    if (!fault) return forward(req, res);
    const count = counts.get(endpoint) ?? [];
    counts.set(endpoint, count);
    if (fault.kind === 'hang') {
      count[0] = (count[0] ?? 0) + 1;
      // Read the request, answer nothing; released to Orthanc when the fault is cleared.
      req.resume();
      const queue = held.get(endpoint) ?? [];
      held.set(endpoint, queue);
      queue.push(() => {
        if (!res.destroyed) {
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end('released');
        }
      });
      return;
    }
    const served = count.reduce((sum, n) => sum + (n ?? 0), 0);
    const index = served % fault.bodies.length;
    count[index] = (count[index] ?? 0) + 1;
    const wrong = fault.bodies[index]!;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': wrong.contentType, 'content-length': Buffer.byteLength(wrong.body) });
      res.end(wrong.body);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const release = (endpoint: string): void => {
    for (const answer of held.get(endpoint) ?? []) answer();
    held.delete(endpoint);
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    fault(endpoint, fault) {
      faults.set(endpoint, fault);
      counts.set(endpoint, []);
    },
    clear(endpoint) {
      const endpoints = endpoint ? [endpoint] : [...faults.keys()];
      for (const e of endpoints) {
        faults.delete(e);
        release(e);
      }
    },
    served(endpoint) {
      return [...(counts.get(endpoint) ?? [])].map((n) => n ?? 0);
    },
    async close() {
      for (const e of [...held.keys()]) release(e);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
