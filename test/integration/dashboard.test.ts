/**
 * The dashboard in a real (headless) Chromium at 1280 px, against a sidecar holding real transactions that
 * a real Orthanc SCU made from real patients and studies created in Orthanc: one all-success (Mrs Doe's
 * CT), one with absent (0112H) and wrong-class (0119H) instances (Mr Smith's MR); later one to a modality
 * whose port is closed (the banner), and one from our own SCU under another AE title that reuses the first
 * one's Transaction UID. The page runs under the server's Content-Security-Policy and must cause no
 * violation.
 *
 * Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM_PATH). Without it the test FAILS, on purpose:
 * CI installs it, and a skipped browser test would hide a broken page.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { chromium, type Browser, type Page, type Request } from 'playwright-core';
import { requestCommitment } from '../../src/cli/commitment-scu.js';
import type { ReportReceiver } from '../../src/cli/report-receiver.js';
import {
  COLOURED_PIXELS,
  commitToUnreachableModality,
  CSP_DIRECTIVES,
  CT,
  eventually,
  EXPLORER,
  RECORD_CSP_VIOLATIONS,
  SCU_AET,
  startDashboardStack,
  txPath,
  type DashboardStack,
} from '../harness/dashboard.js';
import { newUid, type CreatedInstance, type SopRef } from '../harness/orthanc.js';
import { TEST_API_TOKEN, waitUntil } from '../harness/sidecar.js';
import type { Stack } from '../harness/stack.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
/** STGCMT_NODE_ID of the sidecar under test: the header names it. */
const NODE_ID = 'dash-node_1.test';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// The README's screenshots are refreshed only on request (UPDATE_SCREENSHOT=1), so a test run leaves the tree clean.
const shotPath = (name: string): string => (process.env['UPDATE_SCREENSHOT'] ? resolve(import.meta.dirname, '..', '..', 'docs', name) : join(tmpdir(), `stgcmt-${name}`));
const SCREENSHOT = shotPath('dashboard.png');
// Run in the page (the test's TypeScript has no DOM types): a badge's background.
const BACKGROUND = new Function('badge', 'return getComputedStyle(badge).backgroundColor') as (badge: unknown) => string;

interface Detail {
  state: string;
  deliveryAttemptLog: Array<{ ok: boolean; via: string; error: string | null }>;
}

const NO_CHROMIUM =
  `Chromium not found at ${CHROMIUM}: the dashboard test drives a real browser. ` +
  'Install it (apt-get install -y chromium) or point CHROMIUM_PATH at one. This test fails rather than skips.';

// Counted as a failure of its own, so a missing browser shows in the totals, not only as cancelled tests.
test('Chromium is installed for the dashboard test', () => {
  assert.ok(existsSync(CHROMIUM), NO_CHROMIUM);
});

describe('dashboard in a real browser', () => {
  let browser: Browser | undefined;
  let page: Page;
  let stack: Stack | undefined;
  let okUid: string;
  let failUid: string;
  let absent: SopRef[];
  let wrongClass: SopRef[];
  let receiver: ReportReceiver | undefined;
  /** An instance of the all-success transaction, deleted from Orthanc late in the run (the watch's alarm). */
  let committedFirst: CreatedInstance;
  let stored: CreatedInstance[];
  let fixture: DashboardStack | undefined;
  const pageErrors: string[] = [];

  const text = async (selector: string): Promise<string> => ((await page.locator(selector).textContent()) ?? '').trim();
  const row = (uid: string) => page.locator(`#tx-body tr[data-uid="${uid}"]`);
  const rowOf = (aet: string, uid: string) => page.locator(`#tx-body tr[data-uid="${uid}"][data-aet="${aet}"]`);
  const cell = async (uid: string, col: string): Promise<string> => ((await row(uid).locator(`[data-col="${col}"]`).textContent()) ?? '').trim();

  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(NO_CHROMIUM);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });

    fixture = await startDashboardStack({ STGCMT_NODE_ID: NODE_ID });
    ({ stack, receiver, okUid, failUid, absent, wrongClass, stored } = fixture);
    committedFirst = stored[0]!;

    // 1280 px: every column of the list must fit without being cut.
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB', timezoneId: 'Europe/Zurich', acceptDownloads: true });
    // Every Content-Security-Policy violation the page causes, as the browser reports it to the page.
    await context.addInitScript(RECORD_CSP_VIOLATIONS);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => {
      // The browser logs the API's expected refusals (401, 404, 409 ambiguous UID, 503) as resource errors.
      if (message.type() === 'error' && !/status of 40[149]|status of 503/.test(message.text())) pageErrors.push(message.text());
    });
  });

  after(async () => {
    await browser?.close();
    await fixture?.stop();
  });

  it('asks for the API token before showing anything, and shows Orthanc reachable meanwhile', async () => {
    const response = await page.goto(`${stack!.sidecar.url}/`);
    assert.match(page.url(), /\/dashboard\/$/);
    // The page is served under a strict policy: its own script and style only, never framed.
    const csp = response?.headers()['content-security-policy'] ?? '';
    for (const directive of CSP_DIRECTIVES) {
      assert.ok(csp.split(';').map((d) => d.trim()).includes(directive), `CSP has ${directive}: ${csp}`);
    }
    assert.equal(response?.headers()['x-frame-options'], 'DENY');
    await page.getByLabel('API token', { exact: true }).waitFor({ state: 'visible' });
    assert.equal(await page.locator('#dashboard').isVisible(), false);
    await eventually(async () => assert.match(await text('#message'), /Enter the API token/));
    // /readyz needs no token.
    await eventually(async () => assert.equal(await text('#health-orthanc'), 'Orthanc: reachable'));
  });

  it('says clearly when the token is refused (401)', async () => {
    await page.getByLabel('API token', { exact: true }).fill('not-the-token');
    await page.getByRole('button', { name: 'Use token' }).click();
    await eventually(async () => assert.match(await text('#message'), /refused the API token \(401 Unauthorized\)/));
    assert.equal(await page.getByLabel('API token', { exact: true }).isVisible(), true);
    assert.equal(await page.evaluate('sessionStorage.getItem("stgcmt.apiToken")'), null);
  });

  it('with the token, lists both transactions with their counts and states', async () => {
    await page.getByLabel('API token', { exact: true }).fill(TEST_API_TOKEN);
    await page.getByRole('button', { name: 'Use token' }).click();
    await row(okUid).waitFor({ state: 'visible' });
    await row(failUid).waitFor({ state: 'visible' });
    assert.equal(await page.getByLabel('API token', { exact: true }).isVisible(), false);
    assert.equal(await page.locator('#message').isVisible(), false);
    assert.equal(await page.evaluate('sessionStorage.getItem("stgcmt.apiToken")'), TEST_API_TOKEN);

    assert.equal(await cell(okUid, 'callingAet'), 'MODALITY');
    assert.equal(await cell(okUid, 'instances'), '3');
    assert.equal(await cell(okUid, 'committed'), '3');
    assert.equal(await cell(okUid, 'failed'), '0');
    // Two reported transactions that must not look alike: words and colour differ.
    assert.equal(await cell(okUid, 'state'), 'Reported — all committed');
    assert.equal(await cell(okUid, 'attempts'), '1');
    // Who and what: the patient and the study, as Orthanc holds them.
    assert.match(await cell(okUid, 'patient'), /^DOE, JANE MRS\s*PID-4711$/);
    assert.match(await cell(okUid, 'study'), /^CT CT THORAX\s*2026-11-25 · Acc\. ACC-1001$/);

    assert.equal(await cell(failUid, 'callingAet'), 'MODALITY');
    assert.equal(await cell(failUid, 'instances'), '5');
    assert.equal(await cell(failUid, 'committed'), '1');
    assert.equal(await cell(failUid, 'failed'), '4');
    assert.equal(await cell(failUid, 'state'), 'Reported — 4 failed');
    assert.equal(await cell(failUid, 'attempts'), '1');
    // The committed CT instance is Mrs Doe's: the study of what was committed, not of what was asked.
    assert.match(await cell(failUid, 'patient'), /^DOE, JANE MRS/);
    const colour = async (uid: string): Promise<string> => row(uid).locator('[data-col="state"] .badge').evaluate(BACKGROUND);
    assert.notEqual(await colour(okUid), await colour(failUid));
    // Dates carry the time zone (the browser's: Europe/Zurich here).
    assert.match(await row(okUid).locator('time').first().textContent() ?? '', /^\d{2}:\d{2}:\d{2} (CET|GMT\+1)$/);

    // Every column fits in 1280 px: nothing cut, no sideways scrolling, the Details button on screen.
    const wrap = page.locator('.list-card .table-wrap');
    assert.ok(await wrap.evaluate((w) => w.scrollWidth <= w.clientWidth), 'the list does not scroll sideways at 1280 px');
    const details = await row(okUid).getByRole('button', { name: /^Details of/ }).boundingBox();
    assert.ok(details && details.x + details.width <= 1280, `Details button within the window: ${JSON.stringify(details)}`);
    // Newest first.
    assert.deepEqual(await page.locator('#tx-body tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uid'))), [failUid, okUid]);
    assert.equal(await text('#page-info'), '1–2 of 2');
  });

  it('shows the counts by state for the last 24 h, the known peers, Orthanc reachable, and the node in the header', async () => {
    assert.equal(await text('header #node-id'), `node: ${NODE_ID}`);
    assert.equal(await page.locator('header #node-id').isVisible(), true);
    assert.equal(await text('[data-count="REPORTED"]'), '2');
    assert.equal(await text('[data-count="total"]'), '2');
    for (const state of ['RECEIVED', 'VERIFIED', 'DELIVERY_RETRY', 'EXPIRED']) assert.equal(await text(`[data-count="${state}"]`), '0', state);
    assert.match(await text('#counts-title'), /Last 24 hours/);
    assert.match(await text('#peers-body'), /MODALITY\s*127\.0\.0\.1:\d+/);
    assert.equal(await text('#health-orthanc'), 'Orthanc: reachable');
  });

  it('filters by state and calling AE, and pages', async () => {
    await page.getByLabel('State', { exact: true }).selectOption('EXPIRED');
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 0));
    assert.equal(await page.locator('#tx-empty').isVisible(), true);
    assert.match(page.url(), /#state=EXPIRED/);

    await page.getByLabel('State', { exact: true }).selectOption('REPORTED');
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));

    await page.getByLabel('Calling AE', { exact: true }).fill('NOBODY');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 0));
    await page.getByLabel('Calling AE', { exact: true }).fill('MODALITY');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));
    await page.getByRole('button', { name: 'Clear' }).click();
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));
    assert.equal(await page.getByLabel('State', { exact: true }).inputValue(), '');

    // Counts are buttons that filter too.
    await page.locator('[data-key="count-REPORTED"]').click();
    await eventually(async () => assert.equal(await page.getByLabel('State', { exact: true }).inputValue(), 'REPORTED'));
    await page.locator('[data-key="count-REPORTED"]').click();
    await eventually(async () => assert.equal(await page.getByLabel('State', { exact: true }).inputValue(), ''));

    // One per page: newest on the first, the other on the next.
    await page.goto(`${stack!.sidecar.url}/dashboard/#limit=1`);
    await eventually(async () => assert.equal(await text('#page-info'), '1–1 of 2'));
    assert.equal(await row(failUid).count(), 1);
    assert.equal(await page.getByRole('button', { name: '‹ Newer' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Older ›' }).click();
    await eventually(async () => assert.equal(await text('#page-info'), '2–2 of 2'));
    assert.equal(await row(okUid).count(), 1);
    assert.equal(await page.getByRole('button', { name: 'Older ›' }).isDisabled(), true);
    await page.getByLabel('Per page', { exact: true }).selectOption('25');
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));
  });

  it("shows the failing transaction's failed instances with their reasons in words", async () => {
    const calls: string[] = [];
    const onRequest = (request: Request): void => {
      if (request.url().includes('/api/transactions/')) calls.push(request.url());
    };
    page.on('request', onRequest);
    await page.getByRole('button', { name: `Details of transaction ${failUid} from MODALITY` }).click();
    await page.locator('#failed-body').waitFor({ state: 'visible' });

    // The failed instances come from the paged endpoint, once; every refresh after asks for the
    // transaction without its instances.
    const instanceCalls = (): string[] => calls.filter((u) => new URL(u).pathname.endsWith('/instances'));
    const detailCalls = (): string[] => calls.filter((u) => !new URL(u).pathname.endsWith('/instances'));
    await eventually(async () => assert.equal(instanceCalls().length, 1));
    assert.equal(new URL(instanceCalls()[0]!).pathname, `${txPath('MODALITY', failUid)}/instances`);
    assert.equal(new URL(instanceCalls()[0]!).searchParams.get('outcome'), 'failed');
    for (let i = 0; i < 2; i++) {
      const seen = detailCalls().length;
      await page.getByRole('button', { name: 'Refresh now' }).click();
      await eventually(async () => assert.ok(detailCalls().length > seen, 'refreshed'));
    }
    page.off('request', onRequest);
    assert.equal(instanceCalls().length, 1, 'the instance list is not fetched again on every refresh');
    assert.ok(detailCalls().length >= 2);
    for (const url of detailCalls()) assert.equal(new URL(url).searchParams.get('instances'), 'none', url);
    assert.match(page.url(), new RegExp(`tx=${failUid.replaceAll('.', '\\.')}&txAet=MODALITY`));

    assert.match(await text('#failed-title'), /Failed instances \(4\)/);
    assert.equal(await page.locator('#failed-body tr').count(), 4);
    for (const ref of absent) {
      const reason = await page.locator(`#failed-body tr[data-uid="${ref.sopInstanceUid}"] .reason`).textContent();
      assert.match(reason ?? '', /No such object instance/);
      assert.match(reason ?? '', /0x0112/);
    }
    for (const ref of wrongClass) {
      const reason = await page.locator(`#failed-body tr[data-uid="${ref.sopInstanceUid}"] .reason`).textContent();
      assert.match(reason ?? '', /Class\/instance conflict/);
      assert.match(reason ?? '', /0x0119/);
      const where = await page.locator(`#failed-body tr[data-uid="${ref.sopInstanceUid}"]`).textContent();
      assert.match(where ?? '', /requested as CT Image/);
      assert.match(where ?? '', /stored as MR Image/);
    }
    assert.equal(await page.locator('#attempts-body tr').count(), 1);
    assert.match(await text('#attempts-body tr:nth-child(1)'), /Delivered/);
    assert.equal(await row(failUid).getAttribute('aria-current'), 'true');
  });

  it('Redeliver sends the report again: one more successful attempt, in the API and on the page', async () => {
    await page.getByRole('button', { name: 'Redeliver' }).click();
    let detail: Detail | undefined;
    await waitUntil(async () => {
      detail = (await stack!.sidecar.api<Detail>('GET', txPath('MODALITY', failUid))).body;
      return detail.deliveryAttemptLog.length >= 2 && detail.state === 'REPORTED';
    }, 15_000);
    assert.equal(detail!.deliveryAttemptLog.length, 2);
    assert.equal(detail!.deliveryAttemptLog[1]!.ok, true);

    await eventually(async () => assert.equal(await page.locator('#attempts-body tr').count(), 2));
    // Newest first.
    assert.equal(await page.locator('#attempts-body tr:nth-child(1)').getAttribute('data-n'), '2');
    assert.match(await text('#attempts-body tr:nth-child(1)'), /Delivered/);
    assert.match(await text('#attempts-title'), /Delivery attempts \(2\)/);
    assert.match(await text('#redeliver-note'), /Redelivery requested/);
    await eventually(async () => assert.equal(await cell(failUid, 'attempts'), '2'));
    assert.equal(await cell(okUid, 'attempts'), '1');

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
    await page.locator('#detail').screenshot({ path: shotPath('dashboard-detail.png') });
  });

  it("shows the transaction's patient and study in the detail, with a link into Orthanc Explorer", async () => {
    await page.getByRole('button', { name: `Details of transaction ${okUid} from MODALITY` }).click();
    await eventually(async () => assert.match(await text('#detail-body .facts'), /Patient \/ study\s*DOE, JANE MRS \(PID-4711\) · CT CT THORAX, 2026-11-25, accession ACC-1001/));
    const link = page.getByRole('link', { name: 'Open in Orthanc Explorer' });
    assert.match((await link.getAttribute('href')) ?? '', new RegExp(`^${EXPLORER.replaceAll('.', '\\.')}#study\\?uuid=[0-9a-f]{8}(-[0-9a-f]{8}){4}$`));
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
    assert.match(await text('#detail-actions'), /Reported — all committed/);
    await page.getByRole('button', { name: 'Close' }).click();
  });

  it('finds the transaction that asked for an image by its SOP Instance UID, and says what was answered', async () => {
    await page.getByLabel('Search', { exact: true }).fill(stored[0]!.sopInstanceUid);
    await page.getByLabel('Search', { exact: true }).press('Enter');
    await eventually(async () => assert.deepEqual(await page.locator('#tx-body tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uid'))), [okUid]));
    // "any" found it as an image: the page says so and keeps that kind in the link.
    assert.equal(await page.getByLabel('Search in').inputValue(), 'instance');
    assert.match(await text('#search-note'), /1 transaction with SOP Instance UID/);
    assert.match(await cell(okUid, 'matched'), /this image: committed/);
    // An absent image: the failing transaction, and its failure.
    await page.getByLabel('Search', { exact: true }).fill(absent[0]!.sopInstanceUid);
    await page.getByLabel('Search in').selectOption('instance');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => assert.deepEqual(await page.locator('#tx-body tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uid'))), [failUid]));
    assert.match(await cell(failUid, 'matched'), /this image: failed 0x0112/);
    // By the patient's name, any case, as typed at 3 a.m.
    await page.getByLabel('Search', { exact: true }).fill('doe jane');
    await page.getByLabel('Search in').selectOption('auto');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));
    await page.getByRole('button', { name: 'Clear' }).click();
    await eventually(async () => assert.equal(await page.locator('#search-note').isVisible(), false));
  });

  it('draws the history charts with the data, served locally under the CSP', async () => {
    await page.locator('#history').scrollIntoViewIfNeeded();
    await eventually(async () => assert.equal(await page.locator('#chart-volume canvas').count(), 1));
    assert.equal(await page.locator('#chart-latency canvas').count(), 1);
    assert.match(await text('#chart-volume-summary'), /^2 transactions, 1 with failures, since/);
    assert.match(await text('#chart-latency-summary'), /^worst hourly p99: \d+\.\d\d s$/);
    // Something was drawn: the bars are not a blank canvas.
    const painted = await page.locator('#chart-volume canvas').evaluate(COLOURED_PIXELS);
    assert.ok(painted > 50, `coloured pixels in the volume chart: ${painted}`);
    assert.deepEqual(
      await page.locator('#chart-reasons .bar-row').evaluateAll((rows) => rows.map((r) => r.textContent?.replace(/\s+/g, ' ').trim())),
      // Most frequent first; a tie in the order of the reason codes (0112H before 0119H), on both engines.
      ['No such object instance (not stored) (0x0112)2', 'Class/instance conflict (stored under another SOP Class) (0x0119)2'],
    );
    assert.equal(await page.locator('#chart-pending .empty').textContent(), 'No report waiting.');
    await page.getByRole('button', { name: 'Last 7 days' }).click();
    await eventually(async () => assert.match(await text('#chart-volume-summary'), /^2 transactions/));
    assert.equal(await page.getByRole('button', { name: 'Last 7 days' }).getAttribute('aria-pressed'), 'true');
    await page.locator('#history').screenshot({ path: shotPath('dashboard-charts.png') });
  });

  it('raises the banner when a report cannot be delivered, and says "modality unreachable since"', async () => {
    const downUid = await commitToUnreachableModality(stack!, { sopClassUid: CT, sopInstanceUid: stored[1]!.sopInstanceUid });
    await eventually(async () => assert.match(await text('#alerts'), /Report overdue: 1 report\(s\) to DOWNMOD not delivered; the oldest has waited since \d{2}:\d{2} (CET|GMT\+1)/), 15_000);
    assert.equal(await page.locator('#alerts').getAttribute('role'), 'alert');
    await eventually(async () => assert.match(await cell(downUid, 'state'), /^Modality unreachable since \d{2}:\d{2} (CET|GMT\+1)$/));
    await eventually(async () => assert.match(await text('#chart-pending'), /DOWNMOD\s*1/), 70_000);
    await page.locator('.list-card').screenshot({ path: shotPath('dashboard-list.png') });
    // The banner's button shows that modality's transactions.
    await page.getByRole('button', { name: 'Show DOWNMOD' }).click();
    await eventually(async () => assert.deepEqual(await page.locator('#tx-body tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uid'))), [downUid]));
    await page.getByRole('button', { name: 'Clear' }).click();
  });

  it('exports the listed transactions as CSV for an audit', async () => {
    await page.getByLabel('Calling AE', { exact: true }).fill('MODALITY');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    assert.match(download.suggestedFilename(), /^stgcmt-transactions-.*\.csv$/);
    const file = join(tmpdir(), `stgcmt-export-${process.pid}.csv`);
    await download.saveAs(file);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\r\n');
    const header = lines[0]!.split(',');
    const rows = lines.slice(1).map((line) => Object.fromEntries(line.split(',').map((v, i) => [header[i], v])));
    assert.deepEqual(rows.map((r) => [r['transactionUid'], r['callingAet'], r['situation'], r['committed'], r['failed'], r['patientName']]), [
      [failUid, 'MODALITY', 'reported-with-failures', '1', '4', 'DOE^JANE^^MRS'],
      [okUid, 'MODALITY', 'reported-all-committed', '3', '0', 'DOE^JANE^^MRS'],
    ]);
    await page.getByRole('button', { name: 'Clear' }).click();
  });

  it('works from the keyboard, and a quiet refresh gets "not modified" rather than the list again', async () => {
    const statuses: number[] = [];
    const onResponse = (response: import('playwright-core').Response): void => {
      if (new URL(response.url()).pathname === '/api/transactions') statuses.push(response.status());
    };
    // Only MODALITY's transactions, which are reported and stay still: DOWNMOD's report (the banner test) is
    // retried every 2 s here, so a list that shows it really changes between two refreshes 3 s apart.
    await page.getByLabel('Calling AE', { exact: true }).fill('MODALITY');
    await page.getByRole('button', { name: 'Apply' }).click();
    await eventually(async () => assert.equal(await page.locator('#tx-body tr').count(), 2));
    page.on('response', onResponse);
    const details = page.getByRole('button', { name: `Details of transaction ${okUid} from MODALITY` });
    await details.focus();
    await page.keyboard.press('Enter');
    await eventually(async () => assert.equal(await row(okUid).getAttribute('aria-current'), 'true'));
    await eventually(async () => assert.ok(statuses.includes(304), `list answers: ${statuses.join(',')}`), 10_000);
    page.off('response', onResponse);
    await page.getByRole('button', { name: 'Close' }).click();
    await page.getByRole('button', { name: 'Clear' }).click();
  });

  it('tells two AEs that reused one Transaction UID apart; a link by UID alone offers both', async () => {
    // Our SCU, as another modality, reuses the successful transaction's UID for one absent instance.
    const target = { host: '127.0.0.1', port: stack!.sidecar.dicomPort, callingAeTitle: SCU_AET, calledAeTitle: 'STGCMT', timeoutMs: 10_000 };
    const outcome = await requestCommitment(target, [{ sopClassUid: CT, sopInstanceUid: newUid() }], { transactionUid: okUid, keepOpenMs: 0, reportTimeoutMs: 10_000, receiver: receiver! });
    assert.equal(outcome.report?.eventTypeId, 2);
    await waitUntil(async () => (await stack!.sidecar.api<Detail>('GET', txPath(SCU_AET, okUid))).body.state === 'REPORTED', 10_000);

    await page.goto(`${stack!.sidecar.url}/dashboard/`);
    await eventually(async () => assert.equal(await row(okUid).count(), 2));
    assert.equal(await rowOf('MODALITY', okUid).count(), 1);
    assert.equal(await rowOf(SCU_AET, okUid).count(), 1);

    await page.getByRole('button', { name: `Details of transaction ${okUid} from ${SCU_AET}` }).click();
    await eventually(async () => assert.match(await text('#failed-title'), /Failed instances \(1\)/));
    assert.match(await text('#detail-body .facts'), new RegExp(`Calling AE\\s*${SCU_AET}`));
    assert.equal(await rowOf(SCU_AET, okUid).getAttribute('aria-current'), 'true');
    assert.equal(await rowOf('MODALITY', okUid).getAttribute('aria-current'), null);
    const hash = new URLSearchParams(new URL(page.url()).hash.slice(1));
    assert.deepEqual([hash.get('tx'), hash.get('txAet')], [okUid, SCU_AET]);

    await page.getByRole('button', { name: `Details of transaction ${okUid} from MODALITY` }).click();
    await eventually(async () => assert.match(await text('#detail-body'), /All 3 instances committed/));
    assert.match(await text('#detail-body .facts'), /Calling AE\s*MODALITY/);

    // A link from before (UID only): the API says it is ambiguous, the page offers the two.
    await page.goto(`${stack!.sidecar.url}/dashboard/#tx=${encodeURIComponent(okUid)}`);
    await eventually(async () => assert.match(await text('#detail-body'), /used by 2 calling AEs/));
    await page.getByRole('button', { name: `Transaction ${okUid} from ${SCU_AET}`, exact: true }).click();
    await eventually(async () => assert.match(await text('#failed-title'), /Failed instances \(1\)/));
    await page.getByRole('button', { name: 'Close' }).click();
  });

  it('inserts data as text, never as markup', async () => {
    // The selected transaction comes from the URL: a hostile one must come out as text.
    const hostile = '<img src=x onerror="window.__pwned=1">';
    await page.goto(`${stack!.sidecar.url}/dashboard/#tx=${encodeURIComponent(hostile)}`);
    await eventually(async () => assert.match(await text('#detail-body'), /Transaction <img src=x onerror="window.__pwned=1"> is not known/));
    assert.equal(await page.locator('#detail-body img').count(), 0);
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    await page.getByRole('button', { name: 'Close' }).click();
    await eventually(async () => assert.equal(await page.locator('#detail-placeholder').isVisible(), true));
  });

  it('says clearly when the API is unavailable (503)', async () => {
    await page.route('**/api/**', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: 'API disabled: set STGCMT_API_TOKEN' }) }));
    await page.getByRole('button', { name: 'Refresh now' }).click();
    await eventually(async () => assert.match(await text('#message'), /unavailable \(503 Service Unavailable\): API disabled: set STGCMT_API_TOKEN/));
    await page.unroute('**/api/**');
    await eventually(async () => assert.equal(await page.locator('#message').isVisible(), false));
  });

  it('refreshes itself every few seconds, pausing while the tab is hidden or on request', async () => {
    const apiCalls: string[] = [];
    page.on('request', (request) => {
      if (request.url().includes('/api/')) apiCalls.push(request.url());
    });
    await eventually(async () => assert.match(await text('#refresh-status'), /Updated .* every 3 s/));
    await eventually(async () => assert.ok(apiCalls.length >= 2, 'polls by itself'), 8000);

    // Headless tabs are never hidden: play the browser's part (document.hidden + visibilitychange).
    await page.evaluate(`Object.defineProperty(document, 'hidden', { configurable: true, get: () => true }); document.dispatchEvent(new Event('visibilitychange'))`);
    assert.equal(await text('#refresh-status'), 'Paused while the tab is hidden');
    await new Promise((r) => setTimeout(r, 500)); // a refresh already under way may finish
    const before = apiCalls.length;
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(apiCalls.length, before, 'no polling while hidden');
    await page.evaluate(`delete document.hidden; document.dispatchEvent(new Event('visibilitychange'))`);
    await eventually(async () => assert.ok(apiCalls.length > before, 'polls again once visible'));
    await eventually(async () => assert.match(await text('#refresh-status'), /Updated/));

    await page.getByRole('button', { name: 'Pause' }).click();
    assert.equal(await text('#refresh-status'), 'Auto-refresh paused');
    await new Promise((r) => setTimeout(r, 500));
    const paused = apiCalls.length;
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(apiCalls.length, paused, 'no polling while paused');
    await page.getByRole('button', { name: 'Resume' }).click();
    await eventually(async () => assert.match(await text('#refresh-status'), /Updated/));
  });

  it('says whether the commitment is kept, and shows a committed instance deleted from Orthanc with when', async () => {
    const ready = (await stack!.sidecar.api<{ commitment: { warning?: string } }>('GET', '/readyz', undefined, '')).body;
    // On Orthanc 1.10.1 the sidecar cannot tell whether Orthanc recycles: the pill says so, the reason on hover.
    await eventually(async () => assert.equal(await text('#health-commitment'), ready.commitment.warning ? 'Commitment: may not be kept' : 'Commitment: kept (no recycling)'));
    assert.equal((await page.locator('#health-commitment').getAttribute('title')) ?? '', ready.commitment.warning ?? '');
    assert.equal(await page.locator('#vanished-section').isVisible(), false, 'no alarm while nothing vanished');

    await stack!.pacs.rest('DELETE', `/instances/${committedFirst.orthancId}`);
    const vanishedRow = page.locator(`#vanished-body tr[data-instance="${committedFirst.sopInstanceUid}"]`);
    await eventually(async () => assert.ok(await vanishedRow.isVisible(), 'the alarm lists the deleted instance'), 15_000);
    assert.equal(await vanishedRow.getAttribute('data-uid'), okUid);
    const noticed = await vanishedRow.locator('[data-col="vanishedAt"] time').getAttribute('datetime');
    assert.ok(noticed && Date.now() - Date.parse(noticed) < 30_000, `noticed at ${noticed}`);
    assert.match(await text('#vanished-total'), /\(1\)/);

    await vanishedRow.getByRole('button').click();
    await eventually(async () => assert.match(await text('#detail [data-col="committedThenDeleted"]'), /^1 instance\(s\) reported committed are no longer in Orthanc$/));
  });

  it('raised no script errors and caused no Content-Security-Policy violation', async () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(await page.evaluate('window.__cspViolations'), []);
  });
});
