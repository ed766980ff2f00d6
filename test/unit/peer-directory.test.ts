/**
 * The peer directory changes only after a valid answer, writes its stored copy only from one, and a hung
 * resolver does not hang a refresh.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diffPeers, mergePeers, PeerDirectory, readPeerFile, type PeerEntry, type PeerRefresh } from '../../src/peers/peer-directory.js';

const CT1: PeerEntry = { aeTitle: 'CT1', host: 'ct1.example', port: 104, tls: false, source: 'orthanc' };
const MR1: PeerEntry = { aeTitle: 'MR1', host: 'mr1.example', port: 104, tls: false, source: 'orthanc' };
const US1: PeerEntry = { aeTitle: 'US1', host: 'us1.example', port: 11112, tls: false, source: 'file' };
const resolver = async (): Promise<string[]> => ['192.0.2.1'];

describe('PeerDirectory', () => {
  it('keeps its list and its stored copy when a source gives entries that are not peers', async () => {
    let answer: unknown[] = [CT1];
    const saved: PeerEntry[][] = [];
    const directory = new PeerDirectory([async () => answer as PeerEntry[]], { load: () => [], save: (entries) => void saved.push([...entries]) }, { resolver: async () => ['192.0.2.1'] });
    await directory.refresh();
    assert.deepEqual(directory.list().map((p) => p.aeTitle), ['CT1']);
    assert.equal(saved.length, 1);
    for (const wrong of [[undefined], [{ aeTitle: undefined, host: undefined, port: undefined, tls: false, source: 'orthanc' }], [{ ...CT1, port: 0 }], [1, 2]]) {
      answer = wrong;
      await assert.rejects(directory.refresh());
      assert.deepEqual(directory.list().map((p) => p.aeTitle), ['CT1'], JSON.stringify(wrong));
      assert.equal(directory.find('CT1')?.host, 'ct1.example');
      assert.equal(saved.length, 1, 'the stored copy is not overwritten');
    }
  });

  it('a hung resolver does not hang the refresh: the host keeps the addresses it had', async () => {
    let hang = false;
    const asked: string[] = [];
    const resolver = (host: string): Promise<string[]> => {
      asked.push(host);
      return hang ? new Promise<string[]>(() => undefined) : Promise.resolve(['192.0.2.1']);
    };
    const directory = new PeerDirectory([async () => [CT1]], undefined, { resolver, dnsTimeoutMs: 200 });
    await directory.refresh();
    assert.deepEqual(directory.find('CT1')?.addresses, ['192.0.2.1']);
    hang = true;
    const started = Date.now();
    await directory.refresh();
    const took = Date.now() - started;
    assert.equal(asked.length, 2, 'the resolver was asked again');
    assert.ok(took < 1000, `refresh took ${took} ms`);
    assert.deepEqual(directory.find('CT1')?.addresses, ['192.0.2.1']);
  });

  it('tells each refresh what changed, by AE title, and when', async () => {
    let orthanc: PeerEntry[] = [CT1];
    const refreshes: PeerRefresh[] = [];
    let clock = 1_000_000;
    const directory = new PeerDirectory([async () => orthanc, async () => [US1]], undefined, { resolver, onRefresh: (r) => refreshes.push(r), now: () => clock });
    assert.deepEqual(directory.status(), { known: 0, refreshedAt: undefined });
    await directory.refresh();
    assert.deepEqual(refreshes.at(-1), { added: ['CT1', 'US1'], removed: [], changed: [], known: 2, orthancEmptied: false, orthancBefore: 0 });
    assert.deepEqual(directory.status(), { known: 2, refreshedAt: 1_000_000 });
    orthanc = [{ ...CT1, port: 4104 }, MR1];
    clock += 60_000;
    await directory.refresh();
    assert.deepEqual(refreshes.at(-1), { added: ['MR1'], removed: [], changed: ['CT1'], known: 3, orthancEmptied: false, orthancBefore: 1 });
    assert.equal(directory.status().refreshedAt, 1_060_000);
    await directory.refresh();
    assert.deepEqual(refreshes.at(-1), { added: [], removed: [], changed: [], known: 3, orthancEmptied: false, orthancBefore: 2 });
  });

  it("says once that Orthanc's modality list became empty, and again only after it filled up again", async () => {
    let orthanc: PeerEntry[] = [CT1, MR1];
    const refreshes: PeerRefresh[] = [];
    const directory = new PeerDirectory([async () => orthanc, async () => [US1]], undefined, { resolver, onRefresh: (r) => refreshes.push(r) });
    await directory.refresh();
    orthanc = [];
    await directory.refresh();
    assert.deepEqual(refreshes.at(-1), { added: [], removed: ['CT1', 'MR1'], changed: [], known: 1, orthancEmptied: true, orthancBefore: 2 });
    await directory.refresh();
    await directory.refresh();
    assert.equal(refreshes.filter((r) => r.orthancEmptied).length, 1, 'once, not at every refresh');
    orthanc = [CT1];
    await directory.refresh();
    orthanc = [];
    await directory.refresh();
    assert.equal(refreshes.filter((r) => r.orthancEmptied).length, 2);
  });

  it("compares the first answer with the stored list: Orthanc emptied while we were down is said too", async () => {
    const refreshes: PeerRefresh[] = [];
    const directory = new PeerDirectory([async () => []], { load: () => [CT1], save: () => undefined }, { resolver, onRefresh: (r) => refreshes.push(r) });
    await directory.refresh();
    assert.deepEqual(refreshes, [{ added: [], removed: ['CT1'], changed: [], known: 0, orthancEmptied: true, orthancBefore: 1 }]);
  });

  it('a failed refresh tells nothing and keeps the time of the last good one', async () => {
    let fail = false;
    const refreshes: PeerRefresh[] = [];
    let clock = 5000;
    const directory = new PeerDirectory([async () => (fail ? Promise.reject(new Error('ECONNREFUSED')) : [CT1])], undefined, { resolver, onRefresh: (r) => refreshes.push(r), now: () => clock });
    await directory.refresh();
    fail = true;
    clock = 9000;
    await assert.rejects(directory.refresh());
    assert.equal(refreshes.length, 1);
    assert.deepEqual(directory.status(), { known: 1, refreshedAt: 5000 });
  });
});

describe('diffPeers', () => {
  it('names added, removed and readdressed AE titles; a same entry is no change', () => {
    const before = mergePeers([[CT1, MR1]]);
    const after = mergePeers([[{ ...CT1, tls: true }, US1]]);
    assert.deepEqual(diffPeers(before, after), { added: ['US1'], removed: ['MR1'], changed: ['CT1'] });
    assert.deepEqual(diffPeers(before, mergePeers([[MR1, CT1]])), { added: [], removed: [], changed: [] });
    assert.deepEqual(diffPeers(before, mergePeers([[{ ...MR1, host: 'mr1-new.example' }]])), { added: [], removed: ['CT1'], changed: ['MR1'] });
  });
});

describe('PeerDirectory lookup by AE title', () => {
  const ct1Lower: PeerEntry = { ...CT1, aeTitle: 'ct1' };

  it("ignores case by default, as Orthanc does (StrictAetComparison false), and finds the configured title", async () => {
    const directory = new PeerDirectory([async () => [ct1Lower]], undefined, { resolver });
    await directory.refresh();
    for (const asked of ['ct1', 'CT1', 'Ct1', ' CT1 ']) assert.equal(directory.find(asked)?.aeTitle, 'ct1', asked);
    assert.equal(directory.find('CT2'), undefined);
  });

  it('compares exactly with strictAetComparison, and names a peer that differs only in case', async () => {
    const directory = new PeerDirectory([async () => [ct1Lower]], undefined, { resolver, strictAetComparison: true });
    await directory.refresh();
    assert.equal(directory.find('ct1')?.aeTitle, 'ct1');
    assert.equal(directory.find('CT1'), undefined);
    assert.equal(directory.caseVariantOf('CT1'), 'ct1');
    assert.equal(directory.caseVariantOf('MR1'), undefined);
  });

  it('one peer per title regardless of case: a file entry overrides Orthanc\'s in another case', async () => {
    const fileEntry: PeerEntry = { ...ct1Lower, host: 'ct1-file.example', source: 'file' };
    const directory = new PeerDirectory([async () => [CT1], async () => [fileEntry]], undefined, { resolver });
    await directory.refresh();
    assert.deepEqual(directory.list().map((p) => [p.aeTitle, p.host]), [['ct1', 'ct1-file.example']]);
    const strict = new PeerDirectory([async () => [CT1], async () => [fileEntry]], undefined, { resolver, strictAetComparison: true });
    await strict.refresh();
    assert.deepEqual(strict.list().map((p) => p.aeTitle).sort(), ['CT1', 'ct1']);
  });

  it('reports a change of case of a configured title as a change, not as a removal and an addition', async () => {
    let orthanc: PeerEntry[] = [CT1];
    const refreshes: PeerRefresh[] = [];
    const directory = new PeerDirectory([async () => orthanc], undefined, { resolver, onRefresh: (r) => refreshes.push(r) });
    await directory.refresh();
    orthanc = [ct1Lower];
    await directory.refresh();
    assert.deepEqual(refreshes.at(-1), { added: [], removed: [], changed: ['ct1'], known: 1, orthancEmptied: false, orthancBefore: 1 });
  });
});

describe('peers that cannot be called back', () => {
  it('the peer file says callback: false per peer; absent means true, as for every Orthanc modality', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'stgcmt-peers-')), 'peers.json');
    writeFileSync(file, JSON.stringify({ peers: [{ aet: 'CT1', host: 'ct1.example', port: 104, callback: false }, { aet: 'US1', host: 'us1.example', port: 104 }] }));
    const entries = await readPeerFile(file);
    assert.deepEqual(entries.map((e) => [e.aeTitle, e.callback]), [['CT1', false], ['US1', undefined]]);
    const directory = new PeerDirectory([async () => [CT1, MR1], async () => entries], undefined, { resolver });
    await directory.refresh();
    assert.equal(directory.find('CT1')?.callback, false, 'the file entry overrides Orthanc\'s for this');
    assert.equal(directory.find('MR1')?.callback, true);
    assert.equal(directory.find('US1')?.callback, true);
    writeFileSync(file, JSON.stringify({ peers: [{ aet: 'CT1', host: 'ct1.example', port: 104, callback: 'no' }] }));
    await assert.rejects(readPeerFile(file), /callback/);
  });

  it('a change of the callback flag is a change of the peer', () => {
    assert.deepEqual(diffPeers(mergePeers([[CT1]]), mergePeers([[{ ...CT1, callback: false }]])), { added: [], removed: [], changed: ['CT1'] });
  });

  it('at a start with Orthanc unreachable, the stored list (which has no callback flag) takes callback: false from the peer file', async () => {
    const directory = new PeerDirectory(
      [async () => Promise.reject(new Error('ECONNREFUSED')), async () => [{ ...CT1, source: 'file' as const, callback: false }]],
      { load: () => [CT1, MR1], save: () => undefined },
      { resolver },
    );
    await assert.rejects(directory.refresh(), /ECONNREFUSED/);
    assert.equal(directory.find('CT1')?.callback, false);
    assert.equal(directory.find('MR1')?.callback, true);
  });
});
