/**
 * The HTTP API (express): health and readiness for orchestrators, Prometheus metrics, and the transactions
 * API for administrators. It only translates between HTTP and the reads/service; it decides nothing, and
 * touches no table: every read goes through TransactionReads (SQLite or PostgreSQL alike).
 * A transaction is addressed by its calling AE title and Transaction UID, the store's unique key.
 */
import { timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import { z } from 'zod';
import { describeFailureReason, hex16 } from '../commitment/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { CommitmentStrength } from '../orthanc/recycling.js';
import type { Peer } from '../peers/peer-directory.js';
import { TransactionStates } from '../commitment/lifecycle.js';
import type { CommitmentService } from '../transactions/commitment-service.js';
import type { TransactionReads } from '../transactions/reads.js';
import type { InstanceOutcomeFilter, InstanceRecord, SearchFilter, StudyRecord, TransactionRecord } from '../transactions/records.js';
import { DETAIL_INSTANCE_PAGE, MAX_INSTANCE_PAGE, TransactionQueries } from '../transactions/transaction-queries.js';
import { TokenBuckets } from './rate-limit.js';

/** One readiness check: whether it passes, and why (in words for the operator, either way). */
export interface ReadinessCheck {
  readonly ok: boolean;
  readonly reason: string;
}

/** Each check answers at once from what is known (Orthanc is probed in the background): /readyz never waits. */
export interface ReadinessProbe {
  dicomListener(): ReadinessCheck;
  store(): ReadinessCheck;
  orthanc(): ReadinessCheck;
  /**
   * Not a readiness check (the sidecar works either way): whether Orthanc may delete what we report
   * committed, shown beside the checks so that a weaker commitment is seen where readiness is looked at.
   */
  commitment?(): CommitmentStrength;
}

export interface HttpDeps {
  /** STGCMT_NODE_ID: which node answers, in /healthz, /readyz and /api/summary. */
  readonly node: string;
  /** Everything the API and the dashboard read (the rules over them: TransactionQueries, built here). */
  readonly reads: TransactionReads;
  /** The service's side of redelivery: it knows whether a delivery is already in flight. */
  readonly deliveries: Pick<CommitmentService, 'redeliver' | 'deliveryPending' | 'protectionProblem'>;
  readonly metrics: Metrics;
  readonly readiness: ReadinessProbe;
  readonly peers: () => Peer[];
  readonly apiToken: string | undefined;
  readonly dashboard?: DashboardSettings;
  readonly logger: Logger;
}

export interface DashboardSettings {
  /** STGCMT_SHOW_PATIENT_DATA: patient and study of each transaction in the API (off: never fetched). */
  readonly showPatientData: boolean;
  /** Orthanc Explorer as the administrator's browser reaches it (a study link is this + #study?uuid=ID). */
  readonly orthancExplorerUrl: string;
  /** A report not delivered this long after its verdict raises an alert. */
  readonly alertReportAgeMs: number;
  /** A modality with reports waiting and no successful delivery for this long raises an alert. */
  readonly alertDeliverySilenceMs: number;
}

const DEFAULT_DASHBOARD: DashboardSettings = { showPatientData: true, orthancExplorerUrl: 'http://localhost:8042/app/explorer.html', alertReportAgeMs: 15 * 60_000, alertDeliverySilenceMs: 3600_000 };

/** Most rows one CSV export holds (an audit of a month is far less). */
export const MAX_CSV_ROWS = 100_000;

/** Redelivery requests per client and transaction: a burst of this many, then one per REFILL. */
export const REDELIVER_BURST = 5;
export const REDELIVER_REFILL_MS = 6000;
/** What a client asking to redeliver while a delivery is pending is told to wait, in seconds. */
const PENDING_RETRY_AFTER_S = 5;

const uid = z.string().trim().min(1).max(64);
const searchFields = {
  state: z.enum(TransactionStates).optional(),
  callingAet: z.string().max(16).optional(),
  /** The same as callingAet (the short name the search form uses). */
  aet: z.string().max(16).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  transaction: uid.optional(),
  instance: uid.optional(),
  study: uid.optional(),
  patient: z.string().trim().min(1).max(64).optional(),
  accession: z.string().trim().min(1).max(16).optional(),
};
const listQuery = z.object({
  ...searchFields,
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
const csvQuery = z.object(searchFields);
const statsQuery = z.object({ window: z.enum(['24h', '7d']).default('24h') });

function searchFilter(q: z.output<typeof csvQuery>): SearchFilter {
  return {
    state: q.state,
    callingAeTitle: q.callingAet || q.aet || undefined,
    receivedFrom: q.from ? Date.parse(q.from) : undefined,
    receivedTo: q.to ? Date.parse(q.to) : undefined,
    transactionUid: q.transaction,
    sopInstanceUid: q.instance,
    studyInstanceUid: q.study,
    patient: q.patient,
    accessionNumber: q.accession,
  };
}

/**
 * What a transaction's state means for the administrator, in one word each: the five store states do not
 * tell "all committed" from "4 failed", nor a modality that is down from one that refuses our role.
 */
export type Situation =
  | 'verifying'
  | 'waiting-for-arrivals'
  | 'orthanc-unreachable'
  | 'delivering'
  | 'waiting-for-modality'
  | 'modality-unreachable'
  | 'role-refused'
  | 'reported-all-committed'
  | 'reported-with-failures'
  | 'expired';

/** Verifying this long without a verdict means some instances are not in Orthanc yet. */
const VERIFY_GRACE_MS = 2000;

/**
 * `waitingForModality`: its peer cannot be called back (`callback: false`), so an undelivered report waits
 * for the modality to open an association; nothing is being sent, and nobody is unreachable.
 */
export function situationOf(record: TransactionRecord, now: number, orthancOk: boolean, waitingForModality = false): { situation: Situation; since: number | null } {
  if (waitingForModality && (record.state === 'VERIFIED' || record.state === 'DELIVERY_RETRY')) return { situation: 'waiting-for-modality', since: record.verifiedAt };
  switch (record.state) {
    case 'RECEIVED':
      if (!orthancOk) return { situation: 'orthanc-unreachable', since: record.receivedAt };
      return now - record.receivedAt > VERIFY_GRACE_MS && now < record.arrivalDeadline ? { situation: 'waiting-for-arrivals', since: record.receivedAt } : { situation: 'verifying', since: record.receivedAt };
    case 'VERIFIED':
      return { situation: 'delivering', since: record.verifiedAt };
    case 'DELIVERY_RETRY':
      // Since the verdict: no delivery of this report has succeeded since then.
      return { situation: record.lastErrorCategory === 'configuration' ? 'role-refused' : 'modality-unreachable', since: record.verifiedAt };
    case 'REPORTED':
      return { situation: (record.failedCount ?? 0) > 0 ? 'reported-with-failures' : 'reported-all-committed', since: record.reportedAt };
    case 'EXPIRED':
      return { situation: 'expired', since: record.expiredAt };
  }
}

function presentStudy(s: StudyRecord): Record<string, unknown> {
  return {
    studyInstanceUid: s.studyInstanceUid,
    orthancStudyId: s.orthancStudyId,
    patientId: s.patientId,
    patientName: s.patientName,
    studyDate: s.studyDate,
    studyDescription: s.studyDescription,
    accessionNumber: s.accessionNumber,
    modalities: s.modalities,
  };
}

/** One CSV field (RFC 4180), with a leading quote on what a spreadsheet would run as a formula. */
function csvField(value: unknown): string {
  let text = value === null || value === undefined ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

const outcomeFilters = ['all', 'committed', 'failed', 'pending', 'not-committed', 'vanished'] as const satisfies readonly InstanceOutcomeFilter[];
const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
const detailQuery = z.object({ instances: z.enum([...outcomeFilters, 'none']).default('all') });
const instancesQuery = z.object({
  outcome: z.enum(outcomeFilters).default('all'),
  limit: z.coerce.number().int().min(1).max(MAX_INSTANCE_PAGE).default(DETAIL_INSTANCE_PAGE),
  after: z.coerce.number().int().min(0).optional(),
});

/**
 * The query parameters of each GET route that takes any, by its path as docs/openapi.yaml writes it: the
 * routes parse with these schemas, and test/unit/openapi.test.ts holds the description to them.
 */
export const QUERY_SCHEMAS = {
  '/api/transactions': listQuery,
  '/api/transactions.csv': csvQuery,
  '/api/stats': statsQuery,
  '/api/committed-then-deleted': pageQuery,
  '/api/transactions/{callingAet}/{transactionUid}': detailQuery,
  '/api/transactions/{transactionUid}': detailQuery,
  '/api/transactions/{callingAet}/{transactionUid}/instances': instancesQuery,
} as const;

function badQuery(res: Response, error: z.ZodError): void {
  const issue = error.issues[0];
  res.status(400).json({ error: `invalid query parameter ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}` });
}

/** Where a transaction lives in the API: its calling AE and Transaction UID, each one encoded path segment. */
export function transactionPath(record: Pick<TransactionRecord, 'callingAeTitle' | 'transactionUid'>): string {
  return `/api/transactions/${encodeURIComponent(record.callingAeTitle)}/${encodeURIComponent(record.transactionUid)}`;
}

function presentInstance(i: InstanceRecord): Record<string, unknown> {
  return {
    seq: i.seq,
    sopClassUid: i.sopClassUid,
    sopInstanceUid: i.sopInstanceUid,
    outcome: i.outcome ?? 'pending',
    ...(i.failureReason !== null ? { failureReason: i.failureReason, failureReasonHex: hex16(i.failureReason), failureReasonText: describeFailureReason(i.failureReason) } : {}),
    ...(i.storedSopClassUid ? { storedSopClassUid: i.storedSopClassUid } : {}),
    ...(i.vanishedAt ? { vanishedAt: new Date(i.vanishedAt).toISOString() } : {}),
  };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * AE titles of the peers that cannot be called back (`callback: false`): their undelivered reports wait
 * for the modality to open an association, which the API says in words.
 */
type NoCallback = ReadonlySet<string>;

/** Its report is undelivered and its peer cannot be called back: it waits for the modality to connect. */
function awaitsModality(record: TransactionRecord, noCallback: NoCallback): boolean {
  return (record.state === 'VERIFIED' || record.state === 'DELIVERY_RETRY') && noCallback.has(record.callingAeTitle);
}

function presentTransaction(
  record: TransactionRecord,
  noCallback: NoCallback,
  extra?: { situation: { situation: Situation; since: number | null }; studies?: readonly StudyRecord[] | undefined },
): Record<string, unknown> {
  const waitingForModality = awaitsModality(record, noCallback);
  return {
    ...(extra ? { situation: extra.situation.situation, situationSince: iso(extra.situation.since) } : {}),
    ...(extra?.studies ? { studies: extra.studies.map(presentStudy) } : {}),
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
    // With PostgreSQL: the node verifying or delivering it now, and until when its claim runs unless renewed.
    leaseOwner: record.leaseOwner,
    leaseUntil: iso(record.leaseUntil),
    lastError: record.lastError,
    lastErrorCategory: record.lastErrorCategory,
    waitingForModality,
    ...(waitingForModality ? { delivery: 'waiting for the modality to connect: it cannot be called back (callback: false), so the report goes on the next association it opens to us' } : {}),
    protectedAt: iso(record.protectedAt),
    committedThenDeleted: record.vanishedCount,
    watchedAt: iso(record.watchedAt),
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

/**
 * Security headers on every answer. The dashboard loads only its own script (a module file) and stylesheet,
 * and talks only to this server: everything else is refused, and Trusted Types enforce that no string ever
 * becomes markup. No HSTS: TLS, when there is any, belongs to the reverse proxy in front of us.
 */
function securityHeaders(): express.RequestHandler {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        connectSrc: ["'self'"],
        baseUri: ["'none'"],
        formAction: ["'none'"],
        frameAncestors: ["'none'"],
        requireTrustedTypesFor: ["'script'"],
        trustedTypes: ["'none'"],
      },
    },
    strictTransportSecurity: false,
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  });
}

export function createHttpApp(deps: HttpDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(securityHeaders());

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', node: deps.node });
  });

  app.get('/readyz', (_req, res) => {
    const checks = {
      dicomListener: deps.readiness.dicomListener(),
      store: deps.readiness.store(),
      orthanc: deps.readiness.orthanc(),
    };
    const ready = Object.values(checks).every((check) => check.ok);
    const commitment = deps.readiness.commitment?.();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', node: deps.node, checks, ...(commitment ? { commitment } : {}) });
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  // The dashboard is static files (no build step); it calls /api with the token the user types in.
  // Two levels up from both src/http and dist/http is the package root.
  // The charting library, from our own node_modules: hospital networks reach no CDN, and the CSP allows
  // only our own scripts. Two named files, not the package folder.
  const uplotDist = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  app.get('/dashboard/vendor/uPlot.esm.js', (_req, res) => {
    res.type('text/javascript').sendFile(join(uplotDist, 'uPlot.esm.js'));
  });
  app.get('/dashboard/vendor/uPlot.min.css', (_req, res) => {
    res.type('text/css').sendFile(join(uplotDist, 'uPlot.min.css'));
  });
  app.use('/dashboard', express.static(resolve(import.meta.dirname, '..', '..', 'public', 'dashboard'), { index: 'index.html' }));
  app.get('/', (_req, res) => {
    res.redirect('/dashboard/');
  });
  app.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml').sendFile(resolve(import.meta.dirname, '..', '..', 'docs', 'openapi.yaml'));
  });

  const api = express.Router();
  // Transactions concern patients' images: no cache (browser or proxy) keeps a copy, errors included.
  api.use((_req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });
  api.use(requireToken(deps.apiToken));

  const settings = deps.dashboard ?? DEFAULT_DASHBOARD;
  const reads = deps.reads;
  const queries = new TransactionQueries(reads);
  /** Records as the API shows them: with their situation, and their studies unless patient data is off. */
  const noCallbackPeers = (): NoCallback => new Set(deps.peers().filter((peer) => !peer.callback).map((peer) => peer.aeTitle));
  const present = async (records: readonly TransactionRecord[]): Promise<Array<Record<string, unknown>>> => {
    const now = Date.now();
    const orthancOk = deps.readiness.orthanc().ok;
    const studies = settings.showPatientData ? await reads.studiesOf(records.map((r) => r.id)) : undefined;
    const noCallback = noCallbackPeers();
    return records.map((r) => presentTransaction(r, noCallback, { situation: situationOf(r, now, orthancOk, awaitsModality(r, noCallback)), studies: studies ? (studies.get(r.id) ?? []) : undefined }));
  };

  api.get('/transactions', async (req, res) => {
    const parsed = listQuery.safeParse(req.query);
    if (!parsed.success) {
      badQuery(res, parsed.error);
      return;
    }
    const q = parsed.data;
    const { total, items } = await reads.list({ ...searchFilter(q), limit: q.limit, offset: q.offset });
    const shown = await present(items);
    if (q.instance) {
      // Which transactions asked for this image, and what each answered for it.
      const outcomes = await reads.instanceOutcomesByUid(
        items.map((r) => r.id),
        q.instance,
      );
      items.forEach((r, i) => (shown[i]!['matchedInstances'] = (outcomes.get(r.id) ?? []).map(presentInstance)));
    }
    res.json({ total, limit: q.limit, offset: q.offset, items: shown });
  });

  // The same rows as a file for an audit: one line per transaction (and per study when there are several).
  // Read a page at a time (records and studies of one page in memory, not of 100,000); the answer is sent
  // whole, as before, so that its headers (length, ETag, X-Total-Rows) stay what they were.
  api.get('/transactions.csv', async (req, res) => {
    const parsed = csvQuery.safeParse(req.query);
    if (!parsed.success) {
      badQuery(res, parsed.error);
      return;
    }
    const header = ['receivedAt', 'callingAet', 'transactionUid', 'state', 'situation', 'instances', 'committed', 'failed', 'deliveryAttempts', 'verifiedAt', 'reportedAt', 'expiredAt', 'lastError'];
    const studyHeader = settings.showPatientData ? ['patientId', 'patientName', 'studyInstanceUid', 'studyDate', 'studyDescription', 'accessionNumber', 'modalities'] : [];
    const lines = [[...header, ...studyHeader].join(',')];
    const now = Date.now();
    const orthancOk = deps.readiness.orthanc().ok;
    const noCallback = noCallbackPeers();
    let rows = 0;
    for await (const records of reads.exportPages(searchFilter(parsed.data), MAX_CSV_ROWS)) {
      rows += records.length;
      const studies = settings.showPatientData ? await reads.studiesOf(records.map((r) => r.id)) : undefined;
      for (const r of records) {
        const base = [iso(r.receivedAt), r.callingAeTitle, r.transactionUid, r.state, situationOf(r, now, orthancOk, awaitsModality(r, noCallback)).situation, r.instanceCount, r.committedCount, r.failedCount, r.deliveryAttempts, iso(r.verifiedAt), iso(r.reportedAt), iso(r.expiredAt), r.lastError];
        const own = studies?.get(r.id) ?? [];
        if (!studies) lines.push(base.map(csvField).join(','));
        else if (own.length === 0) lines.push([...base, ...studyHeader.map(() => null)].map(csvField).join(','));
        else for (const st of own) lines.push([...base, st.patientId, st.patientName, st.studyInstanceUid, st.studyDate, st.studyDescription, st.accessionNumber, st.modalities].map(csvField).join(','));
      }
    }
    const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
    res
      .type('text/csv; charset=utf-8')
      .set('Content-Disposition', `attachment; filename="stgcmt-transactions-${stamp}.csv"`)
      .set('X-Total-Rows', String(rows))
      .send(`${lines.join('\r\n')}\r\n`);
  });

  // History for the charts: per hour over 24 h or 7 days, failures by reason, reports waiting per modality.
  api.get('/stats', async (req, res) => {
    const parsed = statsQuery.safeParse(req.query);
    if (!parsed.success) {
      badQuery(res, parsed.error);
      return;
    }
    const hours = parsed.data.window === '7d' ? 7 * 24 : 24;
    const now = Date.now();
    const since = Math.floor(now / 3600_000) * 3600_000 - (hours - 1) * 3600_000;
    const [hourly, failures, pending] = await Promise.all([reads.hourlyActivity(since), reads.failuresByReason(since), reads.pendingByModality()]);
    const activity = new Map(hourly.map((h) => [h.hourStart, h]));
    const percentile = (sorted: number[], p: number): number | null => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);
    const buckets = Array.from({ length: hours }, (_, i) => {
      const hourStart = since + i * 3600_000;
      const h = activity.get(hourStart);
      const latencies = (h?.reportLatenciesMs ?? []).sort((a, b) => a - b);
      return {
        hourStart: new Date(hourStart).toISOString(),
        transactions: h?.transactions ?? 0,
        withFailures: h?.withFailures ?? 0,
        instances: h?.instances ?? 0,
        failedInstances: h?.failedInstances ?? 0,
        reportLatencyP50Ms: percentile(latencies, 50),
        reportLatencyP99Ms: percentile(latencies, 99),
      };
    });
    res.json({
      window: parsed.data.window,
      since: new Date(since).toISOString(),
      hours: buckets,
      failuresByReason: failures.map((f) => ({ failureReason: f.failureReason, failureReasonHex: hex16(f.failureReason), failureReasonText: describeFailureReason(f.failureReason), count: f.count })),
      pendingByModality: pending.map((p) => ({ callingAet: p.callingAeTitle, pending: p.pending, oldestVerifiedAt: iso(p.oldestVerifiedAt), lastDeliveredAt: iso(p.lastDeliveredAt) })),
    });
  });


  api.get('/summary', async (_req, res) => {
    const now = Date.now();
    // To the minute: an unchanged summary keeps its ETag, and the dashboard's refresh gets a 304.
    const since = Math.floor(now / 60_000) * 60_000 - 24 * 3600 * 1000;
    const [countsByState, vanished, alerts] = await Promise.all([reads.countsByState(since), reads.vanishedInstances({ limit: 0, offset: 0 }), alertsNow(now)]);
    res.json({
      node: deps.node,
      since: new Date(since).toISOString(),
      countsByState,
      committedThenDeleted: vanished.total,
      peers: deps.peers().map(({ aeTitle, host, port, tls, callback, source }) => ({ aeTitle, host, port, tls, callback, source })),
      alerts,
      dashboard: { showPatientData: settings.showPatientData, orthancExplorerUrl: settings.orthancExplorerUrl, alertReportAgeMs: settings.alertReportAgeMs, alertDeliverySilenceMs: settings.alertDeliverySilenceMs },
    });
  });

  // Instances reported committed that later disappeared from Orthanc, newest first: the PACS administrator's alarm list.
  api.get('/committed-then-deleted', async (req, res) => {
    const parsed = pageQuery.safeParse(req.query);
    if (!parsed.success) {
      badQuery(res, parsed.error);
      return;
    }
    const { limit, offset } = parsed.data;
    const { total, items } = await reads.vanishedInstances({ limit, offset });
    res.json({
      total,
      limit,
      offset,
      items: items.map((v) => ({
        callingAet: v.callingAeTitle,
        transactionUid: v.transactionUid,
        url: transactionPath(v),
        reportedAt: v.reportedAt === null ? null : new Date(v.reportedAt).toISOString(),
        seq: v.seq,
        sopClassUid: v.sopClassUid,
        sopInstanceUid: v.sopInstanceUid,
        vanishedAt: new Date(v.vanishedAt).toISOString(),
      })),
    });
  });

  /** What an administrator must see before a modality's disk fills up: reports waiting, silent modalities, health. */
  const alertsNow = async (now: number): Promise<Array<{ kind: string; text: string; since: string | null; callingAet?: string }>> => {
    const alerts: Array<{ kind: string; text: string; since: string | null; callingAet?: string }> = [];
    const orthanc = deps.readiness.orthanc();
    if (!orthanc.ok) alerts.push({ kind: 'orthanc-unhealthy', text: `Orthanc is unreachable: ${orthanc.reason}`, since: null });
    const store = deps.readiness.store();
    if (!store.ok) alerts.push({ kind: 'store-unhealthy', text: `The store is unhealthy: ${store.reason}`, since: null });
    for (const p of await reads.pendingByModality()) {
      if (p.oldestVerifiedAt !== null && now - p.oldestVerifiedAt > settings.alertReportAgeMs) {
        alerts.push({ kind: 'report-overdue', callingAet: p.callingAeTitle, since: iso(p.oldestVerifiedAt), text: `${p.pending} report(s) to ${p.callingAeTitle} not delivered; the oldest has waited since ${iso(p.oldestVerifiedAt)}` });
      }
      // No success ever: silent since its oldest waiting report.
      const silentSince = p.lastDeliveredAt ?? p.oldestVerifiedAt;
      if (silentSince !== null && now - silentSince > settings.alertDeliverySilenceMs) {
        alerts.push({ kind: 'modality-silent', callingAet: p.callingAeTitle, since: iso(silentSince), text: `No successful delivery to ${p.callingAeTitle} since ${iso(silentSince)}, with ${p.pending} report(s) waiting` });
      }
    }
    return alerts;
  };

  /**
   * The transaction a request names: /transactions/{callingAet}/{transactionUid}, or the older
   * /transactions/{transactionUid} while only one calling AE used that UID (409 with the choices otherwise).
   * Answers 404/409 itself and returns undefined then.
   */
  const transactionOf = async (req: Request, res: Response): Promise<TransactionRecord | undefined> => {
    const params = req.params as Record<string, string | undefined>;
    const uid = params['transactionUid'] ?? '';
    if (params['callingAet'] !== undefined) {
      const record = await queries.byKey(params['callingAet'], uid);
      if (!record) res.status(404).json({ error: 'no such transaction' });
      return record;
    }
    const lookup = await queries.byUid(uid);
    if (lookup.kind === 'found') return lookup.record;
    if (lookup.kind === 'none') {
      res.status(404).json({ error: 'no such transaction' });
      return undefined;
    }
    res.status(409).json({
      error: `Transaction UID ${uid} was used by ${lookup.matches.length} calling AEs: name the AE, as in /api/transactions/{callingAet}/{transactionUid}`,
      matches: lookup.matches.map((m) => ({ callingAet: m.callingAeTitle, transactionUid: m.transactionUid, url: transactionPath(m), redeliverUrl: `${transactionPath(m)}/redeliver` })),
    });
    return undefined;
  };

  // A 200,000-instance transaction is 200,000 rows: the detail carries the counts and the first page only,
  // the rest comes page by page (keyset on seq), so no request holds the event loop for long.
  const detail = async (req: Request, res: Response): Promise<void> => {
    const parsed = detailQuery.safeParse(req.query);
    if (!parsed.success) {
      res.status(400).json({ error: `invalid query parameter instances: use one of ${[...outcomeFilters, 'none'].join(', ')}` });
      return;
    }
    const record = await transactionOf(req, res);
    if (!record) return;
    const counts = await queries.instanceCounts(record);
    const filter = parsed.data.instances;
    const page = filter === 'none' ? undefined : await queries.instancePage(record, filter, -1, DETAIL_INSTANCE_PAGE, counts);
    const attempts = (await reads.deliveryAttempts(record.id)).map((a) => ({ ...a, at: new Date(a.at).toISOString() }));
    const protection = await deps.deliveries.protectionProblem(record.id);
    const [shown] = await present([record]);
    const deliveryPending = await deps.deliveries.deliveryPending(record.id);
    res.json({
      ...shown,
      explorerUrl: settings.showPatientData ? settings.orthancExplorerUrl : undefined,
      deliveryPending,
      // STGCMT_PROTECT: the report waits until what it commits is protected in Orthanc; this says why it still waits.
      ...(protection
        ? { protectionError: { error: protection.error, at: new Date(protection.at).toISOString(), retryAt: protection.retryAt === undefined ? null : new Date(protection.retryAt).toISOString() } }
        : {}),
      instanceCounts: counts,
      ...(page ? { instanceOutcomes: page.items.map(presentInstance), instancesNextAfter: page.nextAfter } : {}),
      deliveryAttemptLog: attempts,
    });
  };

  const redeliverLimit = new TokenBuckets({ capacity: REDELIVER_BURST, refillMs: REDELIVER_REFILL_MS });
  const redeliver = async (req: Request, res: Response): Promise<void> => {
    const record = await transactionOf(req, res);
    if (!record) return;
    const waitMs = redeliverLimit.take(`${req.ip ?? ''}|${record.id}`);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      res.status(429).set('Retry-After', String(seconds)).json({ error: `too many redelivery requests for this transaction; retry in ${seconds} s` });
      return;
    }
    const outcome = await deps.deliveries.redeliver(record.id);
    switch (outcome.kind) {
      case 'unknown':
        res.status(404).json({ error: 'no such transaction' });
        return;
      case 'verifying':
        res.status(409).json({ error: 'transaction is still being verified; its report will follow' });
        return;
      case 'pending':
        // Idempotent: the delivery the client wants is already on its way; no second one is started.
        res.status(202).set('Retry-After', String(PENDING_RETRY_AFTER_S)).json({ ...(await present([outcome.record]))[0], redelivery: 'already-pending' });
        return;
      case 'started':
        deps.logger.info({ transactionUid: record.transactionUid, callingAet: record.callingAeTitle }, 'redelivery requested through the API');
        res.status(202).json({ ...(await present([outcome.record]))[0], redelivery: 'started' });
    }
  };

  api.get('/transactions/:callingAet/:transactionUid/instances', async (req, res) => {
    const parsed = instancesQuery.safeParse(req.query);
    if (!parsed.success) {
      badQuery(res, parsed.error);
      return;
    }
    const record = await transactionOf(req, res);
    if (!record) return;
    const q = parsed.data;
    const page = await queries.instancePage(record, q.outcome, q.after ?? -1, q.limit);
    res.json({ outcome: q.outcome, limit: q.limit, after: q.after ?? null, items: page.items.map(presentInstance), nextAfter: page.nextAfter });
  });
  api.post('/transactions/:callingAet/:transactionUid/redeliver', redeliver);
  api.get('/transactions/:callingAet/:transactionUid', detail);
  // By Transaction UID alone (the first API): kept for callers that know no AE, while unambiguous.
  api.get('/transactions/:transactionUid', detail);
  api.post('/transactions/:transactionUid/redeliver', redeliver);

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
