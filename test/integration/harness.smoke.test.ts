// Smoke test of the Orthanc harness itself: two real Orthanc 1.10.1 servers,
// storage commitment from one (SCU) to the other's built-in SCP.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  createInstances,
  freePort,
  newUid,
  startOrthanc,
  storageCommitment,
  type CreatedInstance,
  type OrthancServer,
} from '../harness/orthanc.js';

const NO_SUCH_OBJECT_INSTANCE = 0x0112;

let pacs: OrthancServer;
let modality: OrthancServer;
let instances: CreatedInstance[];

before(async () => {
  // Each side must know the other's DICOM port before it starts.
  const pacsDicomPort = await freePort();
  const modalityDicomPort = await freePort();
  [pacs, modality] = await Promise.all([
    startOrthanc({
      name: 'pacs',
      aet: 'PACS',
      dicomPort: pacsDicomPort,
      httpPort: await freePort(),
      dicomModalities: { modality: { aet: 'MODALITY', host: '127.0.0.1', port: modalityDicomPort } },
    }),
    startOrthanc({
      name: 'modality',
      aet: 'MODALITY',
      dicomPort: modalityDicomPort,
      httpPort: await freePort(),
      dicomModalities: { pacs: { aet: 'PACS', host: '127.0.0.1', port: pacsDicomPort } },
    }),
  ]);
  instances = await createInstances(pacs, 20);
});

after(async () => {
  await Promise.all([pacs?.stop(), modality?.stop()]);
});

test('servers answer /system with their AET and ports', async () => {
  const system = await pacs.rest<{ DicomAet: string; DicomPort: number; HttpPort: number; Version: string }>(
    'GET',
    '/system',
  );
  assert.equal(system.DicomAet, 'PACS');
  assert.equal(system.DicomPort, pacs.dicomPort);
  assert.equal(system.HttpPort, pacs.httpPort);
  assert.equal(pacs.url, `http://127.0.0.1:${pacs.httpPort}`);
});

test('createInstances stores instances whose Orthanc IDs match', async () => {
  assert.equal(instances.length, 20);
  assert.equal(new Set(instances.map((i) => i.sopInstanceUid)).size, 20);
  const stats = await pacs.rest<{ CountInstances: number }>('GET', '/statistics');
  assert.equal(stats.CountInstances, 20);
  const first = instances[0]!;
  const tags = await pacs.rest<{ MainDicomTags: { SOPInstanceUID: string } }>('GET', `/instances/${first.orthancId}`);
  assert.equal(tags.MainDicomTags.SOPInstanceUID, first.sopInstanceUid);
  const sopClass = await pacs.rest<string>('GET', `/instances/${first.orthancId}/metadata/SopClassUid`);
  assert.equal(sopClass, first.sopClassUid);
});

test('storage commitment via Orthanc SCU -> Orthanc SCP reports exactly the unknown UIDs as failed', async () => {
  const sopClassUid = instances[0]!.sopClassUid;
  const unknown = [
    { sopClassUid, sopInstanceUid: newUid() },
    { sopClassUid, sopInstanceUid: newUid() },
  ];
  const result = await storageCommitment(modality, 'pacs', [...instances, ...unknown], { timeoutMs: 15_000 });

  assert.equal(result.status, 'Failure');
  assert.equal(result.raw.RemoteAET, 'PACS');
  assert.ok(result.elapsedMs > 0);

  const failures = result.raw.Failures ?? [];
  assert.deepEqual(
    failures.map((f) => f.SOPInstanceUID).sort(),
    unknown.map((u) => u.sopInstanceUid).sort(),
  );
  for (const f of failures) {
    assert.equal(f.FailureReason, NO_SUCH_OBJECT_INSTANCE);
    assert.equal(f.SOPClassUID, sopClassUid);
  }
  assert.deepEqual(
    (result.raw.Success ?? []).map((s) => s.SOPInstanceUID).sort(),
    instances.map((i) => i.sopInstanceUid).sort(),
  );
});

test('storage commitment of stored instances only is a Success', async () => {
  const result = await storageCommitment(modality, 'pacs', instances.slice(0, 5));
  assert.equal(result.status, 'Success');
  assert.equal(result.raw.Success?.length, 5);
  assert.equal(result.raw.Failures?.length, 0);
});

test('restart keeps data, ports and modalities added at run time; pause/resume', async () => {
  const extra = await startOrthanc({ name: 'lifecycle', aet: 'LIFE' });
  try {
    await createInstances(extra, 3);
    await extra.addModality('pacs', { aet: 'PACS', host: '127.0.0.1', port: pacs.dicomPort });
    const { httpPort, dicomPort } = extra;
    const firstPid = extra.pid;

    await extra.restart();
    assert.notEqual(extra.pid, firstPid);
    assert.equal(extra.httpPort, httpPort);
    assert.equal(extra.dicomPort, dicomPort);
    const stats = await extra.rest<{ CountInstances: number }>('GET', '/statistics');
    assert.equal(stats.CountInstances, 3);
    const modalities = await extra.rest<string[]>('GET', '/modalities');
    assert.deepEqual(modalities, ['pacs']);

    extra.pause();
    await assert.rejects(fetch(`${extra.url}/system`, { signal: AbortSignal.timeout(300) }));
    extra.resume();
    await extra.rest('GET', '/system');

    await extra.kill('SIGKILL');
    await assert.rejects(fetch(`${extra.url}/system`));
    await extra.restart();
    assert.equal((await extra.rest<{ CountInstances: number }>('GET', '/statistics')).CountInstances, 3);
    assert.match(await extra.logTail(200), /Orthanc has started/);
  } finally {
    await extra.stop();
  }
});
