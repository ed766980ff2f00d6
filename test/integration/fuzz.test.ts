/**
 * Bounded robustness fuzzing of the DICOM port: a few thousand structure-aware mutations of a valid
 * Storage Commitment conversation (test/fuzz), sent by a known AE from its configured host so that they
 * reach past the association checks. After every batch: the same process is alive, a good N-ACTION from
 * another modality gets Success and its exact report, and the sidecar's RSS is under the budget.
 *
 * Replay: FUZZ_SEED=<seed> (printed at the start) runs the same cases; FUZZ_CASE=<n> runs case n alone,
 * and FUZZ_CASES=<count> changes how many.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { requestCommitment, type ScuTarget } from '../../src/cli/commitment-scu.js';
import type { ReportReceiver } from '../../src/cli/report-receiver.js';
import { refsOf } from '../harness/faults.js';
import { createInstances, type SopRef } from '../harness/orthanc.js';
import { RawPeer } from '../harness/raw-peer.js';
import { startReportReceiver, startStack, type Stack } from '../harness/stack.js';
import { loadCorpus, makeCase, Rng } from '../fuzz/mutators.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261125);
const CASES = Number(process.env['FUZZ_CASES'] ?? 6000);
const ONLY = process.env['FUZZ_CASE'] === undefined ? undefined : Number(process.env['FUZZ_CASE']);
const BATCH = 500;
const PARALLEL = 12;
const RSS_BUDGET_MB = 400;

/** Writes one case's bytes, lets the sidecar answer for a moment, then goes away. */
async function runCase(port: number, writes: readonly Buffer[]): Promise<void> {
  let peer: RawPeer;
  try {
    peer = await RawPeer.open(port);
  } catch {
    return; // refused at once: a fine answer to a flood
  }
  for (const bytes of writes) {
    if (!peer.send(bytes)) break;
  }
  await Promise.race([peer.closedPromise, sleep(120)]);
  peer.destroy();
}

describe('fuzzing the DICOM port', () => {
  let stack: Stack;
  let receiver: ReportReceiver;
  let good: SopRef[];

  before(async () => {
    receiver = await startReportReceiver('TESTSCU');
    stack = await startStack({
      peers: [
        { aet: 'TESTSCU', port: receiver.port },
        { aet: 'GOODSCU', port: receiver.port },
      ],
      // Warnings for every refused PDU are the point; info lines for thousands of associations are not.
      sidecarEnv: { STGCMT_LOG_LEVEL: 'warn', STGCMT_ARTIM_TIMEOUT: '2s', STGCMT_IDLE_TIMEOUT: '2s', STGCMT_DIMSE_TIMEOUT: '2s' },
    });
    good = refsOf(await createInstances(stack.pacs, 2 * Math.ceil(CASES / BATCH) + 2));
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    await receiver?.stop();
  }, { timeout: 90_000 });

  it(`${ONLY === undefined ? CASES : 1} mutated conversations: the process stays up, keeps serving, and stays under ${RSS_BUDGET_MB} MB`, { timeout: 300_000 }, async (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED} FUZZ_CASES=${CASES}${ONLY === undefined ? '' : ` FUZZ_CASE=${ONLY}`}`);
    const corpus = loadCorpus();
    const pid = stack.sidecar.pid;
    const target: ScuTarget = { host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'GOODSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 };
    // Every case is derived from the seed and its index alone: any one can be replayed on its own.
    const caseBytes = (index: number): Buffer[] => makeCase(new Rng(SEED ^ Math.imul(index + 1, 0x9e3779b1)), corpus);
    const indices = ONLY === undefined ? Array.from({ length: CASES }, (_, i) => i) : [ONLY];
    const started = performance.now();
    let goodUsed = 0;
    for (let batchStart = 0; batchStart < indices.length; batchStart += BATCH) {
      const batch = indices.slice(batchStart, batchStart + BATCH);
      let next = 0;
      await Promise.all(
        Array.from({ length: PARALLEL }, async () => {
          while (next < batch.length) {
            const index = batch[next++]!;
            await runCase(stack.sidecar.dicomPort, caseBytes(index));
          }
        }),
      );
      const where = `after cases ${batch[0]}..${batch.at(-1)} (FUZZ_SEED=${SEED})`;
      assert.equal(stack.sidecar.pid, pid, `the sidecar process changed ${where}`);
      process.kill(pid, 0);
      const refs = good.slice(goodUsed, (goodUsed += 2));
      const outcome = await requestCommitment(target, refs, { keepOpenMs: 5000, reportTimeoutMs: 10_000 });
      assert.equal(outcome.nAction.status, 0, `a good N-ACTION is answered Success ${where}`);
      assert.ok(outcome.report, `the good N-ACTION's report arrives ${where}`);
      assert.equal(outcome.report.eventTypeId, 1);
      assert.deepEqual(outcome.report.committed, refs);
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
      assert.ok(rss < RSS_BUDGET_MB, `RSS ${Math.round(rss)} MB ${where}`);
      t.diagnostic(`cases ${batch[0]}..${batch.at(-1)}: alive, serving, RSS ${Math.round(rss)} MB, ${Math.round((performance.now() - started) / 1000)} s`);
    }
    const internalErrors = /^stgcmt_internal_errors_total\{where="dicom-handler"\} (\d+)/m.exec(await (await fetch(`${stack.sidecar.url}/metrics`)).text());
    t.diagnostic(`handler errors caught and contained: ${internalErrors?.[1] ?? 0}`);
    // What the cases reached, so a reader can see the fuzzer gets past the first checks.
    const reached = new Map<string, number>();
    for (const line of stack.sidecar.logLines()) {
      const key = String(line['msg']);
      reached.set(key, (reached.get(key) ?? 0) + 1);
    }
    t.diagnostic(`sidecar log lines by message: ${JSON.stringify(Object.fromEntries([...reached].sort((a, b) => b[1] - a[1]).slice(0, 12)))}`);
    const fatal = stack.sidecar.logLines().filter((l) => Number(l['level']) >= 50);
    assert.deepEqual(fatal.map((l) => l['msg']), [], 'no error-level log lines (a contained handler error is still a bug to fix)');
  });
});
