// The edit form: every field of a token. Done sends only what changed,
// and an error is shown beside its field, which gets focus.

import { showTokenAlerts } from './alerts.js';
import { api, tokenUsage } from './api.js';
import { chartWithTable, fillDays } from './chart.js';
import { openDialog } from './dialogs.js';
import { announce, h, revealPanel, showReveal, uid } from './dom.js';
import { manages, state } from './state.js';

const $ = (id) => document.getElementById(id);
const ACTIONS = ['read', 'write', 'delete'];
const GRANT_TYPES = ['table', 'query', 'all'];

// The input each API field's error moves focus to.
const FIELD_INPUT = {
  nickname: 'f-nickname', enabled: 'f-enabled', expires_at: 'f-expires', core: 'f-core', premium: 'f-premium',
  signed_requests: 'f-signed', allowed_apis: 'f-api-data', allowed_domains: 'f-domains', allowed_ips: 'f-ips',
  credit_limit: 'f-credit-limit', rate_limit: 'f-rps',
};

let current = null; // the token being edited
let initial = null; // the form's values when it opened
let onSaved = () => {};

/** A mistake found before anything is sent. */
class FormError extends Error {
  constructor(field, message, input) {
    super(message);
    this.field = field;
    this.input = input;
  }
}

/** Wires the form; saved(token) is called after a successful save. */
export function initEditor(saved) {
  onSaved = saved;
  const dialog = $('edit-dialog');
  $('edit-cancel').addEventListener('click', () => dialog.close());
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
}

/** Opens the form for a token; focus returns to opener when it closes. */
export function openEditor(id, opener) {
  const t = state.tokens.find((x) => x.id === id);
  if (!t) {
    return;
  }
  current = t;
  fill(t);
  initial = values(false);
  openDialog($('edit-dialog'), { opener, fallback: $('tokens-title'), focus: $('edit-title') });
  loadUsage(t.id);
  showTokenAlerts(t.id);
}

async function loadUsage(id) {
  const slot = $('edit-usage');
  slot.replaceChildren(h('p', { className: 'muted' }, 'Loading…'));
  try {
    const u = await tokenUsage(id, 30);
    if (current && current.id === id) {
      slot.replaceChildren(chartWithTable(fillDays(u.days, 30)));
    }
  } catch (err) {
    slot.replaceChildren(h('p', { className: 'muted' }, `Usage could not be loaded: ${err.message}`));
  }
}

function fill(t) {
  clearErrors();
  $('edit-title').textContent = `Edit “${t.nickname}”`;
  $('edit-id').textContent = `${t.id} · ${t.kind} · ${t.prefix}…`;
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

  // Only the owner changes a token; admins may switch a teammate's on or off.
  const mine = manages(t);
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
  syncGrantSources();
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
    GRANT_TYPES.map((x) => h('option', { value: x, selected: g.type === x }, x)));
  row.append(
    h('span', { className: 'stack' }, h('label', { for: connId }, 'Connection'),
      h('input', { id: connId, type: 'text', value: g.connection || '', className: 'mono', autocomplete: 'off', spellcheck: false, 'aria-describedby': 'e-grants' })),
    h('span', { className: 'stack' }, h('label', { for: typeId }, 'Type'), type),
    h('span', { className: 'stack grow' }, h('label', { for: srcId }, 'Source (table or query)'),
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

// A grant of "all" sources has no source to name.
function syncGrantSources() {
  for (const r of document.querySelectorAll('#grants-rows .grant-row')) {
    const all = r.querySelector('select').value === 'all';
    const src = r.querySelector('input.source');
    if (all) {
      src.value = '';
    }
    src.disabled = all || r.querySelector('select').disabled;
  }
}

function lines(text) {
  return text.split('\n').map((s) => s.trim()).filter((s) => s !== '');
}

function wholeNumber(field, input, blankOK) {
  const s = input.value.trim();
  if (s === '') {
    return null;
  }
  if (!/^\d+$/.test(s)) {
    throw new FormError(field, blankOK ? 'must be a whole number, or blank for none' : 'must be a whole number', input);
  }
  return Number(s);
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
        throw new FormError('datasets', 'give each dataset a name or pattern, or remove the row', nameInput);
      }
      continue;
    }
    const had = datasets[name] || [];
    datasets[name] = ACTIONS.filter((a) => acts.includes(a) || had.includes(a));
  }
  const grants = [];
  for (const r of document.querySelectorAll('#grants-rows .grant-row')) {
    const [conn, source] = r.querySelectorAll('input');
    const type = r.querySelector('select').value;
    if (conn.value.trim() === '' && source.value.trim() === '') {
      continue;
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
        throw new FormError('expires_at', 'is not a date and time', $('f-expires'));
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
    out.credit_limit = wholeNumber('credit_limit', $('f-credit-limit'), true);
    const rps = wholeNumber('rate_limit', $('f-rps'), true);
    const burst = wholeNumber('rate_limit', $('f-burst'), true);
    if (rps === null && burst !== null) {
      throw new FormError('rate_limit', 'give the requests per second as well as the burst, or leave both blank', $('f-rps'));
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

// The input to show an error at: for list fields, the row the message
// names (it quotes the value at fault), else the first row.
function inputFor(field, message) {
  if (FIELD_INPUT[field]) {
    return $(FIELD_INPUT[field]);
  }
  const rows = { datasets: ['#datasets-rows', 'add-dataset'], grants: ['#grants-rows', 'add-grant'] }[field];
  if (!rows) {
    return null;
  }
  const inputs = [...document.querySelectorAll(`${rows[0]} input[type="text"]`)];
  const quoted = /^"([^"]*)"/.exec(message || '');
  const named = quoted && inputs.find((i) => i.value.trim() === quoted[1]);
  return named || inputs[0] || $(rows[1]);
}

function showError(field, message, input) {
  const target = input || inputFor(field, message);
  const slot = field && $(`e-${field}`);
  if (slot && target) {
    slot.textContent = message;
    target.setAttribute('aria-invalid', 'true');
    if (field === 'rate_limit') {
      $('f-burst').setAttribute('aria-invalid', 'true');
    }
    $('edit-error').textContent = 'Nothing was saved. Correct the field marked below.';
    target.focus();
  } else {
    $('edit-error').textContent = `Nothing was saved: ${field ? `${field} ` : ''}${message}`;
    $('edit-error').focus();
  }
  announce(`Not saved. ${message}`);
}

async function save() {
  clearErrors();
  let patch;
  try {
    patch = changes(values(true), values(false));
  } catch (err) {
    if (err instanceof FormError) {
      showError(err.field, err.message, err.input);
      return;
    }
    throw err;
  }
  const dialog = $('edit-dialog');
  if (Object.keys(patch).length === 0) {
    dialog.close();
    return;
  }
  const done = $('edit-done');
  done.disabled = true;
  done.textContent = 'Saving…';
  try {
    const t = await api('PATCH', `/v1/tokens/${encodeURIComponent(current.id)}`, patch);
    dialog.close();
    onSaved(t);
    if (t.signing_secret) {
      showReveal('reveal-slot', revealPanel(`Signing secret for “${t.nickname}”`,
        [{ id: 'new-signing-secret', label: 'Signing secret', value: t.signing_secret }],
        'Requests with this token must now be signed with this secret. Copy it now: it won’t be shown again.'));
    }
    announce(`Token ${t.nickname} saved.`);
  } catch (err) {
    showError(err.field, err.message);
  } finally {
    done.disabled = false;
    done.textContent = 'Done';
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
