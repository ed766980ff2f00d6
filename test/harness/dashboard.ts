/**
 * What the dashboard's browser tests (Chromium, Firefox) share: the stack with its real transactions, the
 * Content-Security-Policy they check, the page-side probes, and `eventually`.
 *
 * The stack: a sidecar in front of a real Orthanc, holding two transactions that a real Orthanc SCU made
 * from real patients and studies: one all-success (Mrs Doe's CT), one with absent (0112H) and wrong-class
 * (0119H) instances (Mr Smith's MR). Peers: our own SCU (TEST SCU/2, its report receiver started) and
 * DOWNMOD, whose port nothing listens on, so a report to it cannot be delivered.
 */
import assert from 'node:assert/strict';
import { requestCommitment } from '../../src/cli/commitment-scu.js';
import { ReportReceiver } from '../../src/cli/report-receiver.js';
import { createInstances, freePort, newUid, storageCommitment, type CreatedInstance, type SopRef } from './orthanc.js';
import { waitUntil } from './sidecar.js';
import { startStack, type Stack } from './stack.js';

export const CT = '1.2.840.10008.5.1.4.1.1.2';
export const MR = '1.2.840.10008.5.1.4.1.1.4';
export const EXPLORER = 'http://pacs.example:8042/app/explorer.html';
/** Our own SCU's AE title: a space and a slash, which the page must encode into one path segment. */
export const SCU_AET = 'TEST SCU/2';
/** The modality whose report port is closed. */
export const DOWN_AET = 'DOWNMOD';

/** The directives the dashboard's Content-Security-Policy header must hold. */
export const CSP_DIRECTIVES = ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"];

/** Run before the page's own scripts: every CSP violation the page causes, as the browser reports it to the page. */
export const RECORD_CSP_VIOLATIONS = `window.__cspViolations = []; document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`;

/** Run in the page (the tests' TypeScript has no DOM types): how many pixels of a canvas are coloured. */
export const COLOURED_PIXELS = new Function(
  'canvas',
  `const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
   let coloured = 0;
   for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && (data[i] !== data[i + 1] || data[i + 1] !== data[i + 2])) coloured++;
   return coloured;`,
) as (canvas: unknown) => number;

export const txPath = (callingAet: string, uid: string): string => `/api/transactions/${encodeURIComponent(callingAet)}/${encodeURIComponent(uid)}`;

/** Retries an assertion until it holds (the page refreshes itself), rethrowing the last failure. */
export async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export interface DashboardStack {
  readonly stack: Stack;
  /** Our own SCU's report receiver (AE title SCU_AET). */
  readonly receiver: ReportReceiver;
  /** The all-success transaction: three of Mrs Doe's CT instances. */
  readonly okUid: string;
  /** The failing one: Mrs Doe's fourth CT instance, two absent ones, Mr Smith's two MR asked as CT. */
  readonly failUid: string;
  readonly absent: SopRef[];
  readonly wrongClass: SopRef[];
  /** Mrs Doe's four CT instances in Orthanc. */
  readonly stored: CreatedInstance[];
  stop(): Promise<void>;
}

/**
 * The stack with the two reported transactions, their studies read. `sidecarEnv` adds to what every
 * dashboard test sets (Explorer link, alert age 1 s, watch every second).
 */
export async function startDashboardStack(sidecarEnv: Record<string, string> = {}): Promise<DashboardStack> {
  const scuPort = await freePort();
  const receiver = new ReportReceiver({ aeTitle: SCU_AET, port: scuPort, strictRoles: true });
  await receiver.start();
  let stack: Stack | undefined;
  try {
    stack = await startStack({
      peers: [
        { aet: SCU_AET, port: scuPort },
        // A modality whose report port nothing listens on: its reports fail, and the banner says so.
        { aet: DOWN_AET, port: await freePort() },
      ],
      // The watch over committed instances runs every second here (60 s by default).
      sidecarEnv: { STGCMT_ORTHANC_EXPLORER_URL: EXPLORER, STGCMT_ALERT_REPORT_AGE: '1s', STGCMT_WATCH_INTERVAL: '1s', ...sidecarEnv },
    });
    const started = stack;
    const stored = await createInstances(started.pacs, 4, {
      sopClassUid: CT,
      patientId: 'PID-4711',
      patientName: 'DOE^JANE^^MRS',
      modality: 'CT',
      studyDate: '20261125',
      accessionNumber: 'ACC-1001',
      studyDescription: 'CT THORAX',
    });
    const storedMr = await createInstances(started.pacs, 2, {
      sopClassUid: MR,
      patientId: 'PID-0815',
      patientName: 'SMITH^JOHN',
      modality: 'MR',
      studyDate: '20261124',
      accessionNumber: 'ACC-2002',
      studyDescription: 'MR KNEE',
    });

    const ok = await storageCommitment(started.modality, started.sidecarModalityName, stored.slice(0, 3));
    assert.equal(ok.status, 'Success');
    const absent = [newUid(), newUid()].map((uid) => ({ sopClassUid: CT, sopInstanceUid: uid }));
    const wrongClass = storedMr.map((i) => ({ sopClassUid: CT, sopInstanceUid: i.sopInstanceUid }));
    const failing = await storageCommitment(started.modality, started.sidecarModalityName, [stored[3]!, ...absent, ...wrongClass]);
    assert.equal(failing.status, 'Failure');

    // Orthanc has the reports; the sidecar marks them delivered right after the modality's answer.
    await waitUntil(async () => (await started.sidecar.api<{ total: number }>('GET', '/api/transactions?state=REPORTED')).body.total === 2, 10_000);
    // The studies are read beside the delivery.
    await waitUntil(async () => (await started.sidecar.api<{ items: Array<{ studies: unknown[] }> }>('GET', '/api/transactions')).body.items.every((i) => i.studies.length === 1), 10_000);

    return {
      stack: started,
      receiver,
      okUid: ok.id,
      failUid: failing.id,
      absent,
      wrongClass,
      stored,
      async stop() {
        await started.stop();
        await receiver.stop();
      },
    };
  } catch (error) {
    await stack?.stop();
    await receiver.stop();
    throw error;
  }
}

/** DOWN_AET asks to commit one of the stored instances: the report cannot be delivered. Its Transaction UID. */
export async function commitToUnreachableModality(stack: Stack, instance: SopRef): Promise<string> {
  const down = await requestCommitment(
    { host: '127.0.0.1', port: stack.sidecar.dicomPort, callingAeTitle: DOWN_AET, calledAeTitle: 'STGCMT', timeoutMs: 10_000 },
    [instance],
    { keepOpenMs: 0, reportTimeoutMs: 100 },
  );
  return down.transactionUid;
}
