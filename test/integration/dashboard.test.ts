/**
 * The dashboard in a real (headless) Chromium, against a sidecar holding real transactions that a real
 * Orthanc SCU made: one all-success, one with absent (0112H) and wrong-class (0119H) instances.
 *
 * Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM_PATH). Without it the test FAILS, on purpose:
 * CI installs it, and a skipped browser test would hide a broken page.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createInstances, newUid, storageCommitment, type CreatedInstance, type SopRef } from '../harness/orthanc.js';
import { TEST_API_TOKEN, waitUntil } from '../harness/sidecar.js';
import { startStack, type Stack } from '../harness/stack.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// The README's screenshot is refreshed only on request (UPDATE_SCREENSHOT=1), so a test run leaves the tree clean.
const SCREENSHOT = process.env['UPDATE_SCREENSHOT'] ? resolve(import.meta.dirname, '..', '..', 'docs', 'dashboard.png') : join(tmpdir(), 'stgcmt-dashboard.png');
const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';

interface Detail {
  state: string;
  deliveryAttemptLog: Array<{ ok: boolean; via: string; error: string | null }>;
}

/** Retries an assertion until it holds (the page refreshes itself), rethrowing the last failure. */
async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
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
  const pageErrors: string[] = [];

  const text = async (selector: string): Promise<string> => ((await page.locator(selector).textContent()) ?? '').trim();
  const row = (uid: string) => page.locator(`#tx-body tr[data-uid="${uid}"]`);
  const cell = async (uid: string, col: string): Promise<string> => ((await row(uid).locator(`[data-col="${col}"]`).textContent()) ?? '').trim();

  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(NO_CHROMIUM);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });

    stack = await startStack();
    const [stored, storedMr] = [await createInstances(stack.pacs, 4, { sopClassUid: CT }), await createInstances(stack.pacs, 2, { sopClassUid: MR })] as [CreatedInstance[], CreatedInstance[]];

    const ok = await storageCommitment(stack.modality, stack.sidecarModalityName, stored.slice(0, 3));
    assert.equal(ok.status, 'Success');
    okUid = ok.id;

    absent = [newUid(), newUid()].map((uid) => ({ sopClassUid: CT, sopInstanceUid: uid }));
    wrongClass = storedMr.map((i) => ({ sopClassUid: CT, sopInstanceUid: i.sopInstanceUid }));
    const failing = await storageCommitment(stack.modality, stack.sidecarModalityName, [stored[3]!, ...absent, ...wrongClass]);
    assert.equal(failing.status, 'Failure');
    failUid = failing.id;

    // Orthanc has the reports; the sidecar marks them delivered right after the modality's answer.
    for (const uid of [okUid, failUid]) {
      await waitUntil(async () => (await stack!.sidecar.api<Detail>('GET', `/api/transactions/${uid}`)).body.state === 'REPORTED', 10_000);
    }

    const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'en-GB' });
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/status of 40[14]|status of 503/.test(message.text())) pageErrors.push(message.text());
    });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('asks for the API token before showing anything, and shows Orthanc reachable meanwhile', async () => {
    await page.goto(`${stack!.sidecar.url}/`);
    assert.match(page.url(), /\/dashboard\/$/);
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
    assert.equal(await cell(okUid, 'state'), 'Reported');
    assert.equal(await cell(okUid, 'attempts'), '1');
    assert.notEqual(await cell(okUid, 'reported'), '—');

    assert.equal(await cell(failUid, 'callingAet'), 'MODALITY');
    assert.equal(await cell(failUid, 'instances'), '5');
    assert.equal(await cell(failUid, 'committed'), '1');
    assert.equal(await cell(failUid, 'failed'), '4');
    assert.equal(await cell(failUid, 'state'), 'Reported');
    assert.equal(await cell(failUid, 'attempts'), '1');
    // Newest first.
    assert.deepEqual(await page.locator('#tx-body tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uid'))), [failUid, okUid]);
    assert.equal(await text('#page-info'), '1–2 of 2');
  });

  it('shows the counts by state for the last 24 h, the known peers, and Orthanc reachable', async () => {
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
    await page.getByRole('button', { name: `Details of transaction ${failUid} from MODALITY` }).click();
    await page.locator('#failed-body').waitFor({ state: 'visible' });
    assert.match(page.url(), new RegExp(`tx=${failUid.replaceAll('.', '\\.')}`));
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
      detail = (await stack!.sidecar.api<Detail>('GET', `/api/transactions/${failUid}`)).body;
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
    await page.screenshot({ path: SCREENSHOT });
    assert.ok(existsSync(SCREENSHOT));
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

  it('raised no script errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
