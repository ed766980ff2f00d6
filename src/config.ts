/**
 * Configuration: environment variables, optionally layered over a JSON file (STGCMT_CONFIG_FILE), validated
 * into one typed Config. A wrong value stops the start with one line naming the setting.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import ms from 'ms';
import { z } from 'zod';
import { POLICY_NAMES } from './transactions/verification-policy.js';

/** Durations accept milliseconds as a number, or text such as "30s", "10m", "24h". */
const duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const parsed = typeof value === 'number' ? value : /^\d+$/.test(value.trim()) ? Number(value) : ms(value as ms.StringValue);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 0) {
    ctx.addIssue({ code: 'custom', message: `not a duration: "${String(value)}" (use e.g. 30s, 10m, 24h)` });
    return z.NEVER;
  }
  return parsed;
});
const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');
const aeTitle = z.string().trim().min(1).max(16).regex(/^[\x20-\x5b\x5d-\x7e]+$/, 'AE titles are up to 16 printable characters without backslash');
/** `localhost:8042` parses as a URL of scheme "localhost:" and would only fail at the first request. */
const httpUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}, 'must be an http:// or https:// URL with a host, e.g. http://localhost:8042');
/**
 * The name of this node among several on one database: in every log line, in metrics and in the API. It
 * defaults to the host name, which may not fit: the message then says to set it.
 */
const nodeId = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'use 1 to 64 characters of A-Z, a-z, 0-9, ".", "_" and "-" (the default is the host name: set STGCMT_NODE_ID when it does not fit)');

/** Where several nodes keep their state: a PostgreSQL URL (postgres:// or postgresql://). */
const databaseUrl = z
  .string()
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && url.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be a postgres:// URL with a host, e.g. postgres://stgcmt:secret@db:5432/stgcmt')
  .optional();

/** Every setting: its environment name, schema and default. The README's table mirrors this. */
export const settings = {
  nodeId: { env: 'STGCMT_NODE_ID', schema: nodeId, default: hostname() },
  leaseTtl: { env: 'STGCMT_LEASE_TTL', schema: duration, default: '30s' },
  databaseUrl: { env: 'STGCMT_DATABASE_URL', schema: databaseUrl, default: undefined },
  databaseTimeout: { env: 'STGCMT_DATABASE_TIMEOUT', schema: duration, default: '10s' },
  orthancUrl: { env: 'ORTHANC_URL', schema: httpUrl, default: 'http://localhost:8042' },
  orthancUsername: { env: 'ORTHANC_USERNAME', schema: z.string().optional(), default: undefined },
  orthancPassword: { env: 'ORTHANC_PASSWORD', schema: z.string().optional(), default: undefined },
  orthancTimeout: { env: 'STGCMT_ORTHANC_TIMEOUT', schema: duration, default: '60s' },
  aeTitle: { env: 'STGCMT_AET', schema: aeTitle, default: 'STGCMT' },
  dicomPort: { env: 'STGCMT_DICOM_PORT', schema: port, default: 11112 },
  dicomHost: { env: 'STGCMT_DICOM_HOST', schema: z.string().min(1), default: '0.0.0.0' },
  httpPort: { env: 'STGCMT_HTTP_PORT', schema: port, default: 8080 },
  httpHost: { env: 'STGCMT_HTTP_HOST', schema: z.string().min(1), default: '0.0.0.0' },
  dataDir: { env: 'STGCMT_DATA_DIR', schema: z.string().min(1), default: './data' },
  dbSync: { env: 'STGCMT_DB_SYNC', schema: z.enum(['full', 'normal']), default: 'full' },
  peersFile: { env: 'STGCMT_PEERS_FILE', schema: z.string().optional(), default: undefined },
  peersFromOrthanc: { env: 'STGCMT_PEERS_FROM_ORTHANC', schema: bool, default: true },
  peersRefresh: { env: 'STGCMT_PEERS_REFRESH', schema: duration, default: '60s' },
  checkPeerHost: { env: 'STGCMT_CHECK_PEER_HOST', schema: bool, default: true },
  strictAetComparison: { env: 'STGCMT_STRICT_AET_COMPARISON', schema: bool, default: false },
  verifyPolicy: { env: 'STGCMT_VERIFY', schema: z.enum(POLICY_NAMES), default: 'exists' },
  fetchMaxBytes: { env: 'STGCMT_VERIFY_FETCH_MAX_BYTES', schema: positiveInt, default: 64 * 1024 * 1024 * 1024 },
  fetchMaxTime: { env: 'STGCMT_VERIFY_FETCH_MAX_TIME', schema: duration, default: '30m' },
  arrivalWait: { env: 'STGCMT_ARRIVAL_WAIT', schema: duration, default: '30s' },
  verifyTimeout: { env: 'STGCMT_VERIFY_TIMEOUT', schema: duration, default: '10m' },
  indexBackfill: { env: 'STGCMT_INDEX_BACKFILL', schema: z.coerce.number().int().min(0), default: 100000 },
  lookupBatchSize: { env: 'STGCMT_LOOKUP_BATCH', schema: positiveInt, default: 250 },
  lookupConcurrency: { env: 'STGCMT_LOOKUP_CONCURRENCY', schema: positiveInt, default: 4 },
  reportTtl: { env: 'STGCMT_REPORT_TTL', schema: duration, default: '24h' },
  strictRoleSelection: { env: 'STGCMT_STRICT_ROLE_SELECTION', schema: bool, default: false },
  reportTimeout: { env: 'STGCMT_REPORT_TIMEOUT', schema: duration, default: '30s' },
  retryInitial: { env: 'STGCMT_RETRY_INITIAL', schema: duration, default: '5s' },
  retryMax: { env: 'STGCMT_RETRY_MAX', schema: duration, default: '10m' },
  retryConfigError: { env: 'STGCMT_RETRY_CONFIG_ERROR', schema: duration, default: '5m' },
  retention: { env: 'STGCMT_RETENTION', schema: duration, default: '30d' },
  protect: { env: 'STGCMT_PROTECT', schema: bool, default: false },
  watchInterval: { env: 'STGCMT_WATCH_INTERVAL', schema: duration, default: '60s' },
  watchWindow: { env: 'STGCMT_WATCH_WINDOW', schema: duration, default: '7d' },
  watchSample: { env: 'STGCMT_WATCH_SAMPLE', schema: positiveInt, default: 1000 },
  maxInstances: { env: 'STGCMT_MAX_INSTANCES', schema: positiveInt, default: 200000 },
  maxAssociations: { env: 'STGCMT_MAX_ASSOCIATIONS', schema: positiveInt, default: 64 },
  maxAssociationsPerAe: { env: 'STGCMT_MAX_ASSOCIATIONS_PER_AE', schema: positiveInt, default: 16 },
  maxConnections: { env: 'STGCMT_MAX_CONNECTIONS', schema: positiveInt, default: 128 },
  maxConnectionsPerHost: { env: 'STGCMT_MAX_CONNECTIONS_PER_HOST', schema: positiveInt, default: 32 },
  artimTimeout: { env: 'STGCMT_ARTIM_TIMEOUT', schema: duration, default: '10s' },
  idleTimeout: { env: 'STGCMT_IDLE_TIMEOUT', schema: duration, default: '60s' },
  associationMaxLifetime: { env: 'STGCMT_ASSOCIATION_MAX_LIFETIME', schema: duration, default: '15m' },
  maxBufferedBytes: { env: 'STGCMT_MAX_BUFFERED_BYTES', schema: z.coerce.number().int().min(1024 * 1024), default: 128 * 1024 * 1024 },
  maxInstancesInFlight: { env: 'STGCMT_MAX_INSTANCES_IN_FLIGHT', schema: positiveInt, default: 250000 },
  maxPduLength: { env: 'STGCMT_MAX_PDU', schema: z.coerce.number().int().min(4096).max(16 * 1024 * 1024), default: 262144 },
  dimseTimeout: { env: 'STGCMT_DIMSE_TIMEOUT', schema: duration, default: '60s' },
  logLevel: { env: 'STGCMT_LOG_LEVEL', schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info' },
  showPatientData: { env: 'STGCMT_SHOW_PATIENT_DATA', schema: bool, default: true },
  orthancExplorerUrl: { env: 'STGCMT_ORTHANC_EXPLORER_URL', schema: httpUrl.optional(), default: undefined },
  alertReportAge: { env: 'STGCMT_ALERT_REPORT_AGE', schema: duration, default: '15m' },
  alertDeliverySilence: { env: 'STGCMT_ALERT_DELIVERY_SILENCE', schema: duration, default: '1h' },
  apiToken: { env: 'STGCMT_API_TOKEN', schema: z.string().min(16, 'use at least 16 characters').optional(), default: undefined },
  tlsCert: { env: 'STGCMT_TLS_CERT', schema: z.string().optional(), default: undefined },
  tlsKey: { env: 'STGCMT_TLS_KEY', schema: z.string().optional(), default: undefined },
  tlsCa: { env: 'STGCMT_TLS_CA', schema: z.string().optional(), default: undefined },
  tlsRequireClientCert: { env: 'STGCMT_TLS_REQUIRE_CLIENT_CERT', schema: bool, default: false },
} as const;

type Settings = typeof settings;
export type Config = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export class ConfigError extends Error {}

/** Something the start should say, at warn level, without refusing to start. */
export interface ConfigWarning {
  readonly setting: string;
  readonly message: string;
}

export interface LoadedConfig {
  readonly config: Config;
  /** For the caller to log (this module has no logger). */
  readonly warnings: readonly ConfigWarning[];
}

const CONFIG_FILE = 'STGCMT_CONFIG_FILE';
const knownNames: readonly string[] = [...Object.values(settings).map((s) => s.env), CONFIG_FILE];

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

/** The known name a typo most likely meant: the nearest within a quarter of the longer name's length (at least 2 edits). */
export function nearestName(name: string, known: readonly string[] = knownNames): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = levenshtein(name, candidate);
    if (distance <= Math.max(2, Math.floor(Math.max(name.length, candidate.length) / 4)) && (!best || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}

const didYouMean = (name: string): string => {
  const nearest = nearestName(name);
  return nearest ? `did you mean ${nearest}?` : '';
};

/** A URL as it may be logged: without user and password. */
export function withoutCredentials(value: string): string {
  try {
    const url = new URL(value);
    url.username = '';
    url.password = '';
    // URL adds a "/" to a bare origin; keep the text as the administrator wrote it.
    return value.endsWith('/') || url.pathname !== '/' ? url.href : url.href.replace(/\/$/, '');
  } catch {
    return value;
  }
}

/**
 * Builds the Config from an environment (process.env by default). Precedence: environment, then the JSON
 * file named by STGCMT_CONFIG_FILE (keys are the environment names), then the defaults. A wrong value
 * throws a ConfigError; what is only suspicious (an unknown STGCMT_* name, no API token) comes back as
 * warnings.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const warnings: ConfigWarning[] = [];
  // A misspelt variable would otherwise leave its setting at the default without a word.
  for (const name of Object.keys(env).filter((key) => key.startsWith('STGCMT_') && !knownNames.includes(key)).sort()) {
    const hint = didYouMean(name);
    warnings.push({ setting: name, message: `unknown setting ${name} is ignored${hint ? `: ${hint}` : ''}` });
  }
  let file: Record<string, unknown> = {};
  const filePath = env[CONFIG_FILE];
  if (filePath) {
    try {
      file = JSON.parse(readFileSync(filePath, 'utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(`${CONFIG_FILE}: cannot read ${filePath}: ${(error as Error).message}`);
    }
    const unknown = Object.keys(file).filter((key) => !knownNames.includes(key) || key === CONFIG_FILE);
    if (unknown.length > 0) {
      throw new ConfigError(`${CONFIG_FILE}: unknown setting ${unknown.map((key) => (didYouMean(key) ? `${key} (${didYouMean(key)})` : key)).join(', ')}`);
    }
  }
  const config: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(settings)) {
    const fromEnv = env[setting.env];
    const raw = fromEnv !== undefined && fromEnv !== '' ? fromEnv : (file[setting.env] ?? setting.default);
    const result = (setting.schema as z.ZodType).safeParse(raw);
    if (!result.success) {
      const message = result.error.issues[0]?.message ?? 'invalid value';
      throw new ConfigError(`${setting.env}: ${message} (got ${JSON.stringify(raw)})`);
    }
    config[key] = result.data;
  }
  const typed = config as Config;
  if (Boolean(typed.tlsCert) !== Boolean(typed.tlsKey)) {
    throw new ConfigError('STGCMT_TLS_CERT and STGCMT_TLS_KEY: set both or neither');
  }
  // A share never exceeds its whole, and every association is a connection: lowering one limit alone
  // (say STGCMT_MAX_ASSOCIATIONS=2) must not require touching the others.
  const maxConnections = Math.max(typed.maxConnections, typed.maxAssociations);
  const shares = {
    maxConnections,
    maxConnectionsPerHost: Math.min(typed.maxConnectionsPerHost, maxConnections),
    maxAssociationsPerAe: Math.min(typed.maxAssociationsPerAe, typed.maxAssociations),
  };
  if (typed.retryMax < typed.retryInitial) {
    throw new ConfigError('STGCMT_RETRY_MAX: must not be shorter than STGCMT_RETRY_INITIAL');
  }
  if (typed.leaseTtl < 3000) {
    // Renewed every third of it: shorter than 3 s, a busy event loop or a slow database loses claims.
    throw new ConfigError('STGCMT_LEASE_TTL: use at least 3s');
  }
  if (typed.retryConfigError < 1000) {
    // A refusal repeats at once: a shorter interval only hammers the modality.
    throw new ConfigError('STGCMT_RETRY_CONFIG_ERROR: use at least 1s');
  }
  if (typed.watchInterval !== 0 && typed.watchInterval < 1000) {
    // The watch re-asks Orthanc about committed instances: more often than once a second only loads the PACS.
    throw new ConfigError('STGCMT_WATCH_INTERVAL: use at least 1s, or 0 to stop watching');
  }
  if (!typed.apiToken) {
    warnings.push({ setting: settings.apiToken.env, message: `${settings.apiToken.env} is unset: /api/* and the dashboard answer 503 until it is set (at least 16 characters, e.g. openssl rand -hex 24)` });
  }
  return { config: { ...typed, ...shares }, warnings };
}
