/** What the figures were measured on: printed with the table and stored in the JSON. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineDescription {
  readonly cpuModel: string;
  readonly cpuCount: number;
  readonly totalMemoryBytes: number;
  readonly totalMemory: string;
  readonly os: string;
  readonly nodeVersion: string;
  readonly orthancVersion: string;
  readonly dcmjsDimseVersion: string;
  readonly storage: string;
  readonly gitCommit: string | undefined;
  readonly gitDirty: boolean | undefined;
  readonly loadAverageAtStart: readonly number[];
}

function git(args: string[], cwd: string): string | undefined {
  try {
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return undefined;
  }
}

export function describeMachine(root: string, orthancVersion: string, storage: string): MachineDescription {
  const cpus = os.cpus();
  let dimseVersion = 'unknown';
  try {
    dimseVersion = (JSON.parse(readFileSync(`${root}/node_modules/dcmjs-dimse/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    // left as unknown
  }
  const status = git(['status', '--porcelain'], root);
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: os.totalmem(),
    totalMemory: `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    nodeVersion: process.version,
    orthancVersion,
    dcmjsDimseVersion: dimseVersion,
    storage,
    gitCommit: git(['rev-parse', '--short', 'HEAD'], root),
    gitDirty: status === undefined ? undefined : status.length > 0,
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}
