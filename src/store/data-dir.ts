/**
 * One sidecar per data directory. Two on the same store would both deliver every report and race on
 * every transaction, so the data directory is claimed for the life of the process with an OS lock.
 *
 * The lock is SQLite's own: `stgcmt.lock` is an empty database held in an exclusive transaction with
 * locking_mode=EXCLUSIVE. SQLite takes it with POSIX (fcntl) locks, which the kernel drops when the
 * holder dies, so a kill -9 frees the directory at once; and SQLite keeps a second connection in the same
 * process from taking it too. No new dependency. Who holds it is written next to it, in
 * `stgcmt.lock.owner` (a separate file: opening and closing the lock file itself would drop a POSIX lock).
 */
import { accessSync, constants, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { EXIT_DATA_DIR_IN_USE, EXIT_STORE_UNUSABLE, StoreStartError } from './errors.js';

export interface DataDirClaim {
  /** The data directory, as an absolute path. */
  readonly dir: string;
  /** Gives the directory up (at shutdown; the OS does it if we die). */
  release(): void;
}

const LOCK_FILE = 'stgcmt.lock';
const OWNER_FILE = 'stgcmt.lock.owner';

function errorText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const message = error instanceof Error ? error.message : String(error);
  return code && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/** Creates the directory if needed and checks that it is a writable directory. */
function prepare(dir: string): void {
  let isDirectory: boolean | undefined;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch (error) {
    // ENOTDIR: a parent is a file; mkdir below says so.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: cannot read (${errorText(error)})`, EXIT_STORE_UNUSABLE);
  }
  if (isDirectory === false) throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: not a directory`, EXIT_STORE_UNUSABLE);
  if (isDirectory === undefined) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: cannot create (${errorText(error)})`, EXIT_STORE_UNUSABLE);
    }
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (error) {
    throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: not writable (${errorText(error)})`, EXIT_STORE_UNUSABLE);
  }
}

function describeOwner(dir: string): string {
  try {
    const owner = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as { pid?: unknown; host?: unknown; since?: unknown };
    return `pid ${String(owner.pid)} on host ${String(owner.host)}, since ${String(owner.since)}`;
  } catch {
    return 'holder unknown';
  }
}

/** Claims the data directory for this process, or throws a StoreStartError saying why not. */
export function claimDataDir(dataDir: string): DataDirClaim {
  const dir = resolve(dataDir);
  prepare(dir);
  let lock: Database.Database;
  try {
    // timeout 0: a held lock is an answer, not something to wait for.
    lock = new Database(join(dir, LOCK_FILE), { timeout: 0 });
    lock.pragma('locking_mode = EXCLUSIVE');
  } catch (error) {
    throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: cannot open ${LOCK_FILE} (${errorText(error)})`, EXIT_STORE_UNUSABLE);
  }
  try {
    lock.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    lock.close();
    if ((error as { code?: string }).code === 'SQLITE_BUSY') {
      throw new StoreStartError(`STGCMT_DATA_DIR ${dir} is in use by another sidecar (${describeOwner(dir)}); only one may use a data directory`, EXIT_DATA_DIR_IN_USE);
    }
    throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: cannot lock ${LOCK_FILE} (${errorText(error)})`, EXIT_STORE_UNUSABLE);
  }
  try {
    writeFileSync(join(dir, OWNER_FILE), `${JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() })}\n`);
  } catch (error) {
    lock.close();
    throw new StoreStartError(`STGCMT_DATA_DIR ${dir}: cannot write ${OWNER_FILE} (${errorText(error)})`, EXIT_STORE_UNUSABLE);
  }
  return {
    dir,
    release() {
      if (!lock.open) return;
      rmSync(join(dir, OWNER_FILE), { force: true });
      lock.exec('ROLLBACK');
      lock.close();
    },
  };
}
