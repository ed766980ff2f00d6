/**
 * Several sidecars on one PostgreSQL (issue 11), proven with real processes: three nodes, one PostgreSQL,
 * one PACS Orthanc, and a modality Orthanc as the Storage Commitment SCU. A node is killed with SIGKILL
 * during verification, after the N-ACTION-RSP while it waits for a late arrival, and during delivery;
 * PostgreSQL is restarted mid-flight and paused; a node is frozen (SIGSTOP) while it delivers. Each time
 * another node finishes, the modality gets its report, and no acknowledged transaction is lost.
 *
 * The state is read from PostgreSQL itself (one row per transaction), and who did what from each node's
 * log (node ids in every line).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { awaitOrthancReport, prepareInstances, refsOf, sendOrthancCommitment, storePrepared } from '../harness/faults.js';
import { createInstances, type SopRef, type StorageCommitmentReport } from '../harness/orthanc.js';
import { signal, startCluster, type Cluster } from '../harness/cluster.js';
import { waitUntil, type SidecarProcess } from '../harness/sidecar.js';

interface Row {
  id: number;
  state: string;
  lease_owner: string | null;
  delivery_attempts: number;
}

/** How long a takeover may take at most: the lease (3 s) plus a resume tick, a verification and a delivery. */
const TAKEOVER_MS = 30_000;

describe('several sidecars on one PostgreSQL', () => {
  let cluster: Cluster;
  let db: pg.Client;

  before(async () => {
    // Absent instances wait for late arrivals long enough to kill a node meanwhile; a cut-off database
    // answers within 2 s (an N-ACTION then gets 0110H rather than waiting).
    cluster = await startCluster({ sidecarEnv: { STGCMT_ARRIVAL_WAIT: '20s', STGCMT_DATABASE_TIMEOUT: '2s' } });
    db = new pg.Client({ connectionString: cluster.pg.url });
    await db.connect();
    db.on('error', () => undefined); // the restart test cuts this connection too
  });

  after(async () => {
    await db?.end().catch(() => undefined);
    await cluster?.stop();
  });

  /** The transactions with this Transaction UID, read from PostgreSQL (a fresh connection each time). */
  async function rows(uid: string): Promise<Row[]> {
    const client = new pg.Client({ connectionString: cluster.pg.url });
    await client.connect();
    try {
      const result = await client.query<Row>('SELECT id::int AS id, state, lease_owner, delivery_attempts::int AS delivery_attempts FROM transactions WHERE transaction_uid = $1', [uid]);
      return result.rows;
    } finally {
      await client.end();
    }
  }

  async function waitForRow(uid: string, predicate: (row: Row) => boolean, timeoutMs: number): Promise<Row> {
    let found: Row | undefined;
    await waitUntil(async () => {
      const [row] = await rows(uid);
      found = row;
      return row !== undefined && predicate(row);
    }, timeoutMs);
    return found!;
  }

  /** Log lines of a node about this transaction with this message (its node id checked on every line). */
  function linesOf(node: SidecarProcess, nodeId: string, uid: string, msg: string): Array<Record<string, unknown>> {
    return node.logLines().filter((line) => {
      if (line['transactionUid'] !== uid || line['msg'] !== msg) return false;
      assert.equal(line['node'], nodeId, 'every log line names its node');
      return true;
    });
  }

  /** Which nodes logged that they delivered this transaction's report. */
  function deliveredBy(uid: string): string[] {
    return cluster.nodes.flatMap((node, i) => (linesOf(node, cluster.nodeIds[i]!, uid, 'report delivered').length > 0 ? [cluster.nodeIds[i]!] : []));
  }

  function assertAllCommitted(report: StorageCommitmentReport, refs: readonly SopRef[]): void {
    assert.equal(report.Status, 'Success', `report: ${JSON.stringify(report).slice(0, 300)}`);
    assert.deepEqual((report.Success ?? []).map((s) => s.SOPInstanceUID).sort(), refs.map((r) => r.sopInstanceUid).sort());
  }

  /** The one transaction of this UID is REPORTED, with no claim left on it. */
  async function assertReportedOnce(uid: string): Promise<Row> {
    const row = await waitForRow(uid, (r) => r.state === 'REPORTED', 10_000);
    assert.equal((await rows(uid)).length, 1, 'one transaction, whichever node took it');
    assert.equal(row.lease_owner, null, 'the claim was given up with the delivery');
    return row;
  }

  it('every node takes N-ACTIONs; the report reaches the modality', async () => {
    const refs = refsOf(await createInstances(cluster.pacs, 3));
    for (let i = 0; i < cluster.nodes.length; i++) {
      const uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(i), refs);
      assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, 20_000), refs);
      await assertReportedOnce(uid);
      assert.equal(deliveredBy(uid).length, 1);
    }
  });

  it('a node killed with SIGKILL during verification: another node verifies and delivers', async () => {
    const refs = refsOf(await createInstances(cluster.pacs, 5));
    const [a] = cluster.nodes;
    // The PACS paused: node-a records and answers the N-ACTION, then hangs in its lookup, holding its claim.
    cluster.pacs.pause();
    let uid: string;
    try {
      uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(0), refs);
      await waitForRow(uid, (r) => r.lease_owner === 'node-a', 10_000);
      await a!.kill('SIGKILL');
    } finally {
      cluster.pacs.resume();
    }
    assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, TAKEOVER_MS), refs);
    await assertReportedOnce(uid);
    const by = deliveredBy(uid);
    assert.equal(by.length, 1);
    assert.notEqual(by[0], 'node-a');
    await a!.restart();
  });

  it('a node killed after its N-ACTION-RSP while it waits for a late arrival: the instance arrives, another node reports it committed', async () => {
    const late = prepareInstances(1);
    const [a] = cluster.nodes;
    const uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(0), refsOf(late));
    // Waiting for the arrival (STGCMT_ARRIVAL_WAIT 20 s), node-a keeps its claim between rounds.
    await waitForRow(uid, (r) => r.state === 'RECEIVED' && r.lease_owner === 'node-a', 10_000);
    await sleep(1500);
    assert.equal((await rows(uid))[0]!.lease_owner, 'node-a', 'the other nodes leave a live claim alone');
    await a!.kill('SIGKILL');
    await storePrepared(cluster.pacs, late);
    assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, TAKEOVER_MS), refsOf(late));
    await assertReportedOnce(uid);
    assert.notDeepEqual(deliveredBy(uid), ['node-a']);
    await a!.restart();
  });

  it('a node killed with SIGKILL during delivery: another node delivers the report', async () => {
    const refs = refsOf(await createInstances(cluster.pacs, 2));
    const [, b] = cluster.nodes;
    // The modality paused after the N-ACTION-RSP: node-b's association to it hangs in negotiation.
    const uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(1), refs);
    cluster.modality.pause();
    try {
      await waitUntil(async () => linesOf(b!, 'node-b', uid, 'delivering report').length > 0, 10_000);
      await b!.kill('SIGKILL');
    } finally {
      cluster.modality.resume();
    }
    assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, TAKEOVER_MS), refs);
    await assertReportedOnce(uid);
    const by = deliveredBy(uid);
    assert.equal(by.length, 1);
    assert.notEqual(by[0], 'node-b');
    await b!.restart();
  });

  it('PostgreSQL restarted mid-flight: the acknowledged transaction is not lost', async () => {
    const refs = refsOf(await createInstances(cluster.pacs, 4));
    cluster.pacs.pause();
    let uid: string;
    try {
      uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(2), refs);
      await waitForRow(uid, (r) => r.state === 'RECEIVED', 10_000);
      await cluster.pg.restart();
    } finally {
      cluster.pacs.resume();
    }
    assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, TAKEOVER_MS), refs);
    await assertReportedOnce(uid);
  });

  it('a node cut off from PostgreSQL answers 0110H (the modality keeps its images) and says so in /readyz; then recovers', async () => {
    const refs = refsOf(await createInstances(cluster.pacs, 1));
    const node = cluster.nodes[2]!;
    cluster.pg.pause();
    try {
      await waitUntil(async () => (await fetch(`${node.url}/readyz`)).status === 503, 15_000);
      const readiness = (await (await fetch(`${node.url}/readyz`)).json()) as { checks: Record<string, { ok: boolean; reason: string }> };
      assert.equal(readiness.checks['store']?.ok, false, JSON.stringify(readiness));
      // Orthanc's job fails on the 0110H answer (no report is to be expected).
      const refused = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(2), refs, 10).then(
        () => 'answered',
        (error: unknown) => String(error),
      );
      assert.notEqual(refused, 'answered', 'no N-ACTION is acknowledged without being recorded');
      assert.ok(node.logLines().some((l) => l['msg'] === 'could not record N-ACTION'), 'the refusal is logged');
    } finally {
      cluster.pg.resume();
    }
    await waitUntil(async () => (await fetch(`${node.url}/readyz`)).status === 200, 15_000);
    const uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(2), refs);
    assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, 20_000), refs);
  });

  it('a node frozen (SIGSTOP) while delivering loses the report to another node, and sends nothing when it wakes', async () => {
    const refs = refsOf(await createInstances(cluster.pacs, 2));
    const [a] = cluster.nodes;
    const uid = await sendOrthancCommitment(cluster.modality, cluster.modalityNameOf(0), refs);
    cluster.modality.pause();
    let frozen = false;
    try {
      await waitUntil(async () => linesOf(a!, 'node-a', uid, 'delivering report').length > 0, 10_000);
      signal(a!, 'SIGSTOP');
      frozen = true;
      // Past node-a's lease: node-b or node-c claims the report and opens its own association.
      await sleep(4500);
    } finally {
      cluster.modality.resume();
    }
    try {
      assertAllCommitted(await awaitOrthancReport(cluster.modality, uid, TAKEOVER_MS), refs);
      const row = await assertReportedOnce(uid);
      const by = deliveredBy(uid);
      assert.equal(by.length, 1);
      assert.notEqual(by[0], 'node-a');
      // node-a wakes up with its association answered: it must find its claim gone and send nothing.
      signal(a!, 'SIGCONT');
      frozen = false;
      await waitUntil(async () => a!.logLines().some((l) => l['transactionId'] === row.id || l['transactionUid'] === uid ? /another node/.test(String(l['msg'])) : false), 15_000);
      await sleep(1000);
      assert.deepEqual(linesOf(a!, 'node-a', uid, 'report delivered'), [], 'node-a delivered nothing');
      const after = (await rows(uid))[0]!;
      assert.equal(after.state, 'REPORTED');
      assert.equal(after.delivery_attempts, row.delivery_attempts, "node-a's late attempt is not recorded over the other node's");
    } finally {
      if (frozen) signal(a!, 'SIGCONT');
    }
  });
});
