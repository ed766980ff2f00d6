/**
 * The last-resort policy (src/util/last-resort.ts), in a child process of its own: a stray rejected promise
 * is logged and counted and the process stays up; an uncaught exception is logged at fatal level and the
 * process exits 70 for its supervisor to restart it. Never silently either way.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { UNCAUGHT_EXCEPTION_EXIT_CODE } from '../../src/util/last-resort.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const SCRIPT = `
import { createLogger } from './src/log.ts';
import { installLastResortPolicy } from './src/util/last-resort.ts';
const counted = [];
installLastResortPolicy(createLogger('info', 'test-node'), (where) => counted.push(where));
void Promise.reject(new Error('stray rejection'));
setTimeout(() => {
  process.stdout.write(JSON.stringify({ msg: 'still up', counted }) + '\\n');
  setTimeout(() => { throw new Error('uncaught boom'); }, 10);
}, 200);
setTimeout(() => process.stdout.write(JSON.stringify({ msg: 'never reached' }) + '\\n'), 2000);
`;

it('a stray rejection is logged and counted and the process stays up; an uncaught exception is logged at fatal level and exits 70', () => {
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  const lines = child.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg: string; level?: number; err?: { message: string }; counted?: string[]; node?: string });
  assert.equal(child.status, UNCAUGHT_EXCEPTION_EXIT_CODE, child.stderr);
  assert.equal(UNCAUGHT_EXCEPTION_EXIT_CODE, 70);
  const rejection = lines.find((l) => /unhandled promise rejection/.test(l.msg));
  assert.equal(rejection?.level, 50, 'logged at error level');
  assert.equal(rejection?.err?.message, 'stray rejection', 'with the error');
  assert.equal(rejection?.node, 'test-node');
  assert.deepEqual(lines.find((l) => l.msg === 'still up')?.counted, ['unhandled-rejection'], 'counted once, and the process went on');
  const fatal = lines.find((l) => /uncaught exception/.test(l.msg));
  assert.equal(fatal?.level, 60, 'logged at fatal level');
  assert.equal(fatal?.err?.message, 'uncaught boom');
  assert.equal(lines.some((l) => l.msg === 'never reached'), false, 'exited at once');
});
