/**
 * Verification policies (STGCMT_VERIFY and a peer's "verify" in the peers file) against files damaged on
 * the real PACS's disk: a flipped byte, a truncated file, a deleted file. One table says which policy
 * catches which fault; every cell of it is checked end to end, each policy chosen per calling AE title
 * through the peers file (the global policy is `exists`), each report received by our dcmjs SCU.
 *
 * What Orthanc 1.10.1 showed (measured while writing this): .../attachments/dicom/info and .../size
 * answer from the index, whatever is on disk; GET .../data ignores Range and answers 500 for a deleted
 * file, and 200 with the shorter length for a truncated one; only the MD5 re-read sees a flipped byte.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { requestCommitment, type ScuTarget } from '../../src/cli/commitment-scu.js';
import { FailureReason } from '../../src/commitment/types.js';
import type { PolicyName } from '../../src/transactions/verification-policy.js';
import { refsOf, storedFilePath, waitForTransaction } from '../harness/faults.js';
import { createInstances, freePort, type CreatedInstance } from '../harness/orthanc.js';
import { CATCHES, type Fault } from '../harness/policy-faults.js';
import { waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';


/** The calling AE title whose peers-file entry sets each policy (`exists` is the global one: no entry). */
const AET: Record<PolicyName, string> = { exists: 'POLEXISTS', size: 'POLSIZE', fetch: 'POLFETCH', md5: 'POLMD5' };

describe('verification policies against files damaged on the PACS disk', () => {
  let stack: Stack;
  let peersDir: string;
  let peersFile: string;
  let dummyPort: number;
  const target = (callingAeTitle: string): ScuTarget => ({ host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle, calledAeTitle: 'STGCMT', timeoutMs: 10_000 });

  const writePeers = (verify: Partial<Record<string, PolicyName>>): void => {
    writeFileSync(peersFile, JSON.stringify({ peers: Object.values(AET).map((aet) => ({ aet, host: '127.0.0.1', port: dummyPort, ...(verify[aet] ? { verify: verify[aet] } : {}) })) }));
  };

  /** Damages one instance per fault on disk, after reading each through Orthanc (as the md5 tests do). */
  async function damaged(): Promise<{ intact: CreatedInstance; byFault: Record<Fault, CreatedInstance> }> {
    const [intact, flipped, cut, deleted] = await createInstances(stack.pacs, 4);
    for (const instance of [intact!, flipped!, cut!, deleted!]) await stack.pacs.rest('GET', `/instances/${instance.orthancId}/file`);
    const flippedPath = await storedFilePath(stack.pacs, flipped!.orthancId);
    const bytes = await readFile(flippedPath);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0xff;
    await writeFile(flippedPath, bytes);
    await truncate(await storedFilePath(stack.pacs, cut!.orthancId), 100);
    await rm(await storedFilePath(stack.pacs, deleted!.orthancId));
    return { intact: intact!, byFault: { 'flipped byte': flipped!, truncated: cut!, deleted: deleted! } };
  }

  /** Commits intact + damaged instances from `aeTitle`; returns the SOP Instance UIDs committed and failed (with reasons). */
  async function commit(aeTitle: string, instances: readonly CreatedInstance[]): Promise<{ committed: Set<string>; failed: Map<string, number> }> {
    const outcome = await requestCommitment(target(aeTitle), refsOf(instances), { keepOpenMs: 20_000, reportTimeoutMs: 20_000 });
    assert.equal(outcome.nAction.status, 0, `${aeTitle}: N-ACTION status`);
    assert.ok(outcome.report, `${aeTitle}: report received`);
    await waitForTransaction(stack.sidecar, { callingAet: aeTitle, transactionUid: outcome.transactionUid }, (t) => t.state === 'REPORTED', 5000);
    return {
      committed: new Set(outcome.report.committed.map((r) => r.sopInstanceUid)),
      failed: new Map(outcome.report.failed.map((f) => [f.sopInstanceUid, f.failureReason])),
    };
  }

  before(async () => {
    // The storage settings we ship: no storage cache (Orthanc re-reads the file), MD5s recorded at reception.
    const shipped = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'orthanc-config', 'orthanc.json'), 'utf8')) as Record<string, unknown>;
    dummyPort = await freePort();
    peersDir = mkdtempSync(join('/dev/shm', 'stgcmt-policy-peers-'));
    peersFile = join(peersDir, 'peers.json');
    writePeers({ [AET.size]: 'size', [AET.fetch]: 'fetch', [AET.md5]: 'md5' });
    stack = await startStack({
      sidecarEnv: { STGCMT_PEERS_FILE: peersFile, STGCMT_VERIFY: 'exists' },
      pacsConfig: { MaximumStorageCacheSize: shipped['MaximumStorageCacheSize'], StoreMD5ForAttachments: shipped['StoreMD5ForAttachments'] },
    });
  }, { timeout: 90_000 });

  after(async () => {
    await stack?.stop();
    if (peersDir) rmSync(peersDir, { recursive: true, force: true });
  }, { timeout: 90_000 });

  it('each policy, set per calling AE in the peers file, catches exactly the faults of its row of the table', { timeout: 120_000 }, async () => {
    const { intact, byFault } = await damaged();
    const instances = [intact, ...Object.values(byFault)];
    const seen: Record<string, Record<string, boolean>> = {};
    for (const policy of Object.keys(CATCHES) as PolicyName[]) {
      const { committed, failed } = await commit(AET[policy], instances);
      assert.ok(committed.has(intact.sopInstanceUid), `${policy}: the intact instance is committed`);
      seen[policy] = {};
      for (const [fault, instance] of Object.entries(byFault) as Array<[Fault, CreatedInstance]>) {
        seen[policy][fault] = failed.has(instance.sopInstanceUid);
        // Caught means failed with 0110H; not caught means committed (never silently left out).
        if (seen[policy][fault]) assert.equal(failed.get(instance.sopInstanceUid), FailureReason.ProcessingFailure, `${policy} / ${fault}: failure reason`);
        else assert.ok(committed.has(instance.sopInstanceUid), `${policy} / ${fault}: committed when not caught`);
      }
      const verified = stack.sidecar.logLines().filter((l) => l['msg'] === 'transaction verified' && l['callingAet'] === AET[policy]).at(-1);
      assert.equal(verified?.['policy'], policy, `${AET[policy]} was verified under ${policy}`);
    }
    assert.deepEqual(seen, CATCHES);
  });

  it('a peer entry weaker than STGCMT_VERIFY is ignored with a warning; the file is read again without a restart', { timeout: 120_000 }, async () => {
    // Global fetch; POLEXISTS asks for exists (weaker: ignored), POLMD5 for md5 (stricter: applies).
    writePeers({ [AET.exists]: 'exists', [AET.md5]: 'md5' });
    await stack.sidecar.restart({ STGCMT_VERIFY: 'fetch', STGCMT_PEERS_REFRESH: '1s' });
    const { intact, byFault } = await damaged();
    const instances = [intact, ...Object.values(byFault)];

    const weak = await commit(AET.exists, instances);
    assert.deepEqual([...weak.failed.keys()].sort(), [byFault.truncated.sopInstanceUid, byFault.deleted.sopInstanceUid].sort(), 'fetch applies to the peer that asked for exists');
    const warning = stack.sidecar.logLines().find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('weaker verification than STGCMT_VERIFY=fetch'));
    assert.ok(warning, 'the ignored setting is logged');
    assert.deepEqual(warning['peers'], [AET.exists]);

    // A peer without an entry gets the global policy; a stricter entry applies.
    assert.deepEqual([...(await commit(AET.size, instances)).failed.keys()].sort(), [byFault.truncated.sopInstanceUid, byFault.deleted.sopInstanceUid].sort(), 'no entry: the global fetch');
    assert.equal((await commit(AET.md5, instances)).failed.size, 3, 'md5 entry: every fault');

    // The file changed while running: the next verification uses it once the peers are re-read (STGCMT_PEERS_REFRESH).
    const linesBefore = stack.sidecar.logLines().length;
    writePeers({ [AET.size]: 'md5' });
    await waitUntil(() => stack.sidecar.logLines().slice(linesBefore).some((l) => l['msg'] === 'verification policy of peers set or changed by the peers file' && (l['changed'] as string[] | undefined)?.includes(`${AET.size}: md5`)), 10_000);
    assert.equal((await commit(AET.size, instances)).failed.size, 3, 'the new entry applies');
  });
});
