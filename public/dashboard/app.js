/**
 * Storage Commitment sidecar dashboard: plain ES module, no build step, no dependencies.
 *
 * Data comes from the sidecar's HTTP API (/readyz without a token; /api/* with the Bearer token the user
 * types in, kept in sessionStorage). Every value from the server reaches the page through textContent or
 * setAttribute, never innerHTML. The view (filters, page, selected transaction) lives in the URL hash, so
 * a reload or a shared link shows the same thing.
 */

const TOKEN_KEY = 'stgcmt.apiToken';
const REFRESH_MS = 3000;
const MAX_FAILED_ROWS = 500;
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

function formatTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const now = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return sameDay ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function timeEl(iso) {
  const text = formatTime(iso);
  if (!text) return el('span', { class: 'none', 'aria-label': 'none' }, '—');
  return el('time', { datetime: iso, title: new Date(iso).toString() }, text);
}

function relative(iso) {
  const ms = Date.parse(iso) - Date.now();
  const s = Math.round(Math.abs(ms) / 1000);
  const span = s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  return ms >= 0 ? `in ${span}` : `${span} ago`;
}

function stateBadge(state) {
  return el('span', { class: `badge state-${state}`, title: STATE_HINTS[state] ?? state, dataset: { state } }, STATE_LABELS[state] ?? state);
}

function sopClassName(uid) {
  return SOP_CLASSES[uid] ?? uid;
}

// ---------------------------------------------------------------------------------------------------------
// View state in the URL hash: #state=REPORTED&aet=MODALITY&offset=0&limit=25&tx=1.2.3

const view = { state: '', callingAet: '', offset: 0, limit: 25, tx: '' };

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const state = params.get('state') ?? '';
  view.state = STATES.includes(state) ? state : '';
  view.callingAet = (params.get('aet') ?? '').slice(0, 16);
  view.offset = Math.max(0, Number.parseInt(params.get('offset') ?? '0', 10) || 0);
  const limit = Number.parseInt(params.get('limit') ?? '25', 10);
  view.limit = Number.isInteger(limit) && limit >= 1 && limit <= 500 ? limit : 25;
  view.tx = params.get('tx') ?? '';
}

function writeHash() {
  const params = new URLSearchParams();
  if (view.state) params.set('state', view.state);
  if (view.callingAet) params.set('aet', view.callingAet);
  if (view.offset) params.set('offset', String(view.offset));
  if (view.limit !== 25) params.set('limit', String(view.limit));
  if (view.tx) params.set('tx', view.tx);
  const hash = params.toString();
  history.replaceState(null, '', hash ? `#${hash}` : location.pathname + location.search);
}

function syncControls() {
  $('filter-state').value = view.state;
  if (document.activeElement !== $('filter-aet')) $('filter-aet').value = view.callingAet;
  const size = $('page-size');
  if (!Array.from(size.options).some((o) => o.value === String(view.limit))) size.append(el('option', { value: view.limit }, view.limit));
  size.value = String(view.limit);
}

// ---------------------------------------------------------------------------------------------------------
// API access

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';

async function request(path, { method = 'GET', auth = true } = {}) {
  const headers = { accept: 'application/json' };
  if (auth) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    // Relative to /dashboard/, so the page also works behind a reverse proxy under a path prefix.
    response = await fetch(new URL(path, location.href), { method, headers, cache: 'no-store', credentials: 'omit' });
  } catch {
    throw new ApiError(0, 'the sidecar cannot be reached');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): the status says enough
  }
  if (!response.ok && !(path.endsWith('readyz') && body && body.checks)) {
    throw new ApiError(response.status, (body && typeof body.error === 'string' && body.error) || response.statusText || `HTTP ${response.status}`);
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

const rendered = { health: '', summary: '', list: '', detail: '' };

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
    const value = checks[name];
    const status = value === true ? 'ok' : value === false ? 'bad' : 'unknown';
    pill.className = `pill pill-${status}`;
    pill.textContent = `${label}: ${status === 'ok' ? good : status === 'bad' ? bad : 'unknown'}`;
  }
}

function renderSummary(summary) {
  const key = JSON.stringify([summary, view.state]);
  if (key === rendered.summary) return;
  rendered.summary = key;
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
}

function renderList(page) {
  const key = JSON.stringify([page, view.tx]);
  if (key === rendered.list) return;
  rendered.list = key;
  const rows = page.items.map((t) => {
    const selected = t.transactionUid === view.tx;
    return el(
      'tr',
      { class: selected ? 'selected' : undefined, 'aria-current': selected ? 'true' : undefined, dataset: { uid: t.transactionUid }, title: t.transactionUid },
      el('td', {}, timeEl(t.receivedAt)),
      el('td', { class: 'mono', dataset: { col: 'callingAet' } }, t.callingAet),
      el('td', { class: 'num', dataset: { col: 'instances' } }, t.instances),
      el('td', { class: 'num ok-text', dataset: { col: 'committed' } }, t.committed),
      el('td', { class: `num ${t.failed > 0 ? 'bad-text' : 'zero'}`, dataset: { col: 'failed' } }, t.failed),
      el('td', { dataset: { col: 'state' } }, stateBadge(t.state)),
      el('td', { class: 'num', dataset: { col: 'attempts' } }, t.deliveryAttempts),
      el('td', { dataset: { col: 'reported' } }, timeEl(t.reportedAt)),
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
            dataset: { key: `details-${t.transactionUid}` },
            onclick: () => select(t.transactionUid),
          },
          'Details',
        ),
      ),
    );
  });
  replaceChildrenKeepingFocus($('tx-body'), ...rows);
  $('tx-empty').hidden = page.items.length > 0;
  const first = page.total === 0 ? 0 : page.offset + 1;
  const last = page.offset + page.items.length;
  $('page-info').textContent = page.total === 0 ? 'No transactions' : `${first}–${last} of ${page.total}`;
  $('page-prev').disabled = page.offset === 0;
  $('page-next').disabled = last >= page.total;
}

let redeliverNote = null; // { uid, kind, text }

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
  return el('button', { type: 'button', dataset: { key: 'close' }, onclick: () => select(''), 'aria-label': 'Close the transaction detail' }, 'Close');
}

function renderDetail(detail, error) {
  const key = JSON.stringify([detail, error?.message ?? null, redeliverNote, view.tx]);
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
    body.replaceChildren(el('p', { class: 'message message-error' }, error.status === 404 ? `Transaction ${view.tx} is not known to the sidecar.` : `Could not load transaction ${view.tx}: ${error.message}`));
    return;
  }
  if (!detail) return;

  const outcomes = detail.instanceOutcomes ?? [];
  const failed = outcomes.filter((i) => i.outcome === 'failed');
  const pending = outcomes.filter((i) => i.outcome === 'pending').length;
  const attempts = detail.deliveryAttemptLog ?? [];
  const canRedeliver = detail.state !== 'RECEIVED';
  const note = redeliverNote && redeliverNote.uid === detail.transactionUid ? redeliverNote : null;

  const actions = [
    stateBadge(detail.state),
    el(
      'button',
      {
        type: 'button',
        id: 'redeliver-button',
        class: 'primary',
        disabled: !canRedeliver || redeliverInFlight,
        title: canRedeliver ? 'Send the storage commitment report to the modality again' : 'The instances are still being checked; the report will follow',
        dataset: { key: 'redeliver' },
        onclick: () => redeliver(detail.transactionUid),
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
  );

  const facts = el(
    'dl',
    { class: 'facts' },
    definition('Calling AE', el('span', { class: 'mono' }, detail.callingAet), ' → ', el('span', { class: 'mono' }, detail.calledAet)),
    definition('From', el('span', { class: 'mono' }, detail.remoteAddress ?? '—')),
    definition('Received', timeEl(detail.receivedAt)),
    definition('Verified', timeEl(detail.verifiedAt)),
    definition('Reported', timeEl(detail.reportedAt)),
    detail.expiredAt ? definition('Expired', timeEl(detail.expiredAt)) : [],
    detail.nextAttemptAt ? definition('Next attempt', timeEl(detail.nextAttemptAt), ` (${relative(detail.nextAttemptAt)})`) : [],
    detail.expiresAt && !detail.reportedAt && !detail.expiredAt ? definition('Gives up', timeEl(detail.expiresAt)) : [],
    wide(
      definition(
        'Instances',
        `${detail.instances} requested: `,
        el('span', { class: 'ok-text' }, `${detail.committed} committed`),
        ', ',
        el('span', { class: detail.failed > 0 ? 'bad-text' : '' }, `${detail.failed} failed`),
        pending > 0 ? `, ${pending} pending` : '',
      ),
    ),
    detail.lastError ? wide(definition('Last error', el('span', { class: 'bad-text' }, detail.lastError))) : [],
  );

  const failedSection = el(
    'section',
    { class: 'detail-section', 'aria-labelledby': 'failed-title' },
    el('h3', { id: 'failed-title' }, `Failed instances (${failed.length})`),
    failed.length === 0
      ? el('p', { class: 'empty' }, pending > 0 ? 'No failures so far.' : `All ${detail.committed} instances committed.`)
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
              failed.slice(0, MAX_FAILED_ROWS).map((i) =>
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
          failed.length > MAX_FAILED_ROWS ? el('p', { class: 'subtle' }, `…and ${failed.length - MAX_FAILED_ROWS} more.`) : [],
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
  const listParams = new URLSearchParams({ limit: String(view.limit), offset: String(view.offset) });
  if (view.state) listParams.set('state', view.state);
  if (view.callingAet) listParams.set('callingAet', view.callingAet);
  const txUid = view.tx;
  const [summary, page, detail] = await Promise.allSettled([
    request('../api/summary'),
    request(`../api/transactions?${listParams}`),
    txUid ? request(`../api/transactions/${encodeURIComponent(txUid)}?instances=not-committed`) : Promise.resolve(null),
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
  renderSummary(summary.value);
  renderList(page.value);
  // The selection may have changed while the detail was loading; the next refresh brings the new one.
  if (txUid === view.tx) renderDetail(detail.status === 'fulfilled' ? detail.value : null, detail.status === 'rejected' ? detail.reason : null);
}

// ---------------------------------------------------------------------------------------------------------
// Actions

let redeliverInFlight = false;

async function redeliver(uid) {
  redeliverInFlight = true;
  redeliverNote = { uid, kind: 'info', text: 'Asking the sidecar to deliver the report again…' };
  rendered.detail = '';
  await refresh();
  try {
    await request(`../api/transactions/${encodeURIComponent(uid)}/redeliver`, { method: 'POST' });
    redeliverNote = { uid, kind: 'info', text: `Redelivery requested at ${formatTime(new Date().toISOString())}; the new attempt appears below.` };
  } catch (error) {
    const text = error.status === 409 ? `Not redelivered: ${error.message}.` : error.status === 401 ? 'Not redelivered: the token was refused (401).' : `Not redelivered: ${error.message} (${error.status || 'no answer'}).`;
    redeliverNote = { uid, kind: 'error', text };
  } finally {
    redeliverInFlight = false;
  }
  await refresh();
  // The delivery runs in the background; look again soon rather than waiting for the next tick.
  setTimeout(refresh, 700);
}

function select(uid) {
  if (uid !== view.tx) redeliverNote = null;
  view.tx = uid;
  writeHash();
  rendered.list = '';
  rendered.detail = '';
  // Show the selection at once; the data follows.
  if (!uid) renderDetail(null, null);
  else {
    for (const row of document.querySelectorAll('#tx-body tr')) {
      const on = row.getAttribute('data-uid') === uid;
      row.classList.toggle('selected', on);
      if (on) row.setAttribute('aria-current', 'true');
      else row.removeAttribute('aria-current');
    }
    $('detail-placeholder').hidden = true;
    $('detail-body').hidden = false;
  }
  refresh();
}

function setFilters({ state, callingAet }) {
  view.state = state;
  view.callingAet = callingAet.trim().slice(0, 16);
  view.offset = 0;
  writeHash();
  syncControls();
  rendered.summary = '';
  refresh();
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
    setFilters({ state: $('filter-state').value, callingAet: $('filter-aet').value });
  });
  $('filter-state').addEventListener('change', () => setFilters({ state: $('filter-state').value, callingAet: $('filter-aet').value }));
  $('filter-aet').addEventListener('change', () => setFilters({ state: $('filter-state').value, callingAet: $('filter-aet').value }));
  $('filters-clear').addEventListener('click', () => {
    $('filter-aet').value = '';
    setFilters({ state: '', callingAet: '' });
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
    if (row && !event.target.closest('button, a')) select(row.getAttribute('data-uid'));
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
