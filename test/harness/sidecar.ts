/**
 * Runs the real sidecar as a child process (`node --import tsx src/main.ts`), so tests exercise the same
 * entry point as `npm start` and can kill -9 it. Logs go to a file in its data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './orthanc.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

export interface SidecarOptions {
  readonly orthancUrl: string;
  readonly aeTitle?: string;
  /** Extra STGCMT_* environment. */
  readonly env?: Record<string, string>;
  readonly dataDir?: string;
  /** Where its output goes (default: sidecar.log in the data directory). */
  readonly logFile?: string;
  readonly dicomPort?: number;
  readonly httpPort?: number;
  /**
   * 'src' (default) runs the TypeScript entry through tsx, as the tests do; 'dist' runs the compiled
   * `npm start` entry (build first), which is what to measure memory and speed on.
   */
  readonly entry?: 'src' | 'dist';
}

export interface SidecarProcess {
  readonly dicomPort: number;
  readonly httpPort: number;
  readonly aeTitle: string;
  readonly dataDir: string;
  readonly url: string;
  readonly logFile: string;
  readonly pid: number;
  /** SIGTERM and wait for a clean exit (exit code returned). */
  stop(): Promise<number | null>;
  /** Any signal, default SIGKILL, and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start again on the same data directory and ports. */
  restart(extraEnv?: Record<string, string>): Promise<void>;
  /** Parsed JSON log lines so far. */
  logLines(): Array<Record<string, unknown>>;
  /** Resolves when a log line matching the predicate appears. */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  api<T>(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }>;
  /** Removes the data directory (after stop). */
  cleanup(): void;
}

export const TEST_API_TOKEN = 'test-token-0123456789abcdef';
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function baseDir(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

/** How long a sidecar may take to exit on SIGTERM (it finishes work in flight, with bounded waits). */
const SHUTDOWN_LIMIT_MS = 60_000;

export async function startSidecar(options: SidecarOptions): Promise<SidecarProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(baseDir(), 'stgcmt-sidecar-'));
  const dicomPort = options.dicomPort ?? (await freePort());
  const httpPort = options.httpPort ?? (await freePort());
  const aeTitle = options.aeTitle ?? 'STGCMT';
  const logFile = options.logFile ?? join(dataDir, 'sidecar.log');
  let child: ChildProcess;
  let env: Record<string, string> = {
    ORTHANC_URL: options.orthancUrl,
    STGCMT_AET: aeTitle,
    STGCMT_DICOM_PORT: String(dicomPort),
    STGCMT_DICOM_HOST: '127.0.0.1',
    STGCMT_HTTP_PORT: String(httpPort),
    STGCMT_HTTP_HOST: '127.0.0.1',
    STGCMT_DATA_DIR: dataDir,
    STGCMT_LOG_LEVEL: 'info',
    STGCMT_API_TOKEN: TEST_API_TOKEN,
    STGCMT_ARRIVAL_WAIT: '1s',
    STGCMT_RETRY_INITIAL: '500ms',
    STGCMT_RETRY_MAX: '2s',
    STGCMT_REPORT_TIMEOUT: '5s',
    ...options.env,
  };

  const launch = async (): Promise<void> => {
    const log = createWriteStream(logFile, { flags: 'a' });
    const args = options.entry === 'dist' ? [join(ROOT, 'dist', 'main.js')] : ['--import', 'tsx', join(ROOT, 'src', 'main.ts')];
    child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    child.once('exit', () => live.delete(child));
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`sidecar exited with ${child.exitCode}:\n${tail()}`);
      try {
        const response = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
        return response.ok;
      } catch {
        return false;
      }
    }, 20_000);
  };

  const tail = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n') : '');
  const logLines = (): Array<Record<string, unknown>> =>
    (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const exited = (): Promise<void> =>
    new Promise((resolveExit) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
      child.once('exit', () => resolveExit());
    });
  /**
   * SIGTERM, and the exit it must lead to. A shutdown that hangs is a defect: it fails here, loudly,
   * after SHUTDOWN_LIMIT_MS (the process is then killed), instead of holding the test file until its timeout.
   */
  const terminate = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([exited().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), SHUTDOWN_LIMIT_MS)))]);
    clearTimeout(timer);
    if (inTime) return;
    child.kill('SIGKILL');
    await exited();
    throw new Error(`sidecar did not exit within ${SHUTDOWN_LIMIT_MS} ms of SIGTERM (killed):\n${tail()}`);
  };

  await launch();
  return {
    dicomPort,
    httpPort,
    aeTitle,
    dataDir,
    logFile,
    url: `http://127.0.0.1:${httpPort}`,
    get pid() {
      return child.pid ?? -1;
    },
    async stop() {
      await terminate();
      return child.exitCode;
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      child.kill(signal);
      await exited();
    },
    async restart(extraEnv?: Record<string, string>) {
      await terminate();
      env = { ...env, ...extraEnv };
      await launch();
    },
    logLines,
    waitForLog(predicate, timeoutMs = 20_000) {
      let found: Record<string, unknown> | undefined;
      return waitUntil(() => {
        found = logLines().find(predicate);
        return found !== undefined;
      }, timeoutMs).then(() => found!);
    },
    async api<T>(method: string, path: string, body?: unknown, token: string | null = TEST_API_TOKEN) {
      const headers: Record<string, string> = {};
      if (token) headers['authorization'] = `Bearer ${token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const response = await fetch(`http://127.0.0.1:${httpPort}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // metrics and errors from proxies are plain text
      }
      return { status: response.status, body: parsed as T };
    },
    cleanup() {
      if (!process.env['KEEP_SIDECAR']) rmSync(dataDir, { recursive: true, force: true });
    },
  } as SidecarProcess;
}

export async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
