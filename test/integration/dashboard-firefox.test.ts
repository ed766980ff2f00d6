/**
 * The dashboard in a real headless Firefox (Debian's firefox-esr) at 1280 px, driven by puppeteer-core
 * over WebDriver BiDi, against the same stack as the Chromium test (test/harness/dashboard.ts): real
 * transactions that a real Orthanc SCU made from real patients and studies, and later one to a modality
 * whose port is closed (the banner). The page runs under the server's Content-Security-Policy (Trusted
 * Types included) and must raise no script error and cause no violation in Firefox either.
 *
 * Needs /usr/bin/firefox-esr (or FIREFOX_PATH). Without it the test FAILS, on purpose: CI installs it, and
 * a skipped browser test would hide a page broken in Firefox.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it, test } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import {
  COLOURED_PIXELS,
  commitToUnreachableModality,
  CSP_DIRECTIVES,
  CT,
  DOWN_AET,
  eventually,
  RECORD_CSP_VIOLATIONS,
  startDashboardStack,
  type DashboardStack,
} from '../harness/dashboard.js';
import { TEST_API_TOKEN } from '../harness/sidecar.js';

const FIREFOX = process.env['FIREFOX_PATH'] ?? '/usr/bin/firefox-esr';
/**
 * On top of puppeteer's own test profile (no updates, telemetry, safe browsing or remote settings): no
 * captive-portal or connectivity probes, no DNS prefetch or speculative connections, a fixed language.
 */
const FIREFOX_PREFS = {
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'network.predictor.enabled': false,
  'browser.safebrowsing.update.enabled': false,
  'toolkit.telemetry.enabled': false,
  'intl.locale.requested': 'en-GB',
  'intl.accept_languages': 'en-GB',
};
const NO_FIREFOX =
  `Firefox not found at ${FIREFOX}: this dashboard test drives a real Firefox. ` +
  'Install it (apt-get install -y firefox-esr) or point FIREFOX_PATH at one. This test fails rather than skips.';

// Counted as a failure of its own, so a missing browser shows in the totals, not only as cancelled tests.
test('Firefox is installed for the dashboard test', () => {
  assert.ok(existsSync(FIREFOX), NO_FIREFOX);
});

describe('dashboard in Firefox', () => {
  let browser: Browser | undefined;
  let page: Page;
  let fixture: DashboardStack | undefined;
  const pageErrors: string[] = [];

  /** Evaluates an expression in the page (the test's TypeScript has no DOM types). */
  const inPage = <T>(expression: string): Promise<T> => page.evaluate(expression) as Promise<T>;
  const q = (selector: string): string => `document.querySelector(${JSON.stringify(selector)})`;
  const text = (selector: string): Promise<string> => inPage(`(${q(selector)}?.textContent ?? '').trim()`);
  const visible = (selector: string): Promise<boolean> => inPage(`!!${q(selector)}?.checkVisibility()`);
  const rowSelector = (uid: string, aet = 'MODALITY'): string => `#tx-body tr[data-uid="${uid}"][data-aet="${aet}"]`;
  const cell = (uid: string, col: string): Promise<string> => text(`${rowSelector(uid)} [data-col="${col}"]`);
  const listedUids = (): Promise<string[]> => inPage(`[...document.querySelectorAll('#tx-body tr')].map((r) => r.getAttribute('data-uid'))`);
  /** Replaces a field's text as a person would: select all, then type. */
  const typeInto = async (selector: string, value: string): Promise<void> => {
    await page.focus(selector);
    await inPage(`${q(selector)}.select()`);
    await page.keyboard.press('Backspace');
    await page.type(selector, value);
  };

  before(async () => {
    if (!existsSync(FIREFOX)) throw new Error(NO_FIREFOX);
    // A fresh temporary profile (puppeteer's default), deleted on close; the time zone of the Chromium test.
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: true,
      extraPrefsFirefox: FIREFOX_PREFS,
      env: { ...process.env, TZ: 'Europe/Zurich', LANG: 'en_GB.UTF-8' },
      protocolTimeout: 60_000,
    });
    fixture = await startDashboardStack();
    page = await browser.newPage();
    // 1280 px: every column of the list must fit without being cut.
    await page.setViewport({ width: 1280, height: 800 });
    // Every Content-Security-Policy violation the page causes, as the browser reports it to the page.
    await page.evaluateOnNewDocument(RECORD_CSP_VIOLATIONS);
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
  });

  after(async () => {
    await browser?.close();
    await fixture?.stop();
  });

  it('loads under the strict CSP and asks for the API token; a wrong one is refused (401)', async () => {
    const response = await page.goto(`${fixture!.stack.sidecar.url}/`);
    assert.match(page.url(), /\/dashboard\/$/);
    const csp = response?.headers()['content-security-policy'] ?? '';
    for (const directive of CSP_DIRECTIVES) assert.ok(csp.split(';').map((d) => d.trim()).includes(directive), `CSP has ${directive}: ${csp}`);
    await page.waitForSelector('#token-input', { visible: true });
    assert.equal(await visible('#dashboard'), false);
    await eventually(async () => assert.match(await text('#message'), /Enter the API token/));
    await eventually(async () => assert.equal(await text('#health-orthanc'), 'Orthanc: reachable'));

    await page.type('#token-input', 'not-the-token');
    await page.keyboard.press('Enter');
    await eventually(async () => assert.match(await text('#message'), /refused the API token \(401 Unauthorized\)/));
    assert.equal(await visible('#token-input'), true);
  });

  it('with the token, lists the transactions with patient and study, within 1280 px', async () => {
    const { okUid, failUid } = fixture!;
    await typeInto('#token-input', TEST_API_TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector(rowSelector(okUid), { visible: true });
    await page.waitForSelector(rowSelector(failUid), { visible: true });
    assert.equal(await visible('#token-input'), false);
    assert.equal(await inPage('sessionStorage.getItem("stgcmt.apiToken")'), TEST_API_TOKEN);

    assert.equal(await cell(okUid, 'committed'), '3');
    assert.equal(await cell(okUid, 'state'), 'Reported — all committed');
    assert.match(await cell(okUid, 'patient'), /^DOE, JANE MRS\s*PID-4711$/);
    assert.match(await cell(okUid, 'study'), /^CT CT THORAX\s*2026-11-25 · Acc\. ACC-1001$/);
    assert.equal(await cell(failUid, 'state'), 'Reported — 4 failed');
    assert.deepEqual(await listedUids(), [failUid, okUid]);

    // Nothing scrolls sideways at 1280 px: neither the page nor the list, and the Details button is on screen.
    const [scrollWidth, clientWidth] = await inPage<[number, number]>('[document.documentElement.scrollWidth, document.documentElement.clientWidth]');
    assert.ok(scrollWidth <= clientWidth && clientWidth > 1200, `page ${scrollWidth} px wide in a ${clientWidth} px window`);
    assert.equal(await inPage(`(() => { const w = ${q('.list-card .table-wrap')}; return w.scrollWidth <= w.clientWidth; })()`), true, 'the list does not scroll sideways');
    const right = await inPage<number>(`${q(`${rowSelector(okUid)} button[aria-label^="Details of"]`)}.getBoundingClientRect().right`);
    assert.ok(right <= 1280, `Details button within the window: right edge at ${right}`);
  });

  it('finds the transaction that asked for an image by its SOP Instance UID', async () => {
    const { okUid, stored } = fixture!;
    await page.type('#search-input', stored[0]!.sopInstanceUid);
    await page.keyboard.press('Enter');
    await eventually(async () => assert.deepEqual(await listedUids(), [okUid]));
    assert.equal(await inPage(`${q('#search-kind')}.value`), 'instance');
    assert.match(await text('#search-note'), /1 transaction with SOP Instance UID/);
    assert.match(await cell(okUid, 'matched'), /this image: committed/);
    await page.click('#filters-clear');
    await eventually(async () => assert.equal((await listedUids()).length, 2));
  });

  it("opens a transaction's detail from the keyboard (Enter)", async () => {
    const { failUid } = fixture!;
    await page.focus(`${rowSelector(failUid)} button[aria-label^="Details of"]`);
    await page.keyboard.press('Enter');
    await eventually(async () => assert.equal(await inPage(`${q(rowSelector(failUid))}.getAttribute('aria-current')`), 'true'));
    await eventually(async () => assert.match(await text('#failed-title'), /Failed instances \(4\)/));
    assert.match(await text('#failed-body'), /No such object instance/);
    assert.match(await text('#failed-body'), /Class\/instance conflict/);
    assert.match(await text('#attempts-body'), /Delivered/);
    assert.match(page.url(), new RegExp(`tx=${failUid.replaceAll('.', '\\.')}&txAet=MODALITY`));
  });

  it('draws the history charts', async () => {
    await page.$eval('#history', (history) => history.scrollIntoView());
    await eventually(async () => assert.equal(await inPage(`document.querySelectorAll('#chart-volume canvas').length`), 1));
    assert.equal(await inPage(`document.querySelectorAll('#chart-latency canvas').length`), 1);
    await eventually(async () => assert.match(await text('#chart-volume-summary'), /^2 transactions, 1 with failures, since/));
    assert.match(await text('#chart-latency-summary'), /^worst hourly p99: \d+\.\d\d s$/);
    const canvas = await page.$('#chart-volume canvas');
    const painted = await canvas!.evaluate(COLOURED_PIXELS);
    assert.ok(painted > 50, `coloured pixels in the volume chart: ${painted}`);
    assert.match(await text('#chart-reasons'), /No such object instance \(not stored\) \(0x0112\)\s*2/);
  });

  it('raises the banner when a report cannot be delivered', async () => {
    const { stack, stored } = fixture!;
    const downUid = await commitToUnreachableModality(stack, { sopClassUid: CT, sopInstanceUid: stored[1]!.sopInstanceUid });
    await eventually(async () => assert.match(await text('#alerts'), new RegExp(`Report overdue: 1 report\\(s\\) to ${DOWN_AET} not delivered; the oldest has waited since \\d{2}:\\d{2} (CET|GMT\\+1)`)), 15_000);
    assert.equal(await visible('#alerts'), true);
    assert.equal(await inPage(`${q('#alerts')}.getAttribute('role')`), 'alert');
    await eventually(async () => assert.match(await text(`${rowSelector(downUid, DOWN_AET)} [data-col="state"]`), /^Modality unreachable since \d{2}:\d{2} (CET|GMT\+1)$/));
    // Still no sideways scrolling with the banner up.
    assert.equal(await inPage('document.documentElement.scrollWidth <= document.documentElement.clientWidth'), true);
  });

  it('raised no script error and caused no Content-Security-Policy violation', async () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(await inPage('window.__cspViolations'), []);
  });

  it('enforces Trusted Types in Firefox too: markup from a string is refused, and reported', async () => {
    const refused = await inPage<string>(`(() => { try { document.createElement('div').innerHTML = '<b>x</b>'; return 'accepted'; } catch (e) { return e.name; } })()`);
    assert.equal(refused, 'TypeError');
    await eventually(async () => assert.deepEqual(await inPage('window.__cspViolations.map((v) => v.split(" ")[0])'), ['require-trusted-types-for']));
  });
});
