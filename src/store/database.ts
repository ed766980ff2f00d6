/**
 * Which database holds the transactions: PostgreSQL when STGCMT_DATABASE_URL is set (several nodes share
 * it), else the embedded SQLite store in the data directory (one node). Either way the rest of the sidecar
 * sees a TransactionRepository, and readiness sees one check that answers at once.
 */
import type { Logger } from 'pino';
import type { TransactionReads } from '../transactions/reads.js';
import type { TransactionRepository } from '../transactions/repository.js';
import { EXIT_STORE_UNUSABLE, StoreStartError } from './errors.js';
import { PostgresTransactionRepository } from './postgres/repository.js';
import { SqliteTransactionReads } from './sqlite-reads.js';
import { SqliteTransactionRepository } from './sqlite-repository.js';
import { StoreWatch } from './store-watch.js';
import { TransactionStore } from './transaction-store.js';

/** SQLite: a tiny write every 5 s. PostgreSQL: a round trip every 2 s. */
const SQLITE_PROBE_EVERY_MS = 5000;
const POSTGRES_PROBE_EVERY_MS = 2000;
/** How long the start waits for PostgreSQL before giving up (the supervisor then restarts the node). */
const POSTGRES_START_WAIT_MS = 60_000;

export interface DatabaseSettings {
  readonly databaseUrl: string | undefined;
  readonly databaseTimeout: number;
  readonly dbSync: 'full' | 'normal';
  readonly nodeId: string;
}

export interface Database {
  readonly repository: TransactionRepository;
  /** What the HTTP API and the dashboard read (the same data, through queries, never tables). */
  readonly reads: TransactionReads;
  /** For /readyz: answers at once from the last probe. */
  health(): { readonly ok: boolean; readonly reason: string };
  /** 'sqlite <path>' or 'postgres <host:port/db>' (never the password), for the start log line. */
  readonly description: string;
  close(): Promise<void>;
}

export async function openDatabase(settings: DatabaseSettings, dataDir: string, logger: Logger): Promise<Database> {
  if (!settings.databaseUrl) {
    const store = TransactionStore.open(dataDir, { synchronous: settings.dbSync });
    const watch = new StoreWatch(store, logger, SQLITE_PROBE_EVERY_MS);
    watch.start();
    return {
      repository: new SqliteTransactionRepository(store),
      reads: new SqliteTransactionReads(store),
      health: () => store.health(),
      description: `sqlite ${store.path}`,
      async close() {
        await watch.stop();
        store.close();
      },
    };
  }
  const url = new URL(settings.databaseUrl);
  const where = `${url.hostname}:${url.port || '5432'}${url.pathname}`;
  const repository = await openPostgres(settings, where, logger);
  const probe = new HealthProbe(repository, logger, POSTGRES_PROBE_EVERY_MS);
  await probe.check();
  probe.start();
  return {
    repository,
    reads: repository.reads(),
    health: () => probe.last,
    description: `postgres ${where}`,
    async close() {
      probe.stop();
      await repository.close();
    },
  };
}

/** Connects and migrates, trying again for a while: PostgreSQL may start after us (a compose stack). */
async function openPostgres(settings: DatabaseSettings, where: string, logger: Logger): Promise<PostgresTransactionRepository> {
  const deadline = Date.now() + POSTGRES_START_WAIT_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await PostgresTransactionRepository.open({
        url: settings.databaseUrl!,
        nodeId: settings.nodeId,
        statementTimeoutMs: settings.databaseTimeout,
        connectionTimeoutMs: settings.databaseTimeout,
        onIdleError: (error) => logger.warn({ err: error.message }, 'a PostgreSQL connection failed while idle; it is replaced at the next use'),
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (Date.now() >= deadline) {
        throw new StoreStartError(`PostgreSQL at ${where} (STGCMT_DATABASE_URL) could not be used within ${POSTGRES_START_WAIT_MS / 1000} s: ${message}`, EXIT_STORE_UNUSABLE);
      }
      logger.warn({ database: where, attempt, err: message }, 'PostgreSQL not usable yet; trying again');
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * attempt)));
    }
  }
}

/**
 * Asks the repository whether it can take writes, in the background; /readyz reads the last answer. A
 * change is logged: losing the database means every N-ACTION is answered 0110H until it is back.
 */
class HealthProbe {
  last: { readonly ok: boolean; readonly reason: string } = { ok: false, reason: 'not checked yet' };
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly repository: TransactionRepository,
    private readonly logger: Logger,
    private readonly everyMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async check(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // A hung server never answers: the probe's own limit keeps /readyz truthful meanwhile.
      const answer = await Promise.race([
        this.repository.health(),
        new Promise<{ ok: boolean; reason: string }>((resolve) => setTimeout(() => resolve({ ok: false, reason: `no answer within ${this.everyMs * 2} ms` }), this.everyMs * 2).unref()),
      ]).catch((error: unknown) => ({ ok: false, reason: error instanceof Error ? error.message : String(error) }));
      if (!answer.ok && this.last.ok) this.logger.error({ reason: answer.reason }, `database not usable: ${answer.reason}; new N-ACTIONs are answered 0110H (the modality keeps its images)`);
      if (answer.ok && !this.last.ok && this.last.reason !== 'not checked yet') this.logger.info('database usable again');
      this.last = answer;
    } finally {
      this.running = false;
    }
  }
}
