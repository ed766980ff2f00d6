/**
 * Storage Commitment sidecar dashboard: plain ES module, no build step, no dependencies.
 *
 * Data comes from the sidecar's HTTP API (/readyz without a token; /api/* with the Bearer token the user
 * types in, kept in sessionStorage). Every value from the server reaches the page through textContent or
 * setAttribute, never innerHTML (the server's Content-Security-Policy enforces it with Trusted Types). The
 * view (filters, page, selected transaction) lives in the URL hash, so a reload or a shared link shows the
 * same thing. A transaction is its calling AE title plus its Transaction UID: two AEs may reuse one UID.
 */

import uPlot from './vendor/uPlot.esm.js';

const TOKEN_KEY = 'stgcmt.apiToken';
const REFRESH_MS = 3000;
/** The charts' history changes by the hour: asked for once a minute, not every refresh. */
const HISTORY_REFRESH_MS = 60_000;
/** Failed instances fetched per page (the API pages them; a transaction may hold 200,000). */
const INSTANCE_PAGE = 100;
const STATES = ['RECEIVED', 'VERIFIED', 'DELIVERY_RETRY', 'REPORTED', 'EXPIRED'];
const STATE_LABELS = {
  RECEIVED: 'Received',
  VERIFIED: 'Verified',
  DELIVERY_RETRY: 'Delivery retry',
  REPORTED: 'Reported',
  EXPIRED: 'Expired',
};
const STATE_HINTS = {
  RECEIVED: 'Request received, instances being checked in Orthanc',
  VERIFIED: 'Verdict reached, report not delivered yet',
  DELIVERY_RETRY: 'Report delivery failed, will retry',
  REPORTED: 'Report delivered to the modality',
  EXPIRED: 'Report delivery gave up',
};
/** What a transaction's situation (from the API) says, in words and colour: each its own. */
const SITUATIONS = {
  verifying: { label: () => 'Verifying', hint: 'Checking the instances in Orthanc' },
  'waiting-for-arrivals': { label: () => 'Waiting for late arrivals', hint: 'Some instances are not in Orthanc yet; they are waited for (STGCMT_ARRIVAL_WAIT) before they fail' },
  'orthanc-unreachable': { label: () => 'Orthanc unreachable', hint: 'Orthanc cannot be asked; the instances stay undecided until it answers (STGCMT_VERIFY_TIMEOUT)' },
  delivering: { label: () => 'Delivering report', hint: 'Verdict reached; the report is being sent to the modality' },
  'waiting-for-modality': {
    label: (t) => `Waiting for the modality since ${shortTime(t.situationSince)}`,
    hint: 'It cannot be called back (callback: false): the report goes on the next association the modality opens to the sidecar, or expires',
  },
  'modality-unreachable': { label: (t) => `Modality unreachable since ${shortTime(t.situationSince)}`, hint: 'The report could not be delivered; retried with backoff until the report expires' },
  'role-refused': { label: () => 'Role refused (configuration)', hint: 'The modality refuses the report for a configuration reason (role, context, AE title): someone must change a setting' },
  'reported-all-committed': { label: () => 'Reported — all committed', hint: 'Report delivered: every instance is safely stored' },
  'reported-with-failures': { label: (t) => `Reported — ${t.failed} failed`, hint: 'Report delivered, with failed instances: the modality must not delete those' },
  expired: { label: () => 'Expired — modality must resend', hint: 'The report could not be delivered in time; the modality must send its request again' },
};

const SEARCH_WORDS = {
  auto: 'something matching',
  patient: 'patient ID or name',
  accession: 'accession number',
  instance: 'SOP Instance UID',
  study: 'Study Instance UID',
  transaction: 'Transaction UID',
};

const SOP_CLASSES = {
  '1.2.840.10008.5.1.4.1.1.1': 'CR Image',
  '1.2.840.10008.5.1.4.1.1.1.1': 'Digital X-Ray Image',
  '1.2.840.10008.5.1.4.1.1.1.2': 'Digital Mammography Image',
  '1.2.840.10008.5.1.4.1.1.2': 'CT Image',
  '1.2.840.10008.5.1.4.1.1.2.1': 'Enhanced CT Image',
  '1.2.840.10008.5.1.4.1.1.4': 'MR Image',
  '1.2.840.10008.5.1.4.1.1.4.1': 'Enhanced MR Image',
  '1.2.840.10008.5.1.4.1.1.6.1': 'Ultrasound Image',
  '1.2.840.10008.5.1.4.1.1.7': 'Secondary Capture Image',
  '1.2.840.10008.5.1.4.1.1.12.1': 'X-Ray Angiographic Image',
  '1.2.840.10008.5.1.4.1.1.20': 'Nuclear Medicine Image',
  '1.2.840.10008.5.1.4.1.1.77.1.4': 'VL Photographic Image',
  '1.2.840.10008.5.1.4.1.1.88.22': 'Enhanced SR',
  '1.2.840.10008.5.1.4.1.1.104.1': 'Encapsulated PDF',
  '1.2.840.10008.5.1.4.1.1.128': 'PET Image',
  '1.2.840.10008.5.1.4.1.1.481.1': 'RT Image',
};
// The server sends failureReasonText; this is only the fallback for an older server.
const FAILURE_REASONS = {
  0x0110: 'Processing failure',
  0x0112: 'No such object instance (not stored)',
  0x0213: 'Resource limitation',
  0x0122: 'Referenced SOP Class not supported',
  0x0119: 'Class/instance conflict (stored under another SOP Class)',
  0x0131: 'Duplicate Transaction UID',
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------------------
// Safe DOM building: strings always become text nodes.

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof window.Node ? child : String(child));
  }
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Replaces a container's children, keeping keyboard focus on the element with the same data-key. */
function replaceChildrenKeepingFocus(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.getAttribute('data-key') : null;
  container.replaceChildren(...children);
  if (key) {
    const again = Array.from(container.querySelectorAll('[data-key]')).find((n) => n.getAttribute('data-key') === key);
    if (again && !again.disabled) again.focus();
  }
}

const pad = (n) => String(n).padStart(2, '0');

/** The short name of the browser's time zone at that date ("CET", "GMT+1", "UTC"). */
function zoneName(d) {
  return new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' }).formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? '';
}

function formatTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const now = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return sameDay ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** Date and time with the zone, as one reads it aloud at 3 a.m.: "16:03 CET" or "2026-11-24 16:03 CET". */
function shortTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const text = formatTime(iso);
  return `${text.slice(0, -3)} ${zoneName(d)}`;
}

/** A time element: local time with its zone; the hover says how long ago, computed when hovered. */
function timeEl(iso) {
  const text = formatTime(iso);
  if (!text) return el('span', { class: 'none', 'aria-label': 'none' }, '—');
  const d = new Date(iso);
  return el('time', { datetime: iso, title: hoverText(iso) }, `${text} ${zoneName(d)}`);
}

function hoverText(iso) {
  const d = new Date(iso);
  return `${relative(iso)} · ${d.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'long' })}`;
}

function relative(iso) {
  const ms = Date.parse(iso) - Date.now();
  const s = Math.round(Math.abs(ms) / 1000);
  const span = s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} days`;
  return ms >= 0 ? `in ${span}` : `${span} ago`;
}

/** The situation in words and colour (the store state stays in the hover). */
function situationBadge(t) {
  const known = SITUATIONS[t.situation];
  if (!known) return stateBadge(t.state);
  return el('span', { class: `badge situation-${t.situation}`, title: `${known.hint} (state ${t.state})`, dataset: { state: t.state, situation: t.situation } }, known.label(t));
}

/** DOE^JANE^^MRS -> "DOE, JANE MRS" (PN components: family^given^middle^prefix^suffix). */
function personName(pn) {
  if (!pn) return '';
  const [family = '', ...rest] = pn.split('=')[0].split('^');
  const given = rest.filter(Boolean).join(' ');
  return given ? `${family}, ${given}` : family;
}

/** DA YYYYMMDD -> YYYY-MM-DD. */
function studyDate(da) {
  return da && /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : (da ?? '');
}

function stateBadge(state) {
  return el('span', { class: `badge state-${state}`, title: STATE_HINTS[state] ?? state, dataset: { state } }, STATE_LABELS[state] ?? state);
}

function sopClassName(uid) {
  return SOP_CLASSES[uid] ?? uid;
}

// ---------------------------------------------------------------------------------------------------------
// View state in the URL hash: #state=REPORTED&aet=MODALITY&offset=0&limit=25&tx=1.2.3&txAet=CT%201
// (tx without txAet, as older links have it, works while only one calling AE used that UID)

const SEARCH_KINDS = ['auto', 'patient', 'accession', 'instance', 'study', 'transaction'];
const view = { state: '', callingAet: '', offset: 0, limit: 25, tx: '', txAet: '', q: '', kind: 'auto', from: '', to: '' };

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const state = params.get('state') ?? '';
  view.state = STATES.includes(state) ? state : '';
  view.callingAet = (params.get('aet') ?? '').slice(0, 16);
  view.offset = Math.max(0, Number.parseInt(params.get('offset') ?? '0', 10) || 0);
  const limit = Number.parseInt(params.get('limit') ?? '25', 10);
  view.limit = Number.isInteger(limit) && limit >= 1 && limit <= 500 ? limit : 25;
  view.tx = params.get('tx') ?? '';
  view.txAet = view.tx ? (params.get('txAet') ?? '') : '';
  view.q = (params.get('q') ?? '').slice(0, 64);
  const kind = params.get('kind') ?? 'auto';
  view.kind = SEARCH_KINDS.includes(kind) ? kind : 'auto';
  view.from = params.get('from') ?? '';
  view.to = params.get('to') ?? '';
}

function writeHash() {
  const params = new URLSearchParams();
  if (view.state) params.set('state', view.state);
  if (view.callingAet) params.set('aet', view.callingAet);
  if (view.offset) params.set('offset', String(view.offset));
  if (view.limit !== 25) params.set('limit', String(view.limit));
  if (view.tx) params.set('tx', view.tx);
  if (view.tx && view.txAet) params.set('txAet', view.txAet);
  if (view.q) params.set('q', view.q);
  if (view.q && view.kind !== 'auto') params.set('kind', view.kind);
  if (view.from) params.set('from', view.from);
  if (view.to) params.set('to', view.to);
  const hash = params.toString();
  history.replaceState(null, '', hash ? `#${hash}` : location.pathname + location.search);
}

function syncControls() {
  $('filter-state').value = view.state;
  if (document.activeElement !== $('filter-aet')) $('filter-aet').value = view.callingAet;
  if (document.activeElement !== $('search-input')) $('search-input').value = view.q;
  $('search-kind').value = view.kind;
  $('filter-from').value = view.from;
  $('filter-to').value = view.to;
  const size = $('page-size');
  if (!Array.from(size.options).some((o) => o.value === String(view.limit))) size.append(el('option', { value: view.limit }, view.limit));
  size.value = String(view.limit);
}

// ---------------------------------------------------------------------------------------------------------
// API access

class ApiError extends Error {
  constructor(status, message, body = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** A transaction's API path, relative to /dashboard/: each part one encoded segment (AE titles may hold "/"). */
function transactionPath(aet, uid) {
  return aet ? `../api/transactions/${encodeURIComponent(aet)}/${encodeURIComponent(uid)}` : `../api/transactions/${encodeURIComponent(uid)}`;
}

/**
 * The list's filters and search as API parameters. "any" tries what the text looks like: a UID is looked
 * for as an image, a study, then a transaction; other text as a patient, then an accession number. The
 * kind that matched is kept (see resolveSearch), so a refresh asks once.
 */
function searchParams() {
  const params = new URLSearchParams();
  if (view.state) params.set('state', view.state);
  if (view.callingAet) params.set('callingAet', view.callingAet);
  // datetime-local is the browser's local time: sent as an instant with its offset.
  if (view.from) params.set('from', new Date(view.from).toISOString());
  if (view.to) params.set('to', new Date(view.to).toISOString());
  if (view.q) params.set(view.kind === 'auto' ? guessKinds(view.q)[0] : view.kind, view.q);
  return params;
}

const isUid = (text) => /^[0-9]+(\.[0-9]+)+$/.test(text);
const guessKinds = (text) => (isUid(text) ? ['instance', 'study', 'transaction'] : ['patient', 'accession']);

/** For "any": the first kind of search that finds something becomes the view's kind. */
async function resolveSearch() {
  if (!view.q || view.kind !== 'auto') return;
  const kinds = guessKinds(view.q);
  for (const kind of kinds) {
    const params = searchParams();
    params.delete(kinds[0]);
    params.set(kind, view.q);
    params.set('limit', '1');
    const page = await request(`../api/transactions?${params}`);
    if (page.total > 0) {
      view.kind = kind;
      writeHash();
      syncControls();
      return;
    }
  }
}

const sameTx = (t, aet, uid) => t.transactionUid === uid && t.callingAet === aet;

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';

/**
 * Answers already seen, by path, with their ETag: a refresh asks "changed since?" (If-None-Match) and the
 * server answers 304 without a body when nothing changed, so a quiet 200,000-instance day costs headers.
 */
const seen = new Map();
/** How many refreshes the server answered "not modified" (shown in the refresh status for the curious). */
let notModified = 0;

async function request(path, { method = 'GET', auth = true, conditional = false } = {}) {
  const headers = { accept: 'application/json' };
  if (auth) headers.authorization = `Bearer ${token}`;
  const known = conditional ? seen.get(path) : undefined;
  if (known) {
    headers['if-none-match'] = known.etag;
    // Without it the browser adds "Cache-Control: no-cache" to a no-store fetch, and the server must answer in full.
    headers['cache-control'] = 'max-age=0';
  }
  let response;
  try {
    // Relative to /dashboard/, so the page also works behind a reverse proxy under a path prefix.
    response = await fetch(new URL(path, location.href), { method, headers, cache: 'no-store', credentials: 'omit' });
  } catch {
    throw new ApiError(0, 'the sidecar cannot be reached');
  }
  if (response.status === 304 && known) {
    notModified++;
    return known.body;
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): the status says enough
  }
  if (!response.ok && !(path.endsWith('readyz') && body && body.checks)) {
    const retryAfter = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
    throw new ApiError(response.status, (body && typeof body.error === 'string' && body.error) || response.statusText || `HTTP ${response.status}`, body, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  const etag = response.headers.get('etag');
  if (conditional && etag) {
    // Bounded: paths change with filters and pages.
    if (seen.size > 50) seen.clear();
    seen.set(path, { etag, body });
  }
  return body;
}

// ---------------------------------------------------------------------------------------------------------
// Messages and the token form

let messageKey = '';

function showMessage(kind, text) {
  const box = $('message');
  const key = `${kind}:${text}`;
  if (key === messageKey) return;
  messageKey = key;
  box.hidden = !text;
  box.className = `message message-${kind}`;
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  box.textContent = text;
}

function clearMessage() {
  showMessage('info', '');
}

function showTokenForm(reason) {
  const wasHidden = $('token-section').hidden;
  $('token-section').hidden = false;
  $('dashboard').hidden = true;
  $('forget-token').hidden = true;
  if (reason) showMessage(reason.kind, reason.text);
  if (wasHidden) $('token-input').focus();
}

function useToken(value) {
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// ---------------------------------------------------------------------------------------------------------
// Rendering (each part re-renders only when its data changed, so focus and scrolling stay put)

const rendered = { health: '', summary: '', list: '', detail: '', vanished: '' };

function renderHealth(ready) {
  const key = JSON.stringify(ready);
  if (key === rendered.health) return;
  rendered.health = key;
  const checks = ready?.checks ?? {};
  const words = {
    orthanc: ['Orthanc', 'reachable', 'unreachable'],
    dicomListener: ['DICOM listener', 'listening', 'down'],
    store: ['Store', 'open', 'unavailable'],
  };
  for (const pill of document.querySelectorAll('#health [data-check]')) {
    const name = pill.getAttribute('data-check');
    const [label, good, bad] = words[name];
    // Each check is { ok, reason }; the reason shows on hover.
    const value = checks[name];
    const status = value?.ok === true ? 'ok' : value?.ok === false ? 'bad' : 'unknown';
    pill.className = `pill pill-${status}`;
    pill.textContent = `${label}: ${status === 'ok' ? good : status === 'bad' ? bad : 'unknown'}`;
    pill.title = value?.reason ?? '';
  }
  // Not a check: whether Orthanc may recycle what is reported committed (PS3.4 J.3.3.1.2).
  const commitment = ready?.commitment;
  const pill = $('health-commitment');
  const state = !commitment ? 'unknown' : commitment.warning ? 'bad' : 'ok';
  pill.className = `pill pill-${state}`;
  pill.textContent = `Commitment: ${!commitment ? 'unknown' : commitment.warning ? 'may not be kept' : commitment.protect ? 'protected' : 'kept (no recycling)'}`;
  pill.title = commitment?.warning ?? '';
}

/** Committed instances later deleted from Orthanc: the PACS administrator's alarm, newest first. */
function renderVanished(list) {
  const key = JSON.stringify(list);
  if (key === rendered.vanished) return;
  rendered.vanished = key;
  $('vanished-section').hidden = !list || list.total === 0;
  if (!list) return;
  $('vanished-total').textContent = list.total > list.items.length ? `(latest ${list.items.length} of ${list.total})` : `(${list.total})`;
  replaceChildrenKeepingFocus(
    $('vanished-body'),
    ...list.items.map((v) =>
      el(
        'tr',
        { dataset: { uid: v.transactionUid, aet: v.callingAet, instance: v.sopInstanceUid } },
        el('td', { dataset: { col: 'vanishedAt' } }, timeEl(v.vanishedAt)),
        el('td', { class: 'mono' }, v.callingAet),
        el(
          'td',
          {},
          el(
            'button',
            { type: 'button', class: 'link-button mono', 'aria-label': `Details of transaction ${v.transactionUid} from ${v.callingAet}`, onclick: () => select(v.callingAet, v.transactionUid) },
            v.transactionUid,
          ),
        ),
        el('td', { class: 'mono' }, v.sopInstanceUid),
        el('td', {}, timeEl(v.reportedAt)),
      ),
    ),
  );
}

function renderSummary(summary) {
  const key = JSON.stringify([summary, view.state]);
  if (key === rendered.summary) return;
  rendered.summary = key;
  // Which node answers (STGCMT_NODE_ID): several may share one database. As text, like every value.
  setText($('node-id'), summary.node ? `node: ${summary.node}` : '');
  $('node-id').hidden = !summary.node;
  const counts = summary.countsByState ?? {};
  const total = STATES.reduce((sum, s) => sum + (counts[s] ?? 0), 0);
  const items = [
    el('li', { class: 'count count-total' }, el('span', { class: 'count-n', dataset: { count: 'total' } }, total), el('span', { class: 'count-label' }, 'Total')),
    ...STATES.map((s) =>
      el(
        'li',
        { class: `count state-${s}` },
        el(
          'button',
          {
            type: 'button',
            class: 'count-button',
            'aria-pressed': view.state === s ? 'true' : 'false',
            title: `${STATE_HINTS[s]}. Click to filter the list.`,
            dataset: { key: `count-${s}`, state: s },
            onclick: () => setFilters({ state: view.state === s ? '' : s, callingAet: view.callingAet }),
          },
          el('span', { class: 'count-n', dataset: { count: s } }, counts[s] ?? 0),
          el('span', { class: 'count-label' }, STATE_LABELS[s]),
        ),
      ),
    ),
  ];
  replaceChildrenKeepingFocus($('counts'), ...items);
  $('counts-since').textContent = summary.since ? `since ${formatTime(summary.since)}` : '';

  const peers = summary.peers ?? [];
  $('peers-body').replaceChildren(
    ...(peers.length === 0
      ? [el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'No peers known'))]
      : peers.map((p) =>
          el('tr', {}, el('th', { scope: 'row' }, p.aeTitle), el('td', { class: 'mono' }, `${p.host}:${p.port}`), el('td', {}, p.tls ? 'yes' : 'no'), el('td', {}, p.source)),
        )),
  );
  $('peer-aets').replaceChildren(...peers.map((p) => el('option', { value: p.aeTitle })));
  dashboardSettings = summary.dashboard ?? dashboardSettings;
  renderAlerts(summary.alerts ?? []);
}

/** Settings the server sends with the summary (patient data shown, where Orthanc Explorer is). */
let dashboardSettings = { showPatientData: true, orthancExplorerUrl: null };

const ALERT_WORDS = {
  'report-overdue': 'Report overdue',
  'modality-silent': 'No delivery to a modality',
  'orthanc-unhealthy': 'Orthanc unhealthy',
  'store-unhealthy': 'Store unhealthy',
};

/** The banner: what needs someone now, before a modality's disk fills up. */
function renderAlerts(alerts) {
  const box = $('alerts');
  box.hidden = alerts.length === 0;
  box.replaceChildren(
    ...alerts.map((a) =>
      el(
        'p',
        { class: `alert alert-${a.kind}`, dataset: { kind: a.kind, aet: a.callingAet } },
        el('strong', {}, `${ALERT_WORDS[a.kind] ?? a.kind}: `),
        a.text.replace(/\d{4}-\d{2}-\d{2}T[\d:.]+Z/g, (iso) => shortTime(iso)),
        a.since ? el('span', { class: 'subtle' }, ` (${relative(a.since)})`) : [],
        a.callingAet
          ? [' ', el('button', { type: 'button', class: 'link-button', dataset: { key: `alert-${a.kind}-${a.callingAet}` }, onclick: () => setFilters({ state: '', callingAet: a.callingAet }) }, `Show ${a.callingAet}`)]
          : [],
      ),
    ),
  );
}

function renderList(page) {
  const key = JSON.stringify([page, view.tx, view.txAet, view.q, view.kind]);
  if (key === rendered.list) return;
  rendered.list = key;
  const rows = page.items.map((t) => {
    const selected = sameTx(t, view.txAet, view.tx);
    const studies = t.studies ?? [];
    const first = studies[0];
    const matched = t.matchedInstances ?? [];
    return el(
      'tr',
      { class: selected ? 'selected' : undefined, 'aria-current': selected ? 'true' : undefined, dataset: { uid: t.transactionUid, aet: t.callingAet }, title: t.transactionUid },
      el('td', { class: 'time-cell' }, timeEl(t.receivedAt)),
      el('td', { class: 'mono', dataset: { col: 'callingAet' } }, t.callingAet),
      el(
        'td',
        { class: 'patient-col', dataset: { col: 'patient' } },
        first ? [el('div', { class: 'patient-name' }, personName(first.patientName) || '—'), el('div', { class: 'subtle mono' }, first.patientId ?? '')] : el('span', { class: 'none' }, t.studies ? (t.state === 'RECEIVED' ? '…' : '—') : 'hidden'),
      ),
      el(
        'td',
        { class: 'study-col', dataset: { col: 'study' } },
        first
          ? [
              el('div', { class: 'study-line' }, [first.modalities ? el('span', { class: 'modality' }, first.modalities.replaceAll('\\', '/')) : [], ' ', first.studyDescription ?? el('span', { class: 'none' }, 'no description')]),
              el('div', { class: 'subtle' }, [studyDate(first.studyDate), first.accessionNumber ? ` · Acc. ${first.accessionNumber}` : '', studies.length > 1 ? ` · +${studies.length - 1} more` : '']),
            ]
          : el('span', { class: 'none' }, '—'),
      ),
      el('td', { class: 'num', dataset: { col: 'instances' } }, t.instances),
      el('td', { class: 'num ok-text', dataset: { col: 'committed' } }, t.committed),
      el('td', { class: `num ${t.failed > 0 ? 'bad-text' : 'zero'}`, dataset: { col: 'failed' } }, t.failed),
      el(
        'td',
        { dataset: { col: 'state' } },
        // A modality behind NAT or a firewall: the badge says its report waits for it to open an association.
        situationBadge(t),
        // Searched by an image: what was answered for it in this transaction.
        matched.length > 0
          ? el('div', { class: 'subtle', dataset: { col: 'matched' } }, `this image: ${matched.map((m) => (m.outcome === 'failed' ? `failed ${m.failureReasonHex ?? ''}`.trim() : m.outcome)).join(', ')}`)
          : [],
      ),
      el('td', { class: 'num', dataset: { col: 'attempts' } }, t.deliveryAttempts),
      el(
        'td',
        {},
        el(
          'button',
          {
            type: 'button',
            class: 'link-button',
            'aria-label': `Details of transaction ${t.transactionUid} from ${t.callingAet}`,
            'aria-pressed': selected ? 'true' : 'false',
            dataset: { key: `details-${t.callingAet}/${t.transactionUid}` },
            onclick: () => select(t.callingAet, t.transactionUid),
          },
          'Details',
        ),
      ),
    );
  });
  setText($('tz-name'), `(${zoneName(new Date())})`);
  const note = $('search-note');
  note.hidden = !view.q;
  setText(note, view.q ? `${page.total} transaction${page.total === 1 ? '' : 's'} with ${SEARCH_WORDS[view.kind] ?? 'a match for'} “${view.q}”` : '');
  replaceChildrenKeepingFocus($('tx-body'), ...rows);
  $('tx-empty').hidden = page.items.length > 0;
  const first = page.total === 0 ? 0 : page.offset + 1;
  const last = page.offset + page.items.length;
  $('page-info').textContent = page.total === 0 ? 'No transactions' : `${first}–${last} of ${page.total}`;
  $('page-prev').disabled = page.offset === 0;
  $('page-next').disabled = last >= page.total;
}

let redeliverNote = null; // { key, kind, text }

function definition(term, ...value) {
  return [el('dt', {}, term), el('dd', {}, ...value)];
}

/** A definition that takes the whole width of the two-column facts grid. */
function wide([dt, dd]) {
  dt.classList.add('wide');
  dd.classList.add('wide');
  return [dt, dd];
}

function closeButton() {
  return el('button', { type: 'button', dataset: { key: 'close' }, onclick: () => select('', ''), 'aria-label': 'Close the transaction detail' }, 'Close');
}

/** Buttons to choose among the calling AEs that used one Transaction UID (the API's 409 lists them). */
function ambiguityChoice(matches) {
  return el(
    'div',
    { class: 'message message-info', role: 'status' },
    el('p', {}, `Transaction UID ${view.tx} was used by ${matches.length} calling AEs. Choose one:`),
    el(
      'ul',
      { class: 'choices' },
      matches.map((m) =>
        el(
          'li',
          {},
          el('button', { type: 'button', class: 'link-button', dataset: { key: `choose-${m.callingAet}` }, 'aria-label': `Transaction ${m.transactionUid} from ${m.callingAet}`, onclick: () => select(m.callingAet, m.transactionUid) }, m.callingAet),
        ),
      ),
    ),
  );
}

function renderDetail(detail, error) {
  const key = JSON.stringify([detail, error?.message ?? null, failedList, redeliverNote, view.tx, view.txAet]);
  if (key === rendered.detail) return;
  rendered.detail = key;
  const body = $('detail-body');
  $('detail-placeholder').hidden = Boolean(view.tx);
  body.hidden = !view.tx;
  if (!view.tx) {
    body.replaceChildren();
    $('detail-actions').replaceChildren();
    return;
  }
  if (error) {
    replaceChildrenKeepingFocus($('detail-actions'), closeButton());
    const name = view.txAet ? `${view.tx} from ${view.txAet}` : view.tx;
    if (error.status === 409 && Array.isArray(error.body?.matches)) replaceChildrenKeepingFocus(body, ambiguityChoice(error.body.matches));
    else body.replaceChildren(el('p', { class: 'message message-error' }, error.status === 404 ? `Transaction ${name} is not known to the sidecar.` : `Could not load transaction ${name}: ${error.message}`));
    return;
  }
  if (!detail) return;

  const counts = detail.instanceCounts ?? { committed: detail.committed ?? 0, failed: detail.failed ?? 0, pending: 0 };
  const pending = counts.pending;
  const list = failedList && failedList.key === txKey(detail.callingAet, detail.transactionUid) ? failedList : null;
  const failed = list ? list.items : [];
  const attempts = detail.deliveryAttemptLog ?? [];
  const canRedeliver = detail.state !== 'RECEIVED';
  const note = redeliverNote && redeliverNote.key === txKey(detail.callingAet, detail.transactionUid) ? redeliverNote : null;

  const actions = [
    situationBadge(detail),
    el(
      'button',
      {
        type: 'button',
        id: 'redeliver-button',
        class: 'primary',
        disabled: !canRedeliver || redeliverInFlight,
        'aria-describedby': detail.deliveryPending ? 'delivery-pending' : undefined,
        title: canRedeliver ? 'Send the storage commitment report to the modality again' : 'The instances are still being checked; the report will follow',
        dataset: { key: 'redeliver' },
        onclick: () => redeliver(detail.callingAet, detail.transactionUid),
      },
      redeliverInFlight ? 'Redelivering…' : 'Redeliver',
    ),
    closeButton(),
  ];
  const head = el(
    'div',
    { class: 'detail-head' },
    el('p', { class: 'uid mono' }, el('span', { class: 'visually-hidden' }, 'Transaction UID '), detail.transactionUid),
    note ? el('p', { id: 'redeliver-note', class: `message message-${note.kind}`, role: note.kind === 'error' ? 'alert' : 'status' }, note.text) : [],
    detail.deliveryPending && canRedeliver ? el('p', { id: 'delivery-pending', class: 'subtle' }, 'A report delivery is under way.') : [],
  );

  const studies = detail.studies ?? [];
  const explorer = detail.explorerUrl ?? dashboardSettings.orthancExplorerUrl;
  const studyFacts = studies.map((st, index) =>
    wide(
      definition(
        studies.length > 1 ? `Study ${index + 1}` : 'Patient / study',
        el('span', { class: 'patient-name', dataset: { fact: 'patient' } }, personName(st.patientName) || '—'),
        st.patientId ? el('span', { class: 'mono' }, ` (${st.patientId})`) : '',
        ' · ',
        el('span', { dataset: { fact: 'study' } }, [st.modalities ? `${st.modalities.replaceAll('\\', '/')} ` : '', st.studyDescription ?? 'no description', st.studyDate ? `, ${studyDate(st.studyDate)}` : '', st.accessionNumber ? `, accession ${st.accessionNumber}` : '']),
        explorer && st.orthancStudyId
          ? [' ', el('a', { href: `${explorer}#study?uuid=${encodeURIComponent(st.orthancStudyId)}`, target: '_blank', rel: 'noopener noreferrer', class: 'explorer-link', dataset: { key: `explorer-${st.orthancStudyId}` } }, 'Open in Orthanc Explorer')]
          : [],
        el('div', { class: 'subtle mono uid' }, st.studyInstanceUid),
      ),
    ),
  );
  const facts = el(
    'dl',
    { class: 'facts' },
    studyFacts,
    definition('Calling AE', el('span', { class: 'mono' }, detail.callingAet), ' → ', el('span', { class: 'mono' }, detail.calledAet)),
    definition('From', el('span', { class: 'mono' }, detail.remoteAddress ?? '—')),
    definition('Received', timeEl(detail.receivedAt)),
    definition('Verified', timeEl(detail.verifiedAt)),
    definition('Reported', timeEl(detail.reportedAt)),
    detail.expiredAt ? definition('Expired', timeEl(detail.expiredAt)) : [],
    detail.waitingForModality
      ? wide(definition('Delivery', el('span', { dataset: { waiting: 'modality' } }, 'Waiting for the modality to connect: it cannot be called back, so the report goes on the next association it opens to the sidecar')))
      : detail.nextAttemptAt
        ? definition('Next attempt', timeEl(detail.nextAttemptAt), ` (${relative(detail.nextAttemptAt)})`)
        : [],
    detail.expiresAt && !detail.reportedAt && !detail.expiredAt ? definition('Gives up', timeEl(detail.expiresAt)) : [],
    detail.leaseOwner ? definition('Worked on by', el('span', { class: 'mono', dataset: { fact: 'leaseOwner' } }, detail.leaseOwner), detail.leaseUntil ? [' until ', timeEl(detail.leaseUntil)] : []) : [],
    detail.protectedAt ? definition('Protected in Orthanc', timeEl(detail.protectedAt)) : [],
    detail.protectionError
      ? wide(definition('Report held back', el('span', { class: 'bad-text', dataset: { col: 'protectionError' } }, `protecting the committed instances in Orthanc failed: ${detail.protectionError.error}`)))
      : [],
    detail.committedThenDeleted > 0
      ? wide(definition('Committed, then deleted', el('span', { class: 'bad-text', dataset: { col: 'committedThenDeleted' } }, `${detail.committedThenDeleted} instance(s) reported committed are no longer in Orthanc`)))
      : [],
    wide(
      definition(
        'Instances',
        `${detail.instances} requested: `,
        el('span', { class: 'ok-text' }, `${counts.committed} committed`),
        ', ',
        el('span', { class: counts.failed > 0 ? 'bad-text' : '' }, `${counts.failed} failed`),
        pending > 0 ? `, ${pending} pending` : '',
      ),
    ),
    detail.lastError
      ? wide(
          // A refusal by configuration does not pass by itself: say so, with the fix the error carries.
          detail.lastErrorCategory === 'configuration'
            ? definition('Configuration problem', el('span', { class: 'bad-text', dataset: { category: 'configuration' } }, `refused (configuration): ${detail.lastError}`))
            : definition('Last error', el('span', { class: 'bad-text' }, detail.lastError)),
        )
      : [],
  );

  const failedSection = el(
    'section',
    { class: 'detail-section', 'aria-labelledby': 'failed-title' },
    el('h3', { id: 'failed-title' }, `Failed instances (${counts.failed})`),
    counts.failed === 0
      ? el('p', { class: 'empty' }, pending > 0 ? 'No failures so far.' : `All ${counts.committed} instances committed.`)
      : !list || (list.loading && failed.length === 0)
        ? el('p', { class: 'empty' }, list?.error ? `Could not load the failed instances: ${list.error}` : 'Loading the failed instances…')
        : el(
          'div',
          { class: 'table-wrap inner bounded', tabindex: 0, role: 'region', 'aria-label': 'Failed instances' },
          el(
            'table',
            { id: 'failed-table', class: 'compact' },
            el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'SOP Instance'), el('th', { scope: 'col' }, 'Reason'))),
            el(
              'tbody',
              { id: 'failed-body' },
              failed.map((i) =>
                el(
                  'tr',
                  { dataset: { uid: i.sopInstanceUid } },
                  el(
                    'td',
                    {},
                    el('div', { class: 'mono uid' }, i.sopInstanceUid),
                    el('div', { class: 'subtle', title: i.sopClassUid }, `requested as ${sopClassName(i.sopClassUid)}`),
                    i.storedSopClassUid ? el('div', { class: 'subtle', title: i.storedSopClassUid }, `stored as ${sopClassName(i.storedSopClassUid)}`) : null,
                  ),
                  el(
                    'td',
                    { class: 'reason' },
                    el('span', { class: 'reason-text' }, i.failureReasonText ?? FAILURE_REASONS[i.failureReason] ?? 'Unknown reason'),
                    ' ',
                    i.failureReasonHex ? el('span', { class: 'code mono' }, i.failureReasonHex) : [],
                  ),
                ),
              ),
            ),
          ),
          list.nextAfter !== null
            ? el(
                'p',
                { class: 'subtle more' },
                `Showing ${failed.length} of ${counts.failed}. `,
                el('button', { type: 'button', id: 'failed-more', class: 'link-button', dataset: { key: 'failed-more' }, disabled: list.loading, onclick: () => loadMoreFailed() }, list.loading ? 'Loading…' : `Show ${Math.min(INSTANCE_PAGE, counts.failed - failed.length)} more`),
              )
            : [],
          list.error && failed.length > 0 ? el('p', { class: 'message message-error' }, `Could not load more: ${list.error}`) : [],
        ),
  );

  // Newest first: a transaction in retry can pile up attempts, and the last one is the one that matters.
  const attemptRows = attempts
    .map((a, index) =>
      el(
        'tr',
        { dataset: { ok: String(a.ok), n: index + 1 } },
        el('td', { class: 'num' }, index + 1),
        el('td', {}, timeEl(a.at)),
        el('td', {}, a.via === 'same-association' ? 'same association' : a.via === 'new-association' ? 'new association' : a.via),
        el('td', {}, a.ok ? el('span', { class: 'ok-text' }, 'Delivered') : [el('span', { class: 'bad-text' }, 'Failed'), a.error ? el('div', { class: 'attempt-error' }, a.error) : []]),
        el('td', { class: 'num' }, `${a.durationMs} ms`),
      ),
    )
    .reverse();
  const attemptsSection = el(
    'section',
    { class: 'detail-section', 'aria-labelledby': 'attempts-title' },
    el('h3', { id: 'attempts-title' }, `Delivery attempts (${attempts.length})`, attempts.length > 1 ? el('span', { class: 'subtle plain' }, ' · newest first') : []),
    attempts.length === 0
      ? el('p', { class: 'empty' }, 'No delivery attempt yet.')
      : el(
          'div',
          { class: 'table-wrap inner' },
          el(
            'table',
            { id: 'attempts-table', class: 'compact' },
            el(
              'thead',
              {},
              el('tr', {}, el('th', { scope: 'col', class: 'num' }, '#'), el('th', { scope: 'col' }, 'At'), el('th', { scope: 'col' }, 'Via'), el('th', { scope: 'col' }, 'Result'), el('th', { scope: 'col', class: 'num' }, 'Took')),
            ),
            el('tbody', { id: 'attempts-body' }, attemptRows),
          ),
        ),
  );

  replaceChildrenKeepingFocus($('detail-actions'), ...actions);
  replaceChildrenKeepingFocus(body, head, facts, failedSection, attemptsSection);
}

// ---------------------------------------------------------------------------------------------------------
// Refresh loop

let paused = false;
let timer = null;
let inFlight = null;
let again = false;
let lastUpdate = null;

function renderRefreshStatus() {
  let text;
  if (paused) text = 'Auto-refresh paused';
  else if (document.hidden) text = 'Paused while the tab is hidden';
  else if (!token) text = 'Waiting for the API token';
  else text = lastUpdate ? `Updated ${formatTime(lastUpdate.toISOString())} · every ${REFRESH_MS / 1000} s` : 'Loading…';
  setText($('refresh-status'), text);
  $('refresh-status').title = `${notModified} answers came back "not modified" (HTTP 304): nothing was sent again`;
  $('pause-button').setAttribute('aria-pressed', paused ? 'true' : 'false');
  setText($('pause-button'), paused ? 'Resume' : 'Pause');
}

function schedule() {
  clearTimeout(timer);
  timer = null;
  if (!paused && !document.hidden) timer = setTimeout(refresh, REFRESH_MS);
  renderRefreshStatus();
}

/** One refresh at a time; a request for another while one runs makes it run once more right after. */
function refresh() {
  if (inFlight) {
    again = true;
    return inFlight;
  }
  clearTimeout(timer);
  inFlight = load().finally(() => {
    inFlight = null;
    if (again) {
      again = false;
      refresh();
    } else schedule();
  });
  return inFlight;
}

async function load() {
  const health = request('../readyz', { auth: false }).then(
    (ready) => renderHealth(ready),
    () => renderHealth(null),
  );
  if (!token) {
    await health;
    showTokenForm({ kind: 'info', text: 'Enter the API token to see the transactions.' });
    return;
  }
  try {
    await resolveSearch();
  } catch {
    // The list request below reports the failure.
  }
  const listParams = searchParams();
  listParams.set('limit', String(view.limit));
  listParams.set('offset', String(view.offset));
  const [txAet, txUid] = [view.txAet, view.tx];
  // Every refresh asks for the transaction without its instances (counts, state, attempts): the failed
  // instances are fetched page by page, and again only when the selection or its counts change.
  const [summary, page, detail, vanished] = await Promise.allSettled([
    request('../api/summary', { conditional: true }),
    request(`../api/transactions?${listParams}`, { conditional: true }),
    txUid ? request(`${transactionPath(txAet, txUid)}?instances=none`, { conditional: true }) : Promise.resolve(null),
    request('../api/committed-then-deleted?limit=20'),
    health,
  ]);

  const failure = [summary, page].find((r) => r.status === 'rejected')?.reason;
  if (failure) {
    if (failure.status === 401) {
      useToken('');
      showTokenForm({ kind: 'error', text: 'The sidecar refused the API token (401 Unauthorized). Check it and enter it again.' });
      return;
    }
    if (failure.status === 503) {
      showMessage('error', `The transactions API is unavailable (503 Service Unavailable): ${failure.message}.`);
    } else if (failure.status === 0) {
      showMessage('error', `No answer from the sidecar (${failure.message}); retrying every ${REFRESH_MS / 1000} s.`);
    } else {
      showMessage('error', `The API answered ${failure.status}: ${failure.message}.`);
    }
    return;
  }

  // The last page may have emptied (filters, expiry): step back to the last page that has rows.
  if (page.value.items.length === 0 && page.value.total > 0 && view.offset > 0) {
    view.offset = Math.max(0, Math.floor((page.value.total - 1) / view.limit) * view.limit);
    writeHash();
    again = true;
    return;
  }

  clearMessage();
  $('token-section').hidden = true;
  $('dashboard').hidden = false;
  $('forget-token').hidden = false;
  lastUpdate = new Date();
  const tx = detail.status === 'fulfilled' ? detail.value : null;
  // An older link names the UID only: once the API found its one transaction, the view names the AE too.
  if (tx && !txAet && txUid === view.tx && !view.txAet) {
    view.txAet = tx.callingAet;
    writeHash();
  }
  renderSummary(summary.value);
  renderList(page.value);
  renderVanished(vanished.status === 'fulfilled' ? vanished.value : null);
  loadHistory().catch(() => undefined);
  // The selection may have changed while the detail was loading; the next refresh brings the new one.
  const current = () => txUid === view.tx && (tx ? tx.callingAet : txAet) === view.txAet;
  if (!current()) return;
  if (tx) await refreshFailedList(tx);
  if (current()) renderDetail(tx, detail.status === 'rejected' ? detail.reason : null);
}

// ---------------------------------------------------------------------------------------------------------
// Failed instances of the selected transaction, paged

/** { key, fingerprint, items, nextAfter, loading, error } for the selected transaction, or null. */
let failedList = null;

const txKey = (aet, uid) => `${aet}\n${uid}`;
const fingerprint = (tx) => JSON.stringify([tx.state, tx.instances, tx.instanceCounts]);

function failedPagePath(aet, uid, after) {
  const params = new URLSearchParams({ outcome: 'failed', limit: String(INSTANCE_PAGE) });
  if (after !== null && after !== undefined) params.set('after', String(after));
  return `${transactionPath(aet, uid)}/instances?${params}`;
}

/** Fetches the first page when the transaction is newly selected or its counts moved; otherwise keeps what is shown. */
async function refreshFailedList(tx) {
  const key = txKey(tx.callingAet, tx.transactionUid);
  const print = fingerprint(tx);
  if (failedList && failedList.key === key && failedList.fingerprint === print && !failedList.error) return;
  if ((tx.instanceCounts?.failed ?? tx.failed ?? 0) === 0) {
    failedList = { key, fingerprint: print, items: [], nextAfter: null, loading: false, error: null };
    return;
  }
  const keep = failedList && failedList.key === key ? failedList.items : [];
  failedList = { key, fingerprint: print, items: keep, nextAfter: null, loading: true, error: null };
  try {
    const first = await request(failedPagePath(tx.callingAet, tx.transactionUid, null));
    if (failedList.key !== key) return;
    failedList = { key, fingerprint: print, items: first.items, nextAfter: first.nextAfter, loading: false, error: null };
  } catch (error) {
    if (failedList.key === key) failedList = { ...failedList, loading: false, error: error.message };
  }
}

async function loadMoreFailed() {
  const list = failedList;
  if (!list || list.loading || list.nextAfter === null) return;
  failedList = { ...list, loading: true };
  rendered.detail = '';
  refresh();
  const [aet, uid] = list.key.split('\n');
  try {
    const more = await request(failedPagePath(aet, uid, list.nextAfter));
    if (failedList.key === list.key) failedList = { ...failedList, items: [...list.items, ...more.items], nextAfter: more.nextAfter, loading: false, error: null };
  } catch (error) {
    if (failedList.key === list.key) failedList = { ...failedList, loading: false, error: error.message };
  }
  rendered.detail = '';
  refresh();
}

// ---------------------------------------------------------------------------------------------------------
// Actions

let redeliverInFlight = false;

async function redeliver(aet, uid) {
  const key = txKey(aet, uid);
  redeliverInFlight = true;
  redeliverNote = { key, kind: 'info', text: 'Asking the sidecar to deliver the report again…' };
  rendered.detail = '';
  await refresh();
  try {
    const answer = await request(`${transactionPath(aet, uid)}/redeliver`, { method: 'POST' });
    const at = formatTime(new Date().toISOString());
    redeliverNote =
      answer?.redelivery === 'already-pending'
        ? { key, kind: 'info', text: `A delivery of this report was already under way at ${at}; no second one was started.` }
        : { key, kind: 'info', text: `Redelivery requested at ${at}; the new attempt appears below.` };
  } catch (error) {
    const text =
      error.status === 409
        ? `Not redelivered: ${error.message}.`
        : error.status === 429
          ? `Not redelivered: too many requests for this transaction; try again in ${error.retryAfter ?? 'a few'} s.`
          : error.status === 401
            ? 'Not redelivered: the token was refused (401).'
            : `Not redelivered: ${error.message} (${error.status || 'no answer'}).`;
    redeliverNote = { key, kind: 'error', text };
  } finally {
    redeliverInFlight = false;
  }
  await refresh();
  // The delivery runs in the background; look again soon rather than waiting for the next tick.
  setTimeout(refresh, 700);
}

/** Opens a transaction (calling AE + Transaction UID), or closes the detail with empty ones. */
function select(aet, uid) {
  if (uid !== view.tx || aet !== view.txAet) {
    redeliverNote = null;
    failedList = null;
  }
  view.tx = uid;
  view.txAet = uid ? aet : '';
  writeHash();
  rendered.list = '';
  rendered.detail = '';
  // Show the selection at once; the data follows.
  if (!uid) renderDetail(null, null);
  else {
    for (const row of document.querySelectorAll('#tx-body tr')) {
      const on = row.getAttribute('data-uid') === uid && row.getAttribute('data-aet') === aet;
      row.classList.toggle('selected', on);
      if (on) row.setAttribute('aria-current', 'true');
      else row.removeAttribute('aria-current');
    }
    $('detail-placeholder').hidden = true;
    $('detail-body').hidden = false;
  }
  refresh();
}

/** Changes some of the filters (state, callingAet, q, kind, from, to) and starts from the first page. */
function setFilters(changes) {
  Object.assign(view, changes);
  view.callingAet = view.callingAet.trim().slice(0, 16);
  view.q = view.q.trim().slice(0, 64);
  view.offset = 0;
  writeHash();
  syncControls();
  rendered.summary = '';
  refresh();
}

function formFilters() {
  return { state: $('filter-state').value, callingAet: $('filter-aet').value, q: $('search-input').value, kind: $('search-kind').value, from: $('filter-from').value, to: $('filter-to').value };
}

// ---------------------------------------------------------------------------------------------------------
// CSV export: fetched with the token (a plain link could not send it), then handed to the browser as a file.

async function exportCsv() {
  const button = $('export-csv');
  button.disabled = true;
  try {
    const response = await fetch(new URL(`../api/transactions.csv?${searchParams()}`, location.href), { headers: { authorization: `Bearer ${token}` }, cache: 'no-store', credentials: 'omit' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const name = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1] ?? 'stgcmt-transactions.csv';
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    showMessage('error', `Could not export the CSV: ${error.message}.`);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// History charts (uPlot, served by the sidecar itself)

let historyWindow = '24h';
let historyLoadedAt = 0;
let historyKey = '';
const charts = {};

function chartWidth(node) {
  return Math.max(240, Math.floor(node.getBoundingClientRect().width));
}

function drawChart(name, series, data) {
  const node = $(`chart-${name}`);
  charts[name]?.destroy();
  charts[name] = new uPlot(
    {
      width: chartWidth(node),
      height: 150,
      series: [{}, ...series],
      axes: [{ stroke: '#5b6675', grid: { stroke: '#eef1f6' } }, { stroke: '#5b6675', grid: { stroke: '#eef1f6' }, size: 44 }],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    },
    data,
    node,
  );
}

function renderBars(list, items, emptyText) {
  const max = Math.max(1, ...items.map((i) => i.value));
  $(list).replaceChildren(
    ...(items.length === 0
      ? [el('li', { class: 'empty' }, emptyText)]
      : items.map((i) =>
          el(
            'li',
            { class: 'bar-row', dataset: { key: i.key } },
            el('span', { class: 'bar-label', title: i.title ?? i.label }, i.label),
            el('meter', { class: 'bar', min: 0, max, value: i.value, 'aria-label': `${i.label}: ${i.value}` }),
            el('span', { class: 'bar-value num' }, i.value),
          ),
        )),
  );
}

async function loadHistory(force = false) {
  if (!force && Date.now() - historyLoadedAt < HISTORY_REFRESH_MS) return;
  historyLoadedAt = Date.now();
  const stats = await request(`../api/stats?window=${historyWindow}`, { conditional: true });
  const key = JSON.stringify([stats, Math.round(window.innerWidth / 50)]);
  if (key === historyKey) return;
  historyKey = key;
  const x = stats.hours.map((h) => Date.parse(h.hourStart) / 1000);
  const bars = uPlot.paths.bars({ size: [0.8, 40] });
  drawChart(
    'volume',
    [
      { label: 'Transactions', stroke: '#1f5fbf', fill: 'rgba(31,95,191,.25)', paths: bars },
      { label: 'With failures', stroke: '#b3261e', fill: 'rgba(179,38,30,.35)', paths: bars },
    ],
    [x, stats.hours.map((h) => h.transactions), stats.hours.map((h) => h.withFailures)],
  );
  const seconds = (ms) => (ms === null ? null : ms / 1000);
  drawChart(
    'latency',
    [
      { label: 'p50 (s)', stroke: '#1e7a3c', width: 2, spanGaps: false, points: { show: true } },
      { label: 'p99 (s)', stroke: '#8a5a00', width: 2, spanGaps: false, points: { show: true } },
    ],
    [x, stats.hours.map((h) => seconds(h.reportLatencyP50Ms)), stats.hours.map((h) => seconds(h.reportLatencyP99Ms))],
  );
  const total = stats.hours.reduce((n, h) => n + h.transactions, 0);
  const failing = stats.hours.reduce((n, h) => n + h.withFailures, 0);
  setText($('chart-volume-summary'), `${total} transactions, ${failing} with failures, since ${shortTime(stats.since)}`);
  const p99s = stats.hours.map((h) => h.reportLatencyP99Ms).filter((v) => v !== null);
  setText($('chart-latency-summary'), p99s.length > 0 ? `worst hourly p99: ${(Math.max(...p99s) / 1000).toFixed(2)} s` : 'no report delivered in this window');
  renderBars(
    'chart-reasons',
    stats.failuresByReason.map((f) => ({ key: `reason-${f.failureReasonHex}`, label: `${f.failureReasonText} (${f.failureReasonHex})`, value: f.count })),
    'No failed instance in this window.',
  );
  renderBars(
    'chart-pending',
    stats.pendingByModality.map((p) => ({ key: `pending-${p.callingAet}`, label: p.callingAet, title: p.lastDeliveredAt ? `last delivery ${shortTime(p.lastDeliveredAt)}` : 'no delivery yet', value: p.pending })),
    'No report waiting.',
  );
}

function chooseWindow(name) {
  historyWindow = name;
  for (const button of document.querySelectorAll('[data-window]')) button.setAttribute('aria-pressed', button.getAttribute('data-window') === name ? 'true' : 'false');
  loadHistory(true).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------------------
// Wiring

function start() {
  readHash();
  syncControls();

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    useToken(value);
    $('token-input').value = '';
    $('token-section').hidden = true;
    showMessage('info', 'Loading…');
    refresh();
  });
  $('forget-token').addEventListener('click', () => {
    useToken('');
    showTokenForm({ kind: 'info', text: 'Token forgotten. Enter the API token to see the transactions.' });
  });
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    setFilters(formFilters());
  });
  $('filter-state').addEventListener('change', () => setFilters(formFilters()));
  $('filter-aet').addEventListener('change', () => setFilters(formFilters()));
  $('filters-clear').addEventListener('click', () => {
    $('filter-aet').value = '';
    $('search-input').value = '';
    setFilters({ state: '', callingAet: '', q: '', kind: 'auto', from: '', to: '' });
  });
  $('export-csv').addEventListener('click', () => exportCsv());
  for (const button of document.querySelectorAll('[data-window]')) button.addEventListener('click', () => chooseWindow(button.getAttribute('data-window')));
  // Relative times are computed when hovered, not when the row was drawn.
  document.addEventListener('mouseover', (event) => {
    const time = event.target.closest?.('time[datetime]');
    if (time) time.title = hoverText(time.getAttribute('datetime'));
  });
  window.addEventListener('resize', () => {
    historyKey = '';
    loadHistory(true).catch(() => undefined);
  });
  $('page-prev').addEventListener('click', () => {
    view.offset = Math.max(0, view.offset - view.limit);
    writeHash();
    refresh();
  });
  $('page-next').addEventListener('click', () => {
    view.offset += view.limit;
    writeHash();
    refresh();
  });
  $('page-size').addEventListener('change', () => {
    view.limit = Number.parseInt($('page-size').value, 10) || 25;
    view.offset = 0;
    writeHash();
    refresh();
  });
  // A click anywhere on a row opens it (the Details button is the keyboard way).
  $('tx-body').addEventListener('click', (event) => {
    const row = event.target.closest('tr[data-uid]');
    if (row && !event.target.closest('button, a')) select(row.getAttribute('data-aet') ?? '', row.getAttribute('data-uid'));
  });
  $('pause-button').addEventListener('click', () => {
    paused = !paused;
    if (paused) schedule();
    else refresh();
  });
  $('refresh-button').addEventListener('click', () => refresh());
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) schedule();
    else refresh();
  });
  window.addEventListener('hashchange', () => {
    readHash();
    syncControls();
    rendered.list = '';
    rendered.detail = '';
    refresh();
  });

  refresh();
}

start();
