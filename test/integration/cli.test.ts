/**
 * The stgcmt-scu command against the running sidecar (real Orthanc behind it): every instance source,
 * both report paths, and its exit status.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createInstances, freePort, makeDicomFile, newUid, type CreatedInstance } from '../harness/orthanc.js';
import { startStack, type Stack } from '../harness/stack.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const CT = '1.2.840.10008.5.1.4.1.1.2';

async function scu(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'stgcmt-scu.ts'), ...args], { cwd: ROOT, timeout: 150_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('stgcmt-scu command', () => {
  let stack: Stack;
  let listenPort: number;
  let stored: CreatedInstance[];
  let studyUid: string;
  const dir = mkdtempSync('/dev/shm/stgcmt-cli-');
  const common = () => ['--host', '127.0.0.1', '--port', String(stack.sidecar.dicomPort), '--called', 'STGCMT', '--calling', 'CLISCU', '--timeout', '20s'];

  before(async () => {
    listenPort = await freePort();
    stack = await startStack({ peers: [{ aet: 'CLISCU', port: listenPort }] });
    studyUid = newUid();
    stored = await createInstances(stack.pacs, 6, { sopClassUid: CT, studyInstanceUid: studyUid });
  });

  after(async () => {
    await stack?.stop();
  });

  it('commits instances from a UID list on the same association and exits 0', async () => {
    const list = join(dir, 'ok.txt');
    writeFileSync(list, `# class instance\n${stored.slice(0, 3).map((s) => `${s.sopClassUid} ${s.sopInstanceUid}`).join('\n')}\n`);
    const result = await scu([...common(), '--uids', list]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(result.stdout.match(/^COMMITTED/gm)?.length, 3);
    assert.match(result.stdout, /same-association/);
  });

  it('prints each failure with its reason in words and exits 1', async () => {
    const list = join(dir, 'mixed.txt');
    const absent = newUid();
    writeFileSync(list, `${stored[0]!.sopClassUid} ${stored[0]!.sopInstanceUid}\n${CT},${absent}\n`);
    const result = await scu([...common(), '--uids', list]);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, new RegExp(`FAILED .*${absent.replace(/\./g, '\\.')}\\s+0x0112 No such object instance`));
  });

  it('takes a study from an Orthanc and receives the report on a new association to --listen-port', async () => {
    const result = await scu([...common(), '--orthanc', stack.pacs.url, '--study', studyUid, '--listen-port', String(listenPort), '--json']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const outcome = JSON.parse(result.stdout) as { report: { via: string; committed: unknown[] } };
    assert.equal(outcome.report.via, 'new-association');
    assert.equal(outcome.report.committed.length, 6);
  });

  it('reads SOP Class and Instance UIDs from DICOM files', async () => {
    const files = stored.slice(3, 5).map((s, i) => {
      const path = join(dir, `f${i}.dcm`);
      writeFileSync(path, makeDicomFile({ sopClassUid: s.sopClassUid, sopInstanceUid: s.sopInstanceUid, studyInstanceUid: studyUid, seriesInstanceUid: newUid(), patientId: 'P', patientName: 'CLI^TEST', modality: 'CT', instanceNumber: i + 1 }));
      return path;
    });
    const result = await scu([...common(), ...files]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(result.stdout.match(/^COMMITTED/gm)?.length, 2);
  });

  it('exits 2 when the SCP refuses the association, and 3 on bad usage', async () => {
    const list = join(dir, 'one.txt');
    writeFileSync(list, `${CT} ${stored[0]!.sopInstanceUid}\n`);
    const refused = await scu(['--host', '127.0.0.1', '--port', String(stack.sidecar.dicomPort), '--calling', 'UNKNOWN', '--uids', list, '--timeout', '5s']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /rejected/);
    const usage = await scu(['--port', '1']);
    assert.equal(usage.code, 3);
    assert.match(usage.stderr, /exactly one instance source/);
  });

  describe("against the sidecar's default arrival wait (30 s)", () => {
    const connection = () => ['--host', '127.0.0.1', '--port', String(stack.sidecar.dicomPort), '--called', 'STGCMT', '--calling', 'CLISCU'];
    const listOf = (name: string, lines: string[]): string => {
      const path = join(dir, name);
      writeFileSync(path, `${lines.join('\n')}\n`);
      return path;
    };

    before(async () => {
      // An empty value means unset: the sidecar runs with its default.
      await stack.sidecar.restart({ STGCMT_ARRIVAL_WAIT: '' });
    });

    it('states the real wait, and prints a report for another transaction as such, not as its result', async () => {
      // First run: the association is released at once and nobody listens, so its report is retried.
      const first = await scu([...connection(), '--keep-open', '0', '--timeout', '20s', '--uids', listOf('first.txt', [`${stored[0]!.sopClassUid} ${stored[0]!.sopInstanceUid}`])]);
      assert.equal(first.code, 2, first.stdout + first.stderr);
      assert.match(first.stdout, /^No report within 0 s /m, 'it waited 0 s, not the 20 s of --timeout');
      assert.match(first.stdout, /--listen-port/);
      const firstUid = /^Transaction ([\d.]+):/m.exec(first.stdout)?.[1];
      assert.ok(firstUid, first.stdout);
      // Second run listens: the first run's report arrives there while it waits for its own (an absent
      // instance: the sidecar waits 30 s for it).
      const absent = newUid();
      const second = await scu([...connection(), '--listen-port', String(listenPort), '--timeout', '8s', '--uids', listOf('second.txt', [`${CT} ${absent}`])]);
      assert.equal(second.code, 2, second.stdout + second.stderr);
      assert.match(second.stdout, new RegExp(`^A report for another transaction ${firstUid.replace(/\./g, '\\.')} arrived \\(event type 1, new-association\\): 1 committed, 0 failed`, 'm'));
      assert.doesNotMatch(second.stdout, /^(COMMITTED|FAILED)/m, 'the other transaction\'s instances are not listed as this run\'s');
      assert.match(second.stdout, /^No report within 8 s: do NOT delete any image/m);
    });

    it('waits long enough by default: an absent instance is reported failed (0112H), not "no report"', async () => {
      const absent = newUid();
      const started = Date.now();
      const result = await scu([...connection(), '--uids', listOf('absent.txt', [`${stored[1]!.sopClassUid} ${stored[1]!.sopInstanceUid}`, `${CT} ${absent}`])]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, new RegExp(`^FAILED .*${absent.replace(/\./g, '\\.')}\\s+0x0112 No such object instance`, 'm'));
      assert.match(result.stdout, /same-association/);
      assert.ok(Date.now() - started >= 29_000, 'the report came after the sidecar\'s arrival wait');
    });
  });
});
