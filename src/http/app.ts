/**
 * The HTTP API (express): health and readiness for orchestrators, Prometheus metrics, and the transactions
 * API for administrators. It only translates between HTTP and the store/service; it decides nothing.
 */
import { timingSafeEqual } from 'node:crypto';
import { resolve } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { describeFailureReason, hex16 } from '../commitment/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Peer } from '../peers/peer-directory.js';
import { TransactionStates } from '../store/states.js';
import type { TransactionRecord, TransactionStore } from '../store/transaction-store.js';

export interface ReadinessProbe {
  dicomListening(): boolean;
  storeOpen(): boolean;
  orthancReachable(): Promise<boolean>;
}

export interface HttpDeps {
  readonly store: TransactionStore;
  readonly metrics: Metrics;
  readonly readiness: ReadinessProbe;
  readonly peers: () => Peer[];
  readonly redeliver: (id: number) => boolean;
  readonly apiToken: string | undefined;
  readonly logger: Logger;
}

const listQuery = z.object({
  state: z.enum(TransactionStates).optional(),
  callingAet: z.string().max(16).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});

const detailQuery = z.object({ instances: z.enum(['all', 'not-committed']).default('all') });

function presentTransaction(record: TransactionRecord): Record<string, unknown> {
  const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
  return {
    transactionUid: record.transactionUid,
    callingAet: record.callingAeTitle,
    calledAet: record.calledAeTitle,
    remoteAddress: record.remoteAddress,
    state: record.state,
    instances: record.instanceCount,
    committed: record.committedCount,
    failed: record.failedCount,
    eventTypeId: record.eventTypeId,
    receivedAt: iso(record.receivedAt),
    verifiedAt: iso(record.verifiedAt),
    reportedAt: iso(record.reportedAt),
    expiredAt: iso(record.expiredAt),
    expiresAt: iso(record.expiresAt),
    deliveryAttempts: record.deliveryAttempts,
    nextAttemptAt: iso(record.nextAttemptAt),
    lastError: record.lastError,
  };
}

/** Constant-time bearer token check; without a configured token the API is closed, not open. */
function requireToken(token: string | undefined) {
  const expected = token ? Buffer.from(token) : undefined;
  return (req: Request, res: Response, next: NextFunction): void => {
    const header = req.get('authorization') ?? '';
    const match = /^Bearer (.+)$/i.exec(header);
    const given = match?.[1] ? Buffer.from(match[1]) : undefined;
    if (!expected) {
      res.status(503).json({ error: 'API disabled: set STGCMT_API_TOKEN' });
      return;
    }
    if (!given || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.status(401).set('WWW-Authenticate', 'Bearer').json({ error: 'missing or wrong bearer token' });
      return;
    }
    next();
  };
}

export function createHttpApp(deps: HttpDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks = {
      dicomListener: deps.readiness.dicomListening(),
      store: deps.readiness.storeOpen(),
      orthanc: await deps.readiness.orthancReachable(),
    };
    const ready = Object.values(checks).every(Boolean);
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  // The dashboard is static files (no build step); it calls /api with the token the user types in.
  // Two levels up from both src/http and dist/http is the package root.
  app.use('/dashboard', express.static(resolve(import.meta.dirname, '..', '..', 'public', 'dashboard'), { index: 'index.html' }));
  app.get('/', (_req, res) => {
    res.redirect('/dashboard/');
  });
  app.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml').sendFile(resolve(import.meta.dirname, '..', '..', 'docs', 'openapi.yaml'));
  });

  const api = express.Router();
  api.use(requireToken(deps.apiToken));

  api.get('/transactions', (req, res) => {
    const parsed = listQuery.safeParse(req.query);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      res.status(400).json({ error: `invalid query parameter ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}` });
      return;
    }
    const q = parsed.data;
    const { total, items } = deps.store.list({
      state: q.state,
      callingAeTitle: q.callingAet,
      receivedFrom: q.from ? Date.parse(q.from) : undefined,
      receivedTo: q.to ? Date.parse(q.to) : undefined,
      limit: q.limit,
      offset: q.offset,
    });
    res.json({ total, limit: q.limit, offset: q.offset, items: items.map(presentTransaction) });
  });

  api.get('/summary', (_req, res) => {
    const since = Date.now() - 24 * 3600 * 1000;
    res.json({ since: new Date(since).toISOString(), countsByState: deps.store.countsByState(since), peers: deps.peers().map(({ aeTitle, host, port, tls, source }) => ({ aeTitle, host, port, tls, source })) });
  });

  api.get('/transactions/:uid', (req, res) => {
    const parsed = detailQuery.safeParse(req.query);
    if (!parsed.success) {
      res.status(400).json({ error: 'invalid query parameter instances: use all or not-committed' });
      return;
    }
    const record = deps.store.findByUid(req.params['uid'] ?? '');
    if (!record) {
      res.status(404).json({ error: 'no such transaction' });
      return;
    }
    // A 100,000-instance transaction is 100,000 rows: a dashboard refreshing every few seconds wants only
    // the instances that need attention.
    const instances = deps.store.instances(record.id, { notCommitted: parsed.data.instances === 'not-committed' }).map((i) => ({
      sopClassUid: i.sopClassUid,
      sopInstanceUid: i.sopInstanceUid,
      outcome: i.outcome ?? 'pending',
      ...(i.failureReason !== null ? { failureReason: i.failureReason, failureReasonHex: hex16(i.failureReason), failureReasonText: describeFailureReason(i.failureReason) } : {}),
      ...(i.storedSopClassUid ? { storedSopClassUid: i.storedSopClassUid } : {}),
    }));
    const attempts = deps.store.deliveryAttempts(record.id).map((a) => ({ ...a, at: new Date(a.at).toISOString() }));
    res.json({ ...presentTransaction(record), instanceOutcomes: instances, deliveryAttemptLog: attempts });
  });

  api.post('/transactions/:uid/redeliver', (req, res) => {
    const record = deps.store.findByUid(req.params['uid'] ?? '');
    if (!record) {
      res.status(404).json({ error: 'no such transaction' });
      return;
    }
    if (record.state === 'RECEIVED') {
      res.status(409).json({ error: 'transaction is still being verified; its report will follow' });
      return;
    }
    deps.redeliver(record.id);
    deps.logger.info({ transactionUid: record.transactionUid }, 'redelivery requested through the API');
    res.status(202).json(presentTransaction(deps.store.get(record.id) ?? record));
  });

  app.use('/api', api);

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  // Express needs the four-argument signature to treat this as the error handler.
  app.use((error: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = error.status && error.status >= 400 && error.status < 500 ? error.status : 500;
    if (status === 500) deps.logger.error({ err: error }, 'HTTP handler failed');
    res.status(status).json({ error: status === 500 ? 'internal error' : error.message });
  });
  return app;
}
