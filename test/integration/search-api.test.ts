/**
 * Issue 13's API against a real stack: real patients and studies made in a real Orthanc, committed through
 * Orthanc's own SCU. Each transaction carries the patient and study of its committed instances, read from
 * Orthanc at verification time; the list is searched by Transaction UID, SOP Instance UID, Study Instance
 * UID, accession number, patient ID or name, time range and calling AE; a report that cannot be delivered
 * raises alerts and says "modality unreachable"; the CSV export holds the searched rows; the history for
 * the charts counts what happened. Then the same PACS behind a sidecar with STGCMT_SHOW_PATIENT_DATA=false:
 * no patient data anywhere, and none stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requestCommitment } from '../../src/cli/commitment-scu.js';
import { createInstances, freePort, newUid, storageCommitment, type CreatedInstance } from '../harness/orthanc.js';
import { startSidecar, TEST_API_TOKEN, waitUntil, type SidecarProcess } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const EXPLORER = 'http://pacs.example:8042/app/explorer.html';

interface Study {
  studyInstanceUid: string;
  orthancStudyId: string;
  patientId: string | null;
  patientName: string | null;
  studyDate: string | null;
  studyDescription: string | null;
  accessionNumber: string | null;
  modalities: string | null;
}

interface Item {
  transactionUid: string;
  callingAet: string;
  state: string;
  situation: string;
  situationSince: string | null;
  studies?: Study[];
  matchedInstances?: Array<{ sopInstanceUid: string; outcome: string; failureReasonHex?: string }>;
}

interface Page {
  total: number;
  items: Item[];
}

describe('search, patient and study, alerts, CSV and history (issue 13)', () => {
  let stack: Stack;
  let jane: CreatedInstance[];
  let john: CreatedInstance[];
  let janeStudy: string;
  let johnStudy: string;
  let janeTx: string;
  let johnTx: string;
  let downTx: string;
  const absentUid = newUid();
  let downPort: number;

  const search = async (query: string): Promise<Page> => {
    const { status, body } = await stack.sidecar.api<Page>('GET', `/api/transactions?${query}`);
    assert.equal(status, 200, `${query}: ${JSON.stringify(body)}`);
    return body;
  };
  const uidsOf = (page: Page): string[] => page.items.map((i) => i.transactionUid).sort();

  before(async () => {
    // A modality whose report port is closed: its reports cannot be delivered.
    downPort = await freePort();
    stack = await startStack({
      peers: [{ aet: 'DOWNMOD', port: downPort }],
      sidecarEnv: { STGCMT_ORTHANC_EXPLORER_URL: EXPLORER, STGCMT_ALERT_REPORT_AGE: '1', STGCMT_ALERT_DELIVERY_SILENCE: '1' },
    });
    janeStudy = newUid();
    johnStudy = newUid();
    jane = await createInstances(stack.pacs, 3, {
      sopClassUid: CT,
      studyInstanceUid: janeStudy,
      patientId: 'PID-JANE',
      patientName: 'DOE^JANE',
      modality: 'CT',
      studyDate: '20261125',
      accessionNumber: 'ACC-1001',
      studyDescription: 'CT THORAX',
    });
    john = await createInstances(stack.pacs, 2, {
      sopClassUid: MR,
      studyInstanceUid: johnStudy,
      patientId: 'PID-JOHN',
      patientName: 'SMITH^JOHN',
      modality: 'MR',
      studyDate: '20261124',
      accessionNumber: 'ACC-2002',
      studyDescription: 'MR KNEE',
    });
    const ok = await storageCommitment(stack.modality, stack.sidecarModalityName, jane);
    assert.equal(ok.status, 'Success');
    janeTx = ok.id;
    const failing = await storageCommitment(stack.modality, stack.sidecarModalityName, [...john, { sopClassUid: MR, sopInstanceUid: absentUid }]);
    assert.equal(failing.status, 'Failure');
    johnTx = failing.id;
    const down = await requestCommitment(
      { host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: 'DOWNMOD', calledAeTitle: 'STGCMT', timeoutMs: 10_000 },
      [{ sopClassUid: CT, sopInstanceUid: jane[0]!.sopInstanceUid }],
      { keepOpenMs: 0, reportTimeoutMs: 100 },
    );
    downTx = down.transactionUid;
    await waitUntil(async () => (await search('state=REPORTED')).total === 2 && (await search('state=DELIVERY_RETRY')).total === 1, 15_000);
    // The studies are read beside the delivery: wait until all three carry theirs.
    await waitUntil(async () => (await search('limit=10')).items.every((i) => (i.studies ?? []).length === 1), 10_000);
  });

  after(async () => {
    await stack?.stop();
  });

  it('shows the patient and study of the committed instances, read from Orthanc', async () => {
    const [item] = (await search(`transaction=${janeTx}`)).items;
    assert.ok(item);
    assert.equal(item.studies?.length, 1);
    const study = item.studies![0]!;
    assert.equal(study.studyInstanceUid, janeStudy);
    assert.equal(study.patientId, 'PID-JANE');
    assert.equal(study.patientName, 'DOE^JANE');
    assert.equal(study.studyDate, '20261125');
    assert.equal(study.studyDescription, 'CT THORAX');
    assert.equal(study.accessionNumber, 'ACC-1001');
    assert.equal(study.modalities, 'CT');
    assert.match(study.orthancStudyId, /^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/);
    // The detail carries the same, and where Orthanc Explorer is for the browser.
    const detail = (await stack.sidecar.api<Item & { explorerUrl: string }>('GET', `/api/transactions/MODALITY/${encodeURIComponent(janeTx)}`)).body;
    assert.deepEqual(detail.studies, item.studies);
    assert.equal(detail.explorerUrl, EXPLORER);
    // A transaction with a failed instance shows the study of the instances it did commit.
    const [johnItem] = (await search(`transaction=${johnTx}`)).items;
    assert.deepEqual(johnItem?.studies?.map((s) => [s.patientName, s.accessionNumber, s.modalities]), [['SMITH^JOHN', 'ACC-2002', 'MR']]);
  });

  it('finds transactions by SOP Instance UID, with what was answered for that instance', async () => {
    // Jane's first instance was asked for twice: by the CT (committed) and by DOWNMOD.
    const both = await search(`instance=${jane[0]!.sopInstanceUid}`);
    assert.deepEqual(uidsOf(both), [janeTx, downTx].sort());
    for (const item of both.items) assert.deepEqual(item.matchedInstances?.map((m) => [m.sopInstanceUid, m.outcome]), [[jane[0]!.sopInstanceUid, 'committed']]);
    const absent = await search(`instance=${absentUid}`);
    assert.deepEqual(uidsOf(absent), [johnTx]);
    assert.deepEqual(absent.items[0]!.matchedInstances?.map((m) => [m.outcome, m.failureReasonHex]), [['failed', '0x0112']]);
    assert.equal((await search(`instance=${newUid()}`)).total, 0);
  });

  it('finds transactions by study, accession number, patient ID or name, and Transaction UID', async () => {
    assert.deepEqual(uidsOf(await search(`study=${janeStudy}`)), [janeTx, downTx].sort());
    assert.deepEqual(uidsOf(await search(`study=${johnStudy}`)), [johnTx]);
    assert.deepEqual(uidsOf(await search('accession=ACC-2002')), [johnTx]);
    assert.deepEqual(uidsOf(await search('patient=PID-JOHN')), [johnTx]);
    // A name matches from its start, any case, `^` or a space between its parts.
    assert.deepEqual(uidsOf(await search('patient=doe')), [janeTx, downTx].sort());
    assert.deepEqual(uidsOf(await search(`patient=${encodeURIComponent('Smith J')}`)), [johnTx]);
    assert.equal((await search('patient=JANE')).total, 0, 'a given name alone is not the start of the name');
    assert.deepEqual(uidsOf(await search(`transaction=${johnTx}`)), [johnTx]);
  });

  it('combines a search with the calling AE and a time range', async () => {
    assert.deepEqual(uidsOf(await search(`study=${janeStudy}&aet=DOWNMOD`)), [downTx]);
    assert.deepEqual(uidsOf(await search(`study=${janeStudy}&callingAet=MODALITY`)), [janeTx]);
    const future = new Date(Date.now() + 3600_000).toISOString();
    const past = new Date(Date.now() - 3600_000).toISOString();
    assert.equal((await search(`patient=PID-JANE&from=${encodeURIComponent(future)}`)).total, 0);
    assert.equal((await search(`patient=PID-JANE&from=${encodeURIComponent(past)}&to=${encodeURIComponent(future)}`)).total, 2);
    const bad = await stack.sidecar.api<{ error: string }>('GET', '/api/transactions?instance=');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /instance/);
  });

  it('tells the states apart: all committed, with failures, modality unreachable since the verdict', async () => {
    const situations = Object.fromEntries((await search('limit=10')).items.map((i) => [i.transactionUid, i.situation]));
    assert.deepEqual(situations, { [janeTx]: 'reported-all-committed', [johnTx]: 'reported-with-failures', [downTx]: 'modality-unreachable' });
    const [down] = (await search(`transaction=${downTx}`)).items;
    assert.ok(down?.situationSince && Date.parse(down.situationSince) <= Date.now());
  });

  it('raises alerts for a report not delivered and a modality without a successful delivery', async () => {
    const summary = (await stack.sidecar.api<{ alerts: Array<{ kind: string; callingAet?: string; text: string }>; dashboard: { orthancExplorerUrl: string; showPatientData: boolean } }>('GET', '/api/summary')).body;
    const kinds = summary.alerts.map((a) => `${a.kind}:${a.callingAet ?? ''}`).sort();
    assert.deepEqual(kinds, ['modality-silent:DOWNMOD', 'report-overdue:DOWNMOD']);
    assert.deepEqual(summary.dashboard.orthancExplorerUrl, EXPLORER);
    assert.equal(summary.dashboard.showPatientData, true);
    // No alert text carries patient data.
    assert.doesNotMatch(JSON.stringify(summary.alerts), /JANE|JOHN|PID-|ACC-/);
  });

  it('shown behind the token only: patient and study data are never logged, never in the metrics', async () => {
    // Searched by patient and accession too, so that request URLs carrying them pass through the HTTP log.
    assert.equal((await search('patient=PID-JANE')).total >= 1, true);
    assert.equal((await search('accession=ACC-2002')).total, 1);
    const phi = /JANE|JOHN|PID-|ACC-|THORAX|KNEE|20261125|20261124/;
    const log = readFileSync(stack.sidecar.logFile, 'utf8');
    assert.ok(log.includes(janeTx), 'the log does name the transactions');
    assert.doesNotMatch(log, phi);
    const metrics = await stack.sidecar.api<string>('GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.doesNotMatch(metrics.body, phi);
    const anonymous = await fetch(`${stack.sidecar.url}/api/transactions?patient=PID-JANE`);
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(await anonymous.text(), phi);
  });

  it('exports the searched rows as CSV, one line per transaction and study', async () => {
    const response = await fetch(`${stack.sidecar.url}/api/transactions.csv?study=${janeStudy}`, { headers: { authorization: `Bearer ${TEST_API_TOKEN}` } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/csv/);
    assert.match(response.headers.get('content-disposition') ?? '', /^attachment; filename="stgcmt-transactions-.*\.csv"$/);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const lines = (await response.text()).trimEnd().split('\r\n');
    const header = lines[0]!.split(',');
    assert.deepEqual(header.slice(0, 5), ['receivedAt', 'callingAet', 'transactionUid', 'state', 'situation']);
    const rows = lines.slice(1).map((line) => Object.fromEntries(line.split(',').map((v, i) => [header[i], v])));
    assert.deepEqual(rows.map((r) => r['transactionUid']).sort(), [janeTx, downTx].sort());
    const janeRow = rows.find((r) => r['transactionUid'] === janeTx)!;
    assert.deepEqual([janeRow['callingAet'], janeRow['state'], janeRow['committed'], janeRow['failed'], janeRow['patientName'], janeRow['accessionNumber']], ['MODALITY', 'REPORTED', '3', '0', 'DOE^JANE', 'ACC-1001']);
    const unauthorized = await fetch(`${stack.sidecar.url}/api/transactions.csv`);
    assert.equal(unauthorized.status, 401);
  });

  it('counts the history for the charts: per hour, failures by reason, reports waiting per modality', async () => {
    const stats = (
      await stack.sidecar.api<{
        hours: Array<{ transactions: number; withFailures: number; instances: number; failedInstances: number; reportLatencyP50Ms: number | null; reportLatencyP99Ms: number | null }>;
        failuresByReason: Array<{ failureReasonHex: string; count: number }>;
        pendingByModality: Array<{ callingAet: string; pending: number; lastDeliveredAt: string | null }>;
      }>('GET', '/api/stats?window=24h')
    ).body;
    assert.equal(stats.hours.length, 24);
    const sum = (key: 'transactions' | 'withFailures' | 'instances' | 'failedInstances'): number => stats.hours.reduce((n, h) => n + h[key], 0);
    assert.deepEqual([sum('transactions'), sum('withFailures'), sum('instances'), sum('failedInstances')], [3, 1, 7, 1]);
    const last = stats.hours.filter((h) => h.reportLatencyP50Ms !== null);
    assert.ok(last.length >= 1 && last.every((h) => h.reportLatencyP50Ms! > 0 && h.reportLatencyP99Ms! >= h.reportLatencyP50Ms!));
    assert.deepEqual(stats.failuresByReason.map((f) => [f.failureReasonHex, f.count]), [['0x0112', 1]]);
    assert.deepEqual(stats.pendingByModality.map((p) => [p.callingAet, p.pending, p.lastDeliveredAt]), [['DOWNMOD', 1, null]]);
    assert.equal((await stack.sidecar.api<{ hours: unknown[] }>('GET', '/api/stats?window=7d')).body.hours.length, 168);
  });

  describe('with STGCMT_SHOW_PATIENT_DATA=false', () => {
    let quiet: SidecarProcess;
    before(async () => {
      const peersFile = join(mkdtempSync(join('/dev/shm', 'stgcmt-quiet-')), 'peers.json');
      writeFileSync(peersFile, JSON.stringify({ peers: [{ aet: 'QUIETSCU', host: '127.0.0.1', port: await freePort() }] }));
      quiet = await startSidecar({ orthancUrl: stack.pacs.url, env: { STGCMT_SHOW_PATIENT_DATA: 'false', STGCMT_PEERS_FROM_ORTHANC: 'false', STGCMT_PEERS_FILE: peersFile } });
      // No report target is needed: the verdict is what we look at.
      const outcome = await requestCommitment({ host: '127.0.0.1', port: quiet.dicomPort, callingAeTitle: 'QUIETSCU', calledAeTitle: 'STGCMT', timeoutMs: 10_000 }, jane.map(({ sopClassUid, sopInstanceUid }) => ({ sopClassUid, sopInstanceUid })), {
        keepOpenMs: 5000,
        reportTimeoutMs: 5000,
      });
      assert.equal(outcome.report?.eventTypeId, 1);
    });
    after(async () => {
      await quiet?.stop();
      quiet?.cleanup();
    });

    it('neither fetches, stores nor shows patient and study', async () => {
      const page = (await quiet.api<Page>('GET', '/api/transactions')).body;
      assert.equal(page.total, 1);
      assert.equal(page.items[0]!.studies, undefined);
      const csv = await (await fetch(`${quiet.url}/api/transactions.csv`, { headers: { authorization: `Bearer ${TEST_API_TOKEN}` } })).text();
      assert.doesNotMatch(csv, /patientName|DOE\^JANE/);
      const db = new Database(join(quiet.dataDir, 'stgcmt.sqlite'), { readonly: true });
      try {
        assert.equal((db.prepare('SELECT COUNT(*) AS n FROM transaction_studies').get() as { n: number }).n, 0);
      } finally {
        db.close();
      }
      assert.doesNotMatch(JSON.stringify(quiet.logLines()), /DOE|PID-JANE|ACC-1001/);
    });
  });
});
