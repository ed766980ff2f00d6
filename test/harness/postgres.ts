/**
 * A real PostgreSQL for the tests, from Debian's package (/usr/lib/postgresql/<version>/bin): initdb into a
 * temporary directory (on /dev/shm when it exists: this machine's disk is slow at fsync), started with
 * pg_ctl on 127.0.0.1 and a free port, trust authentication, one database created. Run as root (CI), the
 * PostgreSQL binaries run as the `postgres` user (initdb refuses root), which owns the directory.
 *
 * Nothing here touches a PostgreSQL it did not start: a system server the package started is left alone.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './orthanc.js';

const run = promisify(execFile);

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/DATABASE */
  readonly url: string;
  readonly port: number;
  readonly database: string;
  /** The data directory (inside the temporary directory). */
  readonly dataDir: string;
  /** A URL to another database of this server (created on demand with createDatabase). */
  urlOf(database: string): string;
  /** Creates another empty database; returns its URL. */
  createDatabase(database: string): Promise<string>;
  /** pg_ctl restart (fast): every connection is cut, the server comes back on the same port. */
  restart(): Promise<void>;
  /** SIGSTOP to the postmaster and every backend: connections hang (a stalled database). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Stops the server (fast shutdown) and removes the temporary directory. */
  stop(): Promise<void>;
}

export interface PostgresOptions {
  /** Database to create (default 'stgcmt'). */
  readonly database?: string;
  /** Extra server settings (-c name=value). */
  readonly settings?: Readonly<Record<string, string>>;
}

/** The newest installed PostgreSQL's bin directory, or undefined. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  return versions.length > 0 ? join(root, versions[0]!, 'bin') : undefined;
}

/** Who runs the PostgreSQL binaries: ourselves, or (as root) the postgres user. */
interface RunAs {
  readonly uid: number;
  readonly gid: number;
  /** Prefix to run a command as that user ([] when we are not root). */
  readonly prefix: readonly string[];
}

async function runAs(): Promise<RunAs> {
  const uid = process.getuid?.() ?? 1000;
  const gid = process.getgid?.() ?? 1000;
  if (uid !== 0) return { uid, gid, prefix: [] };
  const name = process.env['PG_TEST_USER'] ?? 'postgres';
  let pgUid: number;
  let pgGid: number;
  try {
    pgUid = Number((await run('id', ['-u', name])).stdout.trim());
    pgGid = Number((await run('id', ['-g', name])).stdout.trim());
  } catch {
    throw new Error(`running as root: PostgreSQL refuses root, and there is no '${name}' user to run it as (install the postgresql package, or set PG_TEST_USER)`);
  }
  // setpriv keeps the environment and needs no PAM session (runuser would do too).
  return { uid: pgUid, gid: pgGid, prefix: ['setpriv', `--reuid=${pgUid}`, `--regid=${pgGid}`, '--clear-groups', '--'] };
}

function baseTempDir(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

const live = new Set<{ dir: string; pidFile: string }>();
let exitHookInstalled = false;

/** A test that dies without stop(): end our servers (immediate shutdown) and remove their directories. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const server of live) {
      const pid = postmasterPid(server.pidFile);
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGQUIT');
        } catch {
          // already gone
        }
      }
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
}

function postmasterPid(pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The children of a process (Linux /proc), for pause() and resume(). */
function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  } catch {
    return [];
  }
}

async function waitUntilAccepting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (error) {
      last = error;
      await client.end().catch(() => undefined);
      await sleep(100);
    }
  }
  throw new Error(`PostgreSQL on port ${port} did not accept connections within ${timeoutMs} ms: ${String(last)}`);
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL under /usr/lib/postgresql (install the postgresql package)');
  const user = await runAs();
  const database = options.database ?? 'stgcmt';
  const dir = mkdtempSync(join(baseTempDir(), 'stgcmt-pg-'));
  const dataDir = join(dir, 'data');
  const socketDir = dir;
  const logFile = join(dir, 'postgres.log');
  const pidFile = join(dataDir, 'postmaster.pid');
  if (user.prefix.length > 0) chownSync(dir, user.uid, user.gid);
  const entry = { dir, pidFile };
  live.add(entry);
  installExitHook();

  const pgRun = async (tool: string, args: string[]): Promise<string> => {
    const [command, ...rest] = [...user.prefix, join(bin, tool), ...args];
    try {
      const { stdout } = await run(command!, rest, { cwd: dir, env: { ...process.env, LC_ALL: 'C' }, timeout: 120_000 });
      return stdout;
    } catch (error) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n') : '';
      const stderr = (error as { stderr?: string }).stderr ?? '';
      throw new Error(`${tool} failed: ${String(error)}\n${stderr}\n${log}`);
    }
  };

  try {
    await pgRun('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    let port = 0;
    const settings: Record<string, string> = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', ...options.settings };
    const startOn = async (p: number): Promise<void> => {
      const serverOptions = [`-p ${p}`, `-k ${socketDir}`, '-c listen_addresses=127.0.0.1', ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ');
      await pgRun('pg_ctl', ['start', '-w', '-t', '60', '-D', dataDir, '-l', logFile, '-o', serverOptions]);
      await waitUntilAccepting(p, 30_000);
    };
    // A free port can be taken between the look and the start: try a few.
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      try {
        await startOn(port);
        break;
      } catch (error) {
        if (attempt >= 2) throw error;
      }
    }
    const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    const createDatabase = async (name: string): Promise<string> => {
      // An identifier cannot be a parameter: only plain names are accepted.
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return urlOf(name);
    };
    await admin.end();
    const urlOf = (name: string): string => `postgres://postgres@127.0.0.1:${port}/${name}`;
    await createDatabase(database);

    const signalAll = (signal: NodeJS.Signals): void => {
      const pid = postmasterPid(pidFile);
      if (pid === undefined) throw new Error('PostgreSQL is not running');
      for (const p of [pid, ...childrenOf(pid)]) {
        try {
          process.kill(p, signal);
        } catch {
          // a backend that just ended
        }
      }
    };
    let stopped = false;
    return {
      url: urlOf(database),
      port,
      database,
      dataDir,
      urlOf,
      createDatabase,
      async restart() {
        await pgRun('pg_ctl', ['restart', '-w', '-t', '60', '-m', 'fast', '-D', dataDir, '-l', logFile]);
        await waitUntilAccepting(port, 30_000);
      },
      pause: () => signalAll('SIGSTOP'),
      resume: () => signalAll('SIGCONT'),
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          signalAll('SIGCONT');
        } catch {
          // not running
        }
        try {
          await pgRun('pg_ctl', ['stop', '-w', '-t', '30', '-m', 'fast', '-D', dataDir]);
        } catch {
          const pid = postmasterPid(pidFile);
          if (pid !== undefined) process.kill(pid, 'SIGQUIT');
        }
        live.delete(entry);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    const pid = postmasterPid(pidFile);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // not running
      }
    }
    live.delete(entry);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
