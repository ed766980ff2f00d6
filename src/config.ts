/**
 * Configuration: environment variables, optionally layered over a JSON file (STGCMT_CONFIG_FILE), validated
 * into one typed Config. A wrong value stops the start with one line naming the setting.
 */
import { readFileSync } from 'node:fs';
import ms from 'ms';
import { z } from 'zod';

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

/** Every setting: its environment name, schema and default. The README's table mirrors this. */
export const settings = {
  orthancUrl: { env: 'ORTHANC_URL', schema: z.string().url(), default: 'http://localhost:8042' },
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
  verifyPolicy: { env: 'STGCMT_VERIFY', schema: z.enum(['exists', 'md5']), default: 'exists' },
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
  retention: { env: 'STGCMT_RETENTION', schema: duration, default: '30d' },
  maxInstances: { env: 'STGCMT_MAX_INSTANCES', schema: positiveInt, default: 200000 },
  maxAssociations: { env: 'STGCMT_MAX_ASSOCIATIONS', schema: positiveInt, default: 64 },
  maxPduLength: { env: 'STGCMT_MAX_PDU', schema: z.coerce.number().int().min(4096).max(16 * 1024 * 1024), default: 262144 },
  dimseTimeout: { env: 'STGCMT_DIMSE_TIMEOUT', schema: duration, default: '60s' },
  logLevel: { env: 'STGCMT_LOG_LEVEL', schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info' },
  apiToken: { env: 'STGCMT_API_TOKEN', schema: z.string().min(16, 'use at least 16 characters').optional(), default: undefined },
  tlsCert: { env: 'STGCMT_TLS_CERT', schema: z.string().optional(), default: undefined },
  tlsKey: { env: 'STGCMT_TLS_KEY', schema: z.string().optional(), default: undefined },
  tlsCa: { env: 'STGCMT_TLS_CA', schema: z.string().optional(), default: undefined },
  tlsRequireClientCert: { env: 'STGCMT_TLS_REQUIRE_CLIENT_CERT', schema: bool, default: false },
} as const;

type Settings = typeof settings;
export type Config = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export class ConfigError extends Error {}

/**
 * Builds the Config from an environment (process.env by default). Precedence: environment, then the JSON
 * file named by STGCMT_CONFIG_FILE (keys are the environment names), then the defaults.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  let file: Record<string, unknown> = {};
  const filePath = env['STGCMT_CONFIG_FILE'];
  if (filePath) {
    try {
      file = JSON.parse(readFileSync(filePath, 'utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(`STGCMT_CONFIG_FILE: cannot read ${filePath}: ${(error as Error).message}`);
    }
    const known = new Set<string>(Object.values(settings).map((s) => s.env));
    const unknown = Object.keys(file).filter((key) => !known.has(key));
    if (unknown.length > 0) throw new ConfigError(`STGCMT_CONFIG_FILE: unknown setting ${unknown.join(', ')}`);
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
  if (typed.retryMax < typed.retryInitial) {
    throw new ConfigError('STGCMT_RETRY_MAX: must not be shorter than STGCMT_RETRY_INITIAL');
  }
  return typed;
}
