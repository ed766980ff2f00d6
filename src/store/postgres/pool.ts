/**
 * The connection pool of the PostgreSQL repository: a postgres:// URL, time limits on connecting and on
 * every statement (a stalled database fails a request instead of hanging it), the node's id as
 * application_name (pg_stat_activity shows which node holds what), and BIGINT read as numbers for this pool
 * only (times are ms since the epoch, far below 2^53).
 */
import pg from 'pg';

export interface PoolOptions {
  /** postgres://user:password@host:port/database[?sslmode=…] */
  readonly url: string;
  /** STGCMT_NODE_ID: shown as application_name. */
  readonly nodeId: string;
  /** Longest a statement may run, in ms (default 10 s). */
  readonly statementTimeoutMs?: number;
  /** Longest to wait for a connection, in ms (default 10 s). */
  readonly connectionTimeoutMs?: number;
  /** Connections at most (default 10). */
  readonly max?: number;
  /** An idle connection failed (the server restarted, the network dropped): logged, never thrown. */
  readonly onIdleError?: (error: Error) => void;
}

const INT8_OID = 20;

function parseInt8(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`BIGINT ${value} is beyond what a JavaScript number holds exactly`);
  return n;
}

/** BIGINT (and COUNT(*)) as numbers for this pool's clients; every other type as pg reads it. */
export const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === INT8_OID && format !== 'binary') return parseInt8;
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    application_name: options.nodeId.slice(0, 63),
    statement_timeout: options.statementTimeoutMs ?? 10_000,
    // A transaction left open by a stalled node must not hold its row locks for ever.
    idle_in_transaction_session_timeout: Math.max(60_000, (options.statementTimeoutMs ?? 10_000) * 6),
    // statement_timeout is the server's: a server that stalls (or a network that drops packets) never
    // answers, so the client gives up too, a little later, and the connection is then discarded.
    query_timeout: (options.statementTimeoutMs ?? 10_000) + 2_000,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    max: options.max ?? 10,
    types: pgTypes,
  });
  pool.on('error', (error) => options.onIdleError?.(error));
  return pool;
}
