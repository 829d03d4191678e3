// The token form, for editing a token and for creating one with its
// settings. Done sends only what changed (on create: what differs from a
// new token's defaults), and an error is shown beside the control at fault,
// which gets focus. Unsaved changes are never dropped without asking.

import { showTokenAlerts } from './alerts.js';
import { api, tokenUsage } from './api.js';
import { chartWithTable, fillDays } from './chart.js';
import { confirmDialog, openDialog } from './dialogs.js';
import { announce, h, revealPanel, showReveal, uid } from './dom.js';
import { manages, periodWords, state } from './state.js';

const $ = (id) => document.getElementById(id);
const ACTIONS = ['read', 'write', 'delete'];
const GRANT_TYPES = [['table', 'table'], ['query', 'query'], ['all', 'all sources']];

// The input each API field's error moves focus to (list fields and the
// APIs are found by inputFor).
const FIELD_INPUT = {
  nickname: 'f-nickname', enabled: 'f-enabled', expires_at: 'f-expires', core: 'f-core', premium: 'f-premium',
  signed_requests: 'f-signed', allowed_domains: 'f-domains', allowed_ips: 'f-ips', credit_limit: 'f-credit-limit',
};

// A token as the create form starts: what POST /v1/tokens makes from {}.
const NEW_TOKEN = {
  nickname: '', enabled: true, expires_at: null, core: true, premium: false, signed_requests: false, datasets: {},
  allowed_apis: [], grants: [], allowed_domains: [], allowed_ips: [], credit_limit: null, rate_limit: null,
};

let mode = 'edit'; // or 'create'
let current = null; // the token being edited (create: NEW_TOKEN)
let initial = null; // the form's values when it opened
let draft = null; // {user, mode, id, initial}: a form left open when the session ended
let hooks = { saved: () => {}, created: () => {} };

/** A mistake found before anything is sent. */
class FormError extends Error {
  constructor(field, message, input) {
    super(message);
    this.field = field;
    this.input = input;
  }
}

/**
 * Wires the form. saved(token) is called after an edit is saved,
 * created(token) after a token is created (its value in token.token).
 */
export function initEditor(on) {
  hooks = on;
  const dialog = $('edit-dialog');
  $('edit-cancel').addEventListener('click', () => requestClose());
  // Escape asks too, when there is something to lose.
  dialog.addEventListener('cancel', (e) => {
    if (dirty()) {
      e.preventDefault();
      requestClose();
    }
  });
  $('add-dataset').addEventListener('click', () => {
    const r = datasetRow('', []);
    $('datasets-rows').append(r);
    r.querySelector('input[type="text"]').focus();
  });
  $('add-grant').addEventListener('click', () => {
    const r = grantRow({ connection: '', type: 'table', source: '' });
    $('grants-rows').append(r);
    r.querySelector('input[type="text"]').focus();
  });
  $('edit-form').addEventListener('submit', (e) => {
    e.preventDefault();
    save();
  });
  $('f-premium').addEventListener('change', syncWarnings);
  // Closing the tab or reloading asks the browser's own question.
  window.addEventListener('beforeunload', (e) => {
    if ($('edit-dialog').open && dirty()) {
      e.preventDefault();
      e.returnValue = '';
    }
  });
}

/** Opens the form for a token; focus returns to opener when it closes. */
export function openEditor(id, opener) {
  const t = state.tokens.find((x) => x.id === id);
  if (!t) {
    return;
  }
  mode = 'edit';
  current = t;
  fill(t);
  initial = values(false);
  show(opener);
  loadUsage(t);
  showTokenAlerts(t.id);
}

/** Opens the form to create a token with its settings in one step. */
export function openCreator(opener) {
  mode = 'create';
  current = NEW_TOKEN;
  fill(NEW_TOKEN);
  initial = values(false);
  $('edit-alerts').hidden = true; // a token not made yet has no alerts
  show(opener);
}

function show(opener) {
  $('edit-restored').hidden = true;
  openDialog($('edit-dialog'), { opener, fallback: $('tokens-title'), focus: mode === 'create' ? $('f-nickname') : $('edit-title') });
}

/**
 * Keeps the open form, with unsaved changes, when the session ends: it is
 * offered again when the same user signs back in. Returns whether it kept one.
 */
export function keepDraft() {
  draft = null;
  if ($('edit-dialog').open && dirty() && state.user) {
    draft = { user: state.user.id, mode, id: current && current.id, initial };
  }
  return draft !== null;
}

/**
 * Reopens a kept form after signing in, with its changes, if the same user
 * signed in and the token is still there; otherwise forgets it and clears
 * the form, so nothing of another user's is left in the page.
 */
export function restoreDraft() {
  const d = draft;
  draft = null;
  if (!d) {
    return;
  }
  const t = d.mode === 'create' ? NEW_TOKEN : state.tokens.find((x) => x.id === d.id);
  if (!state.user || state.user.id !== d.user || !t) {
    mode = 'create';
    current = null;
    fill(NEW_TOKEN);
    return;
  }
  mode = d.mode;
  current = t;
  initial = d.initial;
  show(null);
  $('edit-restored').hidden = false;
  if (mode === 'edit') {
    loadUsage(t);
  }
}

/** Reports whether the form differs from when it opened. */
function dirty() {
  if (initial === null) {
    return false;
  }
  return Object.keys(changes(values(false), values(false))).length > 0;
}

/** Closes the form, first asking whether to discard unsaved changes. */
async function requestClose() {
  if (dirty()) {
    const discard = await confirmDialog({
      title: 'Discard your changes?',
      text: mode === 'create'
        ? 'The token has not been created. If you leave now, the settings you chose are lost.'
        : 'You changed this token’s settings and have not saved them. If you leave now, the changes are lost.',
      ok: 'Discard changes',
      cancel: 'Keep editing',
      danger: true,
    });
    if (!discard) {
      return;
    }
  }
  initial = null;
  $('edit-dialog').close();
}

async function loadUsage(t) {
  const slot = $('edit-usage');
  slot.replaceChildren(h('p', { className: 'muted' }, 'Loading…'));
  try {
    const u = await tokenUsage(t.id, 30);
    if (current && current.id === t.id) {
      const chart = chartWithTable(fillDays(u.days, 30), t.created_at);
      slot.replaceChildren(chart);
      $('usage-title').textContent = `Credits per day, last ${chart.dataset.days} days`;
    }
  } catch (err) {
    slot.replaceChildren(h('p', { className: 'muted' }, `Usage could not be loaded: ${err.message}`));
  }
}

function fill(t) {
  clearErrors();
  const creating = mode === 'create';
  $('edit-title').textContent = creating ? 'Create a token' : `Edit “${t.nickname}”`;
  $('edit-id').textContent = creating ? '' : `${t.id} · ${t.kind} · ${t.prefix}…`;
  $('edit-id').hidden = creating;
  $('create-intro').hidden = !creating;
  $('usage-group').hidden = creating;
  $('edit-done').textContent = creating ? 'Create token' : 'Done';
  $('f-nickname').placeholder = creating ? 'For example: Store locator (web)' : '';
  $('f-nickname').value = t.nickname || '';
  $('f-enabled').checked = !!t.enabled;
  $('f-expires').value = toLocalInput(t.expires_at);
  $('f-core').checked = !!t.core;
  $('f-premium').checked = !!t.premium;
  $('f-signed').checked = !!t.signed_requests;
  $('datasets-rows').replaceChildren(...Object.entries(t.datasets || {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, acts]) => datasetRow(name, acts)));
  for (const box of document.querySelectorAll('#apis-group input[name="api"]')) {
    box.checked = (t.allowed_apis || []).includes(box.value);
  }
  $('grants-rows').replaceChildren(...(t.grants || []).map(grantRow));
  $('f-domains').value = (t.allowed_domains || []).join('\n');
  $('f-ips').value = (t.allowed_ips || []).join('\n');
  $('f-credit-limit').value = t.credit_limit == null ? '' : String(t.credit_limit);
  $('f-rps').value = t.rate_limit ? String(t.rate_limit.rps) : '';
  $('f-burst').value = t.rate_limit ? String(t.rate_limit.burst) : '';
  const words = periodWords(state.account && state.account.period);
  $('credit-period').textContent = words.per;
  $('credit-period-hint').textContent = words.hint;

  // Only the owner changes a token; admins may switch a teammate's on or off.
  const mine = creating || manages(t);
  $('edit-readonly').hidden = mine;
  const form = $('edit-form');
  for (const el of form.querySelectorAll('input, textarea, select, .rows button, #add-dataset, #add-grant')) {
    el.disabled = !mine;
  }
  $('f-enabled').disabled = !(mine || state.admin);
  // A secret token has every permission; there is nothing to narrow.
  if (t.kind === 'secret') {
    for (const el of form.querySelectorAll('#f-core, #f-premium, #datasets-group *, #apis-group input, #grants-group *')) {
      if ('disabled' in el) {
        el.disabled = true;
      }
    }
    $('f-enabled').disabled = true;
  }
  // Signing secrets are sealed with the server's key: without one the
  // setting cannot work, so it is offered only to be switched off.
  const noSigning = !!state.account && state.account.signing_available === false;
  $('w-signed').hidden = !noSigning;
  if (noSigning && !t.signed_requests) {
    $('f-signed').disabled = true;
  }
  syncGrantSources();
  syncWarnings();
}

// Says, before saving, what a setting cannot do on this account.
function syncWarnings() {
  const account = state.account;
  $('w-premium').hidden = !($('f-premium').checked && account && !account.account.premium);
}

function datasetRow(name, acts) {
  const row = h('div', { className: 'ds-row', role: 'group' });
  const nameId = uid('ds-name');
  const name$ = h('input', { id: nameId, type: 'text', value: name, className: 'mono', autocomplete: 'off', spellcheck: false,
    'aria-describedby': 'e-datasets', placeholder: 'sales.*' });
  row.append(h('label', { for: nameId, className: 'visually-hidden' }, 'Dataset name or pattern'), name$);
  for (const a of ACTIONS) {
    const id = uid(`ds-${a}`);
    row.append(h('span', { className: 'choice' },
      h('input', { id, type: 'checkbox', value: a, checked: acts.includes(a), 'data-action': a }),
      h('label', { for: id }, a)));
  }
  const remove = h('button', { type: 'button', className: 'small quiet remove', onclick: () => {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    (next ? next.querySelector('input') : $('add-dataset')).focus();
    relabel();
  } }, 'Remove');
  row.append(remove);
  queueMicrotask(relabel);
  return row;
}

function grantRow(g) {
  const row = h('div', { className: 'grant-row', role: 'group' });
  const connId = uid('grant-conn');
  const typeId = uid('grant-type');
  const srcId = uid('grant-source');
  const type = h('select', { id: typeId, onchange: syncGrantSources },
    GRANT_TYPES.map(([v, label]) => h('option', { value: v, selected: g.type === v }, label)));
  row.append(
    h('span', { className: 'stack' }, h('label', { for: connId }, 'Connection'),
      h('input', { id: connId, type: 'text', value: g.connection || '', className: 'mono connection', autocomplete: 'off', spellcheck: false, 'aria-describedby': 'e-grants' })),
    h('span', { className: 'stack' }, h('label', { for: typeId }, 'Kind'), type),
    h('span', { className: 'stack grow' }, h('label', { for: srcId }, 'Table or query'),
      h('input', { id: srcId, type: 'text', value: g.source || '', className: 'mono source', autocomplete: 'off', spellcheck: false, 'aria-describedby': 'e-grants' })),
    h('button', { type: 'button', className: 'small quiet remove', onclick: () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      (next ? next.querySelector('input') : $('add-grant')).focus();
      relabel();
    } }, 'Remove'));
  queueMicrotask(relabel);
  return row;
}

// Names each row for assistive technology: "Dataset 2", "Grant 1".
function relabel() {
  document.querySelectorAll('#datasets-rows .ds-row').forEach((r, i) => {
    r.setAttribute('aria-label', `Dataset ${i + 1}`);
    r.querySelector('.remove').setAttribute('aria-label', `Remove dataset ${i + 1}`);
  });
  document.querySelectorAll('#grants-rows .grant-row').forEach((r, i) => {
    r.setAttribute('aria-label', `Grant ${i + 1}`);
    r.querySelector('.remove').setAttribute('aria-label', `Remove grant ${i + 1}`);
  });
}

// A grant of all sources has no source to name.
function syncGrantSources() {
  for (const r of document.querySelectorAll('#grants-rows .grant-row')) {
    const all = r.querySelector('select').value === 'all';
    const src = r.querySelector('input.source');
    if (all) {
      src.value = '';
    }
    src.disabled = all || r.querySelector('select').disabled;
    src.placeholder = { table: 'orders or orders_*', query: 'SELECT …', all: '' }[r.querySelector('select').value];
  }
}

function lines(text) {
  return text.split('\n').map((s) => s.trim()).filter((s) => s !== '');
}

// A whole number the API can hold, or null for a blank field.
function wholeNumber(field, input, what) {
  const s = input.value.trim().replace(/[,_ ]/g, '');
  if (s === '') {
    return null;
  }
  if (!/^\d+$/.test(s)) {
    throw new FormError(field, `The ${what} must be a whole number, or blank for none.`, input);
  }
  const n = Number(s);
  if (!Number.isSafeInteger(n)) {
    throw new FormError(field, `The ${what} is too large: give a whole number up to ${Number.MAX_SAFE_INTEGER.toLocaleString()}.`, input);
  }
  return n;
}

/**
 * Reads the form as API fields. With strict, mistakes the API would also
 * refuse, but could not point at so well, throw a FormError.
 */
function values(strict) {
  const datasets = {};
  for (const r of document.querySelectorAll('#datasets-rows .ds-row')) {
    const nameInput = r.querySelector('input[type="text"]');
    const name = nameInput.value.trim();
    const acts = ACTIONS.filter((a) => r.querySelector(`input[data-action="${a}"]`).checked);
    if (name === '') {
      if (strict && acts.length > 0) {
        throw new FormError('datasets', 'Give each dataset a name or a pattern such as sales.*, or remove the row.', nameInput);
      }
      continue;
    }
    if (strict && acts.length === 0) {
      throw new FormError('datasets', `Choose at least one of read, write and delete for the dataset “${name}”.`,
        r.querySelector('input[data-action="read"]'));
    }
    const had = datasets[name] || [];
    datasets[name] = ACTIONS.filter((a) => acts.includes(a) || had.includes(a));
  }
  const grants = [];
  for (const r of document.querySelectorAll('#grants-rows .grant-row')) {
    const conn = r.querySelector('input.connection');
    const source = r.querySelector('input.source');
    const type = r.querySelector('select').value;
    if (conn.value.trim() === '' && source.value.trim() === '') {
      continue;
    }
    if (strict && conn.value.trim() === '') {
      throw new FormError('grants', 'Give each grant the name of its connection.', conn);
    }
    if (strict && type !== 'all' && source.value.trim() === '') {
      throw new FormError('grants', type === 'table'
        ? `Name the table of the grant on “${conn.value.trim()}”, or a pattern such as orders_*.`
        : `Write the saved query of the grant on “${conn.value.trim()}”.`, source);
    }
    const g = { connection: conn.value.trim(), type };
    if (type !== 'all') {
      g.source = source.value.trim();
    }
    grants.push(g);
  }
  let expires = null;
  if ($('f-expires').value !== '') {
    const d = new Date($('f-expires').value);
    if (Number.isNaN(d.getTime())) {
      if (strict) {
        throw new FormError('expires_at', 'The expiry is not a date and time.', $('f-expires'));
      }
    } else {
      expires = d.toISOString();
    }
  }
  const out = {
    nickname: $('f-nickname').value,
    enabled: $('f-enabled').checked,
    expires_at: $('f-expires').value === '' ? null : expires,
    core: $('f-core').checked,
    premium: $('f-premium').checked,
    signed_requests: $('f-signed').checked,
    datasets,
    allowed_apis: [...document.querySelectorAll('#apis-group input[name="api"]:checked')].map((b) => b.value),
    grants,
    allowed_domains: lines($('f-domains').value),
    allowed_ips: lines($('f-ips').value),
  };
  if (strict) {
    out.credit_limit = wholeNumber('credit_limit', $('f-credit-limit'), 'credit limit');
    const rps = wholeNumber('rate_limit', $('f-rps'), 'rate');
    const burst = wholeNumber('rate_limit', $('f-burst'), 'burst');
    if (rps === null && burst !== null) {
      throw new FormError('rate_limit', 'Give the requests per second as well as the burst, or leave both blank.', $('f-rps'));
    }
    out.rate_limit = rps === null ? null : (burst === null ? { rps } : { rps, burst });
  } else {
    // The text as it stands, to tell whether it changed.
    out.credit_limit = $('f-credit-limit').value.trim();
    out.rate_limit = [$('f-rps').value.trim(), $('f-burst').value.trim()];
  }
  return out;
}

// JSON with sorted keys, so equal values compare equal.
function canonical(v) {
  if (Array.isArray(v)) {
    return `[${v.map(canonical).join(',')}]`;
  }
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Returns the fields whose value differs from when the form opened. */
function changes(now, loose) {
  const out = {};
  for (const [k, v] of Object.entries(now)) {
    if (canonical(loose[k]) !== canonical(initial[k])) {
      out[k] = v;
    }
  }
  return out;
}

function clearErrors() {
  $('edit-error').textContent = '';
  for (const p of document.querySelectorAll('#edit-form .field-error')) {
    p.textContent = '';
  }
  for (const el of document.querySelectorAll('#edit-form [aria-invalid]')) {
    el.removeAttribute('aria-invalid');
  }
}

// The values a message quotes ("…" or “…”), in order.
function quoted(message) {
  return [...(message || '').matchAll(/["“]([^"”]*)["”]/g)].map((m) => m[1]);
}

// The control to show an API error at. The field names the setting; for a
// list, the row is the one whose value the message quotes, and within a
// grant the part the message is about.
function inputFor(field, message) {
  if (FIELD_INPUT[field]) {
    return $(FIELD_INPUT[field]);
  }
  const msg = message || '';
  if (field === 'allowed_apis') {
    const ticked = [...document.querySelectorAll('#apis-group input[name="api"]:checked')];
    const imp = ticked.find((b) => b.value === 'import');
    const named = ticked.find((b) => quoted(msg).includes(b.value));
    return (imp && ticked.length > 1 ? imp : named) || ticked[0] || $('f-api-data');
  }
  if (field === 'rate_limit') {
    return /burst/i.test(msg) ? $('f-burst') : $('f-rps');
  }
  if (field === 'datasets') {
    const inputs = [...document.querySelectorAll('#datasets-rows input[type="text"]')];
    const names = quoted(msg);
    return inputs.find((i) => names.includes(i.value.trim())) || inputs.find((i) => i.value.trim() === '') || inputs[0] || $('add-dataset');
  }
  if (field === 'grants') {
    const rows = [...document.querySelectorAll('#grants-rows .grant-row')];
    const values = quoted(msg);
    const about = /connection name|name of its connection/i.test(msg) ? 'connection' : 'source';
    for (const r of rows) {
      const conn = r.querySelector('input.connection');
      const src = r.querySelector('input.source');
      if (values.includes(src.value.trim()) && src.value.trim() !== '') {
        return src;
      }
      if (values.includes(conn.value.trim()) || (about === 'connection' && conn.value.trim() === '')) {
        return about === 'connection' || src.disabled ? conn : src;
      }
    }
    return rows.length ? rows[0].querySelector('input.connection') : $('add-grant');
  }
  return null;
}

function showError(field, message, input) {
  const target = input || inputFor(field, message);
  const slot = field && $(`e-${field}`);
  if (slot && target) {
    slot.textContent = message;
    target.setAttribute('aria-invalid', 'true');
    $('edit-error').textContent = mode === 'create'
      ? 'The token was not created. Correct the field marked below.'
      : 'Nothing was saved. Correct the field marked below.';
    target.focus();
  } else {
    $('edit-error').textContent = `${mode === 'create' ? 'The token was not created' : 'Nothing was saved'}: ${message}`;
    $('edit-error').focus();
  }
  announce(`${mode === 'create' ? 'Not created' : 'Not saved'}. ${message}`);
}

async function save() {
  clearErrors();
  let body;
  try {
    body = changes(values(true), values(false));
  } catch (err) {
    if (err instanceof FormError) {
      showError(err.field, err.message, err.input);
      return;
    }
    throw err;
  }
  const dialog = $('edit-dialog');
  if (mode === 'edit' && Object.keys(body).length === 0) {
    initial = null;
    dialog.close();
    return;
  }
  const done = $('edit-done');
  const label = done.textContent;
  done.disabled = true;
  done.textContent = mode === 'create' ? 'Creating…' : 'Saving…';
  try {
    if (mode === 'create') {
      const t = await api('POST', '/v1/tokens', body);
      initial = null;
      dialog.close();
      hooks.created(t);
      return;
    }
    const t = await api('PATCH', `/v1/tokens/${encodeURIComponent(current.id)}`, body);
    initial = null;
    dialog.close();
    hooks.saved(t);
    if (t.signing_secret) {
      showReveal('reveal-slot', revealPanel(`Signing secret for “${t.nickname}”`,
        [{ id: 'new-signing-secret', label: 'Signing secret', value: t.signing_secret }],
        'Requests with this token must now be signed with this secret. Copy it now: it won’t be shown again.'));
    }
    announce(`Token ${t.nickname} saved.`);
  } catch (err) {
    if (err.status !== 401) {
      showError(err.field, err.message);
    }
  } finally {
    done.disabled = false;
    done.textContent = label;
  }
}

// An RFC 3339 time as a datetime-local input's value, in local time.
function toLocalInput(iso) {
  if (!iso) {
    return '';
  }
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
