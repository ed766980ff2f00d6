/**
 * A wrong answer from Orthanc never changes the truth. The sidecar talks to the real PACS Orthanc through
 * a proxy (test/harness/orthanc-proxy.ts) that forwards everything except the endpoint under test, which
 * it answers with a 200 and a wrong body (HTML, `{}`, `[1,2]`, truncated JSON) or not at all. Such an
 * answer is an Orthanc fault: the peer list stays, stored instances stay undecided (never 0112H) until
 * Orthanc answers properly or STGCMT_VERIFY_TIMEOUT fails them with 0110H, and /readyz still answers at once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FailureReason } from '../../src/commitment/types.js';
import { apiTransaction, awaitOrthancReport, refsOf, sendOrthancCommitment, waitForTransaction } from '../harness/faults.js';
import { WRONG_BODIES, type OrthancProxy, type WrongBody } from '../harness/orthanc-proxy.js';
import { createInstances, newUid, SECONDARY_CAPTURE_SOP_CLASS, type CreatedInstance, type SopRef, type StorageCommitmentReport } from '../harness/orthanc.js';
import { waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const LOOKUP_BODIES: readonly WrongBody[] = [WRONG_BODIES.html, WRONG_BODIES.emptyObject, WRONG_BODIES.numbers, WRONG_BODIES.truncated];

function proxyOf(stack: Stack): OrthancProxy {
  assert.ok(stack.proxy, 'the stack runs with the Orthanc proxy');
  return stack.proxy;
}

/** Every body of the fault was served at least `times` times. */
async function waitServedEach(proxy: OrthancProxy, endpoint: string, bodies: number, times: number, timeoutMs: number): Promise<void> {
  await waitUntil(() => {
    const served = proxy.served(endpoint);
    return served.length === bodies && served.every((n) => n >= times);
  }, timeoutMs).catch(() => assert.fail(`${endpoint}: each wrong body served ${times}x within ${timeoutMs} ms (served: ${JSON.stringify(proxy.served(endpoint))})`));
}

function assertReport(report: StorageCommitmentReport, committed: readonly SopRef[], failed: ReadonlyArray<SopRef & { reason: number }>): void {
  assert.deepEqual((report.Success ?? []).map((s) => s.SOPInstanceUID).sort(), committed.map((c) => c.sopInstanceUid).sort(), 'committed instances');
  const reasons = new Map((report.Failures ?? []).map((f) => [f.SOPInstanceUID, f.FailureReason]));
  assert.deepEqual(reasons, new Map(failed.map((f) => [f.sopInstanceUid, f.reason])), 'failed instances and their reasons');
}

/** A warning names the endpoint and what was wrong, and no log line carries the body. */
function assertWarned(stack: Stack, endpoint: string): void {
  const warnings = stack.sidecar.logLines().filter((l) => l['level'] === 40 && l['endpoint'] === endpoint && typeof l['problem'] === 'string');
  assert.ok(warnings.length > 0, `a warning names ${endpoint} and the problem`);
  assert.ok(!readFileSync(stack.sidecar.logFile, 'utf8').includes('PHI-MARKER'), 'the wrong body is never logged');
}

describe('wrong answers from Orthanc (through a proxy)', () => {
  let stack: Stack;
  let pool: CreatedInstance[];
  const take = (count: number): CreatedInstance[] => pool.splice(0, count);
  /** Orthanc 1.12.5+ answers lookups with one extended /tools/find; older ones with /tools/find + bulk-content. */
  let extendedFind = false;
  /** The endpoint that looks up instances the UID index knows, and the name the sidecar's warning gives it. */
  const indexedLookup = (): string => (extendedFind ? 'POST /tools/find' : 'POST /tools/bulk-content');
  const warnedAs = (endpoint: string): string => (extendedFind && endpoint === 'POST /tools/find' ? 'POST /tools/find (ResponseContent)' : endpoint);

  before(async () => {
    stack = await startStack({ orthancProxy: true, sidecarEnv: { STGCMT_PEERS_REFRESH: '1s' } });
    pool = await createInstances(stack.pacs, 40);
    extendedFind = (await stack.pacs.rest<{ Capabilities?: { HasExtendedFind?: boolean } }>('GET', '/system')).Capabilities?.HasExtendedFind === true;
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
  }, { timeout: 90_000 });

  it('a wrong /modalities answer keeps the peers: the modality still commits, also after a restart', { timeout: 90_000 }, async () => {
    const proxy = proxyOf(stack);
    // `{}` would be a valid answer (Orthanc knows no modality); these are not.
    const bodies: WrongBody[] = [
      WRONG_BODIES.html,
      WRONG_BODIES.numbers,
      { body: '{ "modality" : { "AET" : "MODAL', contentType: 'application/json' },
      { body: '{ "modality" : { "AET" : 5, "Host" : "127.0.0.1", "Port" : 104 } }', contentType: 'application/json' },
      { body: '{ "modality" : {} }', contentType: 'application/json' },
    ];
    proxy.fault('GET /modalities', { kind: 'bodies', bodies });
    try {
      await waitServedEach(proxy, 'GET /modalities', bodies.length, 1, 20_000);
      const refs = refsOf(take(3));
      const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refs);
      assertReport(await awaitOrthancReport(stack.modality, id, 20_000), refs, []);
      assertWarned(stack, 'GET /modalities?expand');

      // The stored copy was never overwritten with a wrong answer: a restart while Orthanc still answers
      // wrongly knows the modality.
      await stack.sidecar.restart();
      const again = refsOf(take(3));
      const id2 = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, again);
      assertReport(await awaitOrthancReport(stack.modality, id2, 20_000), again, []);
    } finally {
      proxy.clear();
      // Let a good list load (STGCMT_PEERS_REFRESH=1s) whatever happened above: the next tests need it.
      await sleep(2500);
    }
  });

  it('wrong answers about indexed instances (/tools/bulk-content; /tools/find with extended find): undecided, never 0112H, then committed', { timeout: 90_000 }, async () => {
    const proxy = proxyOf(stack);
    const batches = [take(3), take(3), take(3), take(3)];
    const absent: SopRef = { sopClassUid: SECONDARY_CAPTURE_SOP_CLASS, sopInstanceUid: newUid() };
    proxy.fault(indexedLookup(), { kind: 'bodies', bodies: LOOKUP_BODIES });
    let ids: string[];
    try {
      const started = Date.now();
      ids = await Promise.all(batches.map((b, i) => sendOrthancCommitment(stack.modality, stack.sidecarModalityName, i === 0 ? [...refsOf(b), absent] : refsOf(b))));
      await waitServedEach(proxy, indexedLookup(), LOOKUP_BODIES.length, 1, 20_000);
      // Well past STGCMT_ARRIVAL_WAIT (1s): an instance Orthanc was not properly asked about is not absent.
      await sleep(Math.max(0, started + 3000 - Date.now()));
      for (const id of ids) {
        const held = await apiTransaction(stack.sidecar, id);
        assert.equal(held?.state, 'RECEIVED', 'still being verified');
        assert.ok(held.instanceOutcomes.every((i) => i.outcome === 'pending'), `no verdict from a wrong answer: ${JSON.stringify(held.instanceOutcomes.filter((i) => i.outcome !== 'pending'))}`);
      }
      assertWarned(stack, warnedAs(indexedLookup()));
    } finally {
      proxy.clear();
    }
    for (const [i, id] of ids.entries()) {
      const report = await awaitOrthancReport(stack.modality, id, 30_000);
      assertReport(report, refsOf(batches[i]!), i === 0 ? [{ ...absent, reason: FailureReason.NoSuchObjectInstance }] : []);
    }
  });

  it('wrong /tools/find answers (instances the UID index does not know): undecided, then committed', { timeout: 90_000 }, async () => {
    const proxy = proxyOf(stack);
    // Keep the changes feed from indexing the new instances, so that only a search can find them.
    proxy.fault('GET /changes', { kind: 'bodies', bodies: [WRONG_BODIES.html] });
    proxy.fault('POST /tools/find', { kind: 'bodies', bodies: LOOKUP_BODIES });
    let ids: string[];
    let batches: CreatedInstance[][];
    try {
      await waitUntil(() => (proxy.served('GET /changes')[0] ?? 0) >= 2, 10_000);
      batches = await Promise.all([1, 2, 3, 4].map(() => createInstances(stack.pacs, 2)));
      const started = Date.now();
      ids = await Promise.all(batches.map((b) => sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refsOf(b))));
      await waitServedEach(proxy, 'POST /tools/find', LOOKUP_BODIES.length, 1, 20_000);
      await sleep(Math.max(0, started + 3000 - Date.now()));
      for (const id of ids) {
        const held = await apiTransaction(stack.sidecar, id);
        assert.equal(held?.state, 'RECEIVED', 'still being verified');
        assert.ok(held.instanceOutcomes.every((i) => i.outcome === 'pending'), `no verdict from a wrong answer: ${JSON.stringify(held.instanceOutcomes.filter((i) => i.outcome !== 'pending'))}`);
      }
      assertWarned(stack, warnedAs('POST /tools/find'));
    } finally {
      proxy.clear();
    }
    for (const [i, id] of ids.entries()) assertReport(await awaitOrthancReport(stack.modality, id, 30_000), refsOf(batches[i]!), []);
  });

  it('wrong lookup answers past STGCMT_VERIFY_TIMEOUT (4s): 0110H, never 0112H', { timeout: 90_000 }, async () => {
    const proxy = proxyOf(stack);
    await stack.sidecar.restart({ STGCMT_VERIFY_TIMEOUT: '4s' });
    const refs = refsOf(take(3));
    proxy.fault('POST /tools/bulk-content', { kind: 'bodies', bodies: LOOKUP_BODIES });
    proxy.fault('POST /tools/find', { kind: 'bodies', bodies: LOOKUP_BODIES });
    try {
      const started = Date.now();
      const id = await sendOrthancCommitment(stack.modality, stack.sidecarModalityName, refs);
      const report = await awaitOrthancReport(stack.modality, id, 30_000);
      assert.ok(Date.now() - started >= 3900, 'not judged before the verification window closed');
      assertReport(report, [], refs.map((r) => ({ ...r, reason: FailureReason.ProcessingFailure })));
      await waitForTransaction(stack.sidecar, id, (t) => t.state === 'REPORTED', 10_000);
    } finally {
      proxy.clear();
    }
  });

  it('/readyz answers within 2 s while Orthanc hangs, saying why, and recovers', { timeout: 60_000 }, async () => {
    const proxy = proxyOf(stack);
    type Ready = { status: string; checks: Record<string, { ok: boolean; reason: string }> };
    const readyz = async (): Promise<{ status: number; body: Ready; ms: number }> => {
      const started = performance.now();
      const response = await fetch(`${stack.sidecar.url}/readyz`, { signal: AbortSignal.timeout(2000) });
      const body = (await response.json()) as Ready;
      return { status: response.status, body, ms: performance.now() - started };
    };
    const ok = await readyz();
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.checks['orthanc']?.ok, true);
    proxy.fault('GET /system', { kind: 'hang' });
    try {
      const deadline = Date.now() + 15_000;
      let last: Awaited<ReturnType<typeof readyz>>;
      for (;;) {
        last = await readyz();
        assert.ok(last.ms < 2000, `/readyz took ${Math.round(last.ms)} ms`);
        if (last.status === 503) break;
        assert.ok(Date.now() < deadline, 'the hung Orthanc shows in /readyz');
        await sleep(250);
      }
      const orthanc = last.body.checks['orthanc'];
      assert.equal(orthanc?.ok, false);
      assert.match(orthanc.reason, /GET \/system/);
      assert.match(orthanc.reason, /last success \d+ s ago/);
      assert.equal(last.body.checks['store']?.ok, true);
      assert.equal(last.body.checks['dicomListener']?.ok, true);
      assert.ok((proxy.served('GET /system')[0] ?? 0) >= 1, 'the probe reached the hung endpoint');
      // The dashboard's banner says it too, with the same reason.
      const alerts = async (): Promise<Array<{ kind: string; text: string }>> => (await stack.sidecar.api<{ alerts: Array<{ kind: string; text: string }> }>('GET', '/api/summary')).body.alerts;
      const unhealthy = (await alerts()).find((a) => a.kind === 'orthanc-unhealthy');
      assert.match(unhealthy?.text ?? '', /^Orthanc is unreachable: .*GET \/system/);
      // Still quick while the hang goes on.
      for (let i = 0; i < 4; i++) {
        assert.ok((await readyz()).ms < 2000);
        await sleep(500);
      }
    } finally {
      proxy.clear();
    }
    await waitUntil(async () => (await readyz()).status === 200, 10_000);
    const after = (await stack.sidecar.api<{ alerts: Array<{ kind: string }> }>('GET', '/api/summary')).body.alerts;
    assert.equal(after.some((a) => a.kind === 'orthanc-unhealthy'), false, 'the banner goes once Orthanc answers');
  });
});
