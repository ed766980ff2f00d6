/**
 * The pure parts of the verification policies: their order, which one a calling AE gets (never weaker
 * than STGCMT_VERIFY), the fetch budget, what each policy asks of Orthanc, and the settings and peers
 * file that choose them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { Integrity } from '../../src/orthanc/client.js';
import { caseInsensitiveAet, diffPeers, exactAet, mergePeers, readPeerFile, type PeerEntry } from '../../src/peers/peer-directory.js';
import {
  choosePolicy,
  createPolicy,
  PeerPolicyTable,
  POLICY_NAMES,
  PolicySelector,
  ReadBudget,
  stricterOf,
  type StoredFileReader,
} from '../../src/transactions/verification-policy.js';

const LIMITS = { maxBytes: 1000, maxMs: 60_000 };

/** Records which check each policy asked for; answers every ID with `answer`. */
function recordingReader(answer: Integrity = 'ok'): StoredFileReader & { calls: string[]; budgets: ReadBudget[] } {
  const calls: string[] = [];
  const budgets: ReadBudget[] = [];
  const all = (ids: readonly string[]): Map<string, Integrity> => new Map(ids.map((id) => [id, answer]));
  return {
    calls,
    budgets,
    checkStoredSizeMany: async (ids) => (calls.push(`size:${ids.join(',')}`), all(ids)),
    fetchStoredFileMany: async (ids, budget) => (calls.push(`fetch:${ids.join(',')}`), budgets.push(budget), all(ids)),
    verifyMd5Many: async (ids) => (calls.push(`md5:${ids.join(',')}`), all(ids)),
  };
}

describe('verification policy order and choice', () => {
  it('orders exists < size < fetch < md5', () => {
    assert.deepEqual([...POLICY_NAMES], ['exists', 'size', 'fetch', 'md5']);
    assert.equal(stricterOf('size', 'fetch'), 'fetch');
    assert.equal(stricterOf('md5', 'exists'), 'md5');
  });

  it('a peer gets its own policy only when it is stricter than the global one', () => {
    assert.deepEqual(choosePolicy('size', undefined), { effective: 'size' });
    assert.deepEqual(choosePolicy('size', 'size'), { effective: 'size' });
    assert.deepEqual(choosePolicy('size', 'md5'), { effective: 'md5' });
    assert.deepEqual(choosePolicy('fetch', 'exists'), { effective: 'fetch', ignoredWeaker: 'exists' });
    assert.deepEqual(choosePolicy('md5', 'fetch'), { effective: 'md5', ignoredWeaker: 'fetch' });
  });

  it('the peer table keys AE titles like the peer directory and reports ignored entries once per change', () => {
    const table = new PeerPolicyTable('size', caseInsensitiveAet);
    const entries = [
      { aeTitle: 'CT1', verify: 'md5' as const },
      { aeTitle: 'MR1', verify: 'exists' as const },
      { aeTitle: 'US1' },
    ];
    assert.deepEqual(table.update(entries), { ignored: [{ aeTitle: 'MR1', verify: 'exists' }], changed: [{ aeTitle: 'CT1', policy: 'md5' }] });
    assert.deepEqual(table.update(entries), { changed: [] }, 'same file again: said already');
    assert.equal(table.policyFor('ct1'), 'md5', 'ignoring case');
    assert.equal(table.policyFor('MR1'), 'size', 'weaker entry ignored');
    assert.equal(table.policyFor('US1'), 'size');
    assert.equal(table.policyFor('UNKNOWN'), 'size');
    // The weaker entry is gone, then comes back: said again.
    assert.deepEqual(table.update([{ aeTitle: 'CT1', verify: 'fetch' }]), { changed: [{ aeTitle: 'CT1', policy: 'fetch' }] });
    assert.equal(table.policyFor('CT1'), 'fetch', 'a new reading replaces the old one');
    assert.deepEqual(table.update(entries), { ignored: [{ aeTitle: 'MR1', verify: 'exists' }], changed: [{ aeTitle: 'CT1', policy: 'md5' }] });
    assert.deepEqual(table.update([]), { changed: [{ aeTitle: 'CT1', policy: 'size' }] }, 'entry gone: back to the global policy');

    const strict = new PeerPolicyTable('exists', exactAet);
    strict.update([{ aeTitle: 'CT1', verify: 'md5' }]);
    assert.equal(strict.policyFor('ct1'), 'exists', 'exact comparison: another AE title');
    assert.equal(strict.policyFor('CT1'), 'md5');
  });

  it('the selector hands out the policy of the calling AE, asked at each call', async () => {
    let configured: (typeof POLICY_NAMES)[number] = 'exists';
    const reader = recordingReader();
    const selector = new PolicySelector(() => configured, reader, LIMITS);
    assert.equal(selector.forCaller('CT1').name, 'exists');
    configured = 'md5';
    const policy = selector.forCaller('CT1');
    assert.equal(policy.name, 'md5');
    assert.deepEqual([...(await policy.begin().check(['a', 'b']))], [['a', 'ok'], ['b', 'ok']]);
    assert.deepEqual(reader.calls, ['md5:a,b']);
  });
});

describe('what each policy asks of Orthanc', () => {
  it('exists reads nothing and finds every instance ok', async () => {
    const reader = recordingReader('corrupt');
    const found = await createPolicy('exists', reader, LIMITS).begin().check(['a', 'b']);
    assert.deepEqual([...found], [['a', 'ok'], ['b', 'ok']]);
    assert.deepEqual(reader.calls, []);
  });

  it('size, fetch and md5 pass on what Orthanc found', async () => {
    for (const [name, call] of [['size', 'size:a'], ['fetch', 'fetch:a'], ['md5', 'md5:a']] as const) {
      const reader = recordingReader('corrupt');
      assert.deepEqual([...(await createPolicy(name, reader, LIMITS).begin().check(['a']))], [['a', 'corrupt']], name);
      assert.deepEqual(reader.calls, [call]);
    }
  });

  it('fetch shares one budget across the checks of a round, and a new round gets a new one', async () => {
    const reader = recordingReader();
    const policy = createPolicy('fetch', reader, LIMITS);
    const round = policy.begin();
    await round.check(['a']);
    await round.check(['b']);
    assert.equal(reader.budgets.length, 2);
    assert.equal(reader.budgets[0], reader.budgets[1], 'one budget per round');
    await policy.begin().check(['c']);
    assert.notEqual(reader.budgets[2], reader.budgets[0]);
    assert.deepEqual(reader.budgets[0]!.limits, LIMITS);
  });
});

describe('ReadBudget', () => {
  it('counts bytes: past the limit no read may start and take() says so', () => {
    const budget = new ReadBudget({ maxBytes: 100, maxMs: 60_000 });
    assert.equal(budget.open, true);
    assert.equal(budget.take(60), true);
    assert.equal(budget.take(40), true);
    assert.equal(budget.open, false, 'exactly spent: no new read');
    assert.equal(budget.take(1), false);
    assert.equal(budget.bytesRead, 101);
    budget.end();
  });

  it('closes at its deadline, and its signal aborts reads in flight', async () => {
    let now = 1000;
    const budget = new ReadBudget({ maxBytes: 1e9, maxMs: 30 }, () => now);
    const signal = budget.signal;
    assert.equal(budget.open, true);
    now = 1030;
    assert.equal(budget.open, false, 'deadline reached');
    // The timer runs on the real clock (30 ms) and is unref'd: keep the test's event loop alive meanwhile.
    const keepAlive = setTimeout(() => undefined, 5000);
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    clearTimeout(keepAlive);
    assert.equal(signal.aborted, true);
    budget.end();
  });

  it('a later check of the same round is still cut off at the deadline', async () => {
    const budget = new ReadBudget({ maxBytes: 1e9, maxMs: 40 });
    void budget.signal;
    budget.end(); // the first check of the round is over
    const keepAlive = setTimeout(() => undefined, 5000);
    const signal = budget.signal; // the second one starts
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    clearTimeout(keepAlive);
    assert.equal(signal.aborted, true);
    budget.end();
  });
});

describe('settings and peers file', () => {
  it('STGCMT_VERIFY takes the four policies and nothing else; the fetch budget has defaults', () => {
    for (const name of POLICY_NAMES) assert.equal(loadConfig({ STGCMT_VERIFY: name }).config.verifyPolicy, name);
    assert.throws(() => loadConfig({ STGCMT_VERIFY: 'sha1' }), (error: unknown) => error instanceof ConfigError && /STGCMT_VERIFY/.test(error.message));
    const { config } = loadConfig({});
    assert.equal(config.fetchMaxBytes, 64 * 1024 ** 3);
    assert.equal(config.fetchMaxTime, 30 * 60_000);
    assert.equal(loadConfig({ STGCMT_VERIFY_FETCH_MAX_TIME: '2m', STGCMT_VERIFY_FETCH_MAX_BYTES: '1048576' }).config.fetchMaxTime, 120_000);
    assert.throws(() => loadConfig({ STGCMT_VERIFY_FETCH_MAX_BYTES: '0' }), /STGCMT_VERIFY_FETCH_MAX_BYTES/);
  });

  it('a peers-file entry may set verify; an unknown policy refuses the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stgcmt-peers-verify-'));
    const file = join(dir, 'peers.json');
    writeFileSync(file, JSON.stringify({ peers: [{ aet: 'CT1', host: 'ct1.example', port: 104, verify: 'fetch' }, { aet: 'MR1', host: 'mr1.example', port: 104 }] }));
    const entries = await readPeerFile(file);
    assert.equal(entries[0]!.verify, 'fetch');
    assert.equal('verify' in entries[1]!, false);
    writeFileSync(file, JSON.stringify({ peers: [{ aet: 'CT1', host: 'ct1.example', port: 104, verify: 'checksum' }] }));
    await assert.rejects(readPeerFile(file), /verify/);
  });

  it('a verify setting alone does not change where reports go: not a changed peer (the policy table says it)', () => {
    const before: PeerEntry = { aeTitle: 'CT1', host: 'ct1.example', port: 104, tls: false, source: 'file' };
    const after: PeerEntry = { ...before, verify: 'md5' };
    assert.deepEqual(diffPeers(mergePeers([[before]]), mergePeers([[after]])).changed, []);
  });
});
