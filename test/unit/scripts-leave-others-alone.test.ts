/**
 * The scripts the project runs (CI, deployment, benchmarks, install checks) must never touch processes they did not start:
 * Debian's Orthanc init script, run without systemd, kills every Orthanc on the machine, including other
 * people's test servers. The tests and benchmarks start their own Orthanc on free ports instead.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = resolve(import.meta.dirname, '..', '..');
/** Data, not scripts: benchmark results. */
const SKIP = new Set([join(ROOT, 'bench', 'results')]);

function filesUnder(dir: string): string[] {
  if (SKIP.has(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

const FORBIDDEN: ReadonlyArray<[RegExp, string]> = [
  [/\bpkill\b/, 'pkill'],
  [/\bkillall\b/, 'killall'],
  [/\bservice\s.*\bstop\b/, 'service … stop'],
  [/\bsystemctl\s(?:.*\s)?stop\b/, 'systemctl stop'],
];

describe('scripts the project runs', () => {
  it('never stop processes by name or by service (.ci/run, deploy/, bench/, scripts/)', () => {
    const files = [join(ROOT, '.ci', 'run'), ...['deploy', 'bench', 'scripts'].flatMap((dir) => filesUnder(join(ROOT, dir)))];
    assert.ok(files.includes(join(ROOT, 'scripts', 'native-install-check.sh')), 'scripts/ is scanned');
    assert.ok(files.length > 5, `found only ${files.length} files`);
    const found: string[] = [];
    for (const file of files) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, index) => {
          for (const [pattern, what] of FORBIDDEN) if (pattern.test(line)) found.push(`${relative(ROOT, file)}:${index + 1}: ${what}: ${line.trim()}`);
        });
    }
    assert.deepEqual(found, []);
  });

  it('the check itself catches each form', () => {
    const lines = ['pkill -f Orthanc', 'killall Orthanc', 'service orthanc stop >/dev/null 2>&1 || true', 'sudo systemctl stop orthanc', 'systemctl --no-block stop orthanc'];
    for (const line of lines) assert.ok(FORBIDDEN.some(([pattern]) => pattern.test(line)), line);
    for (const line of ['sudo systemctl restart orthanc', 'await sidecar.stop();', 'child.kill(signal)']) assert.ok(!FORBIDDEN.some(([pattern]) => pattern.test(line)), line);
  });
});
