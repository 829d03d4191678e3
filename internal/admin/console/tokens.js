// The API Tokens page: the list, and create, roll and delete.

import { copyControl, shownOnceNote } from './account.js';
import { api, listTokens, tokenUsage } from './api.js';
import { barChart, fillDays } from './chart.js';
import { confirmDialog, findAgain, openDialog } from './dialogs.js';
import { openCreator, openEditor } from './edit.js';
import { announce, copyText, formatNumber, formatTime, h, icon, revealPanel, showReveal, timeEl } from './dom.js';
import { manages, periodWords, state } from './state.js';

const DAYS = 30;
// How often an open, visible list refreshes itself: usage is written in
// batches every few seconds, so credits and "last used" move on their own.
// The charts cost a request per token, so they follow at most every
// CHARTS_EVERY unless Refresh is pressed.
const REFRESH_EVERY = 60_000;
const CHARTS_EVERY = 300_000;
let chartsAt = 0;

const $ = (id) => document.getElementById(id);

/** Wires the page's controls; called once. */
export function initTokens() {
  $('create-token').addEventListener('click', (e) => openCreator(e.currentTarget));
  $('quick-token').addEventListener('click', (e) => quickToken(e.currentTarget));
  $('refresh-tokens').addEventListener('click', async () => {
    await loadTokens({ charts: true });
    announce('The list is up to date.');
  });
  const rollDialog = $('roll-dialog');
  $('roll-cancel').addEventListener('click', () => rollDialog.close());
  // Coming back to the page, or every minute while it is in view, the
  // credits used and "last used" are fetched again.
  const auto = () => {
    if (state.user && !$('page-tokens').hidden && document.visibilityState === 'visible') {
      loadTokens({ charts: Date.now() - chartsAt > CHARTS_EVERY });
    }
  };
  window.addEventListener('focus', auto);
  document.addEventListener('visibilitychange', auto);
  setInterval(auto, REFRESH_EVERY);
}

let loading = null; // the load running
let next = null; // {charts, promise}: one more load, asked for while one ran

/** Loads the tokens, the account summary and (unless charts is false) the usage charts. */
export function loadTokens({ charts = true } = {}) {
  if (!loading) {
    loading = load(charts).finally(() => {
      loading = null;
    });
    return loading;
  }
  // The running load may have read the list before what this caller wants
  // to see (traffic, a change): one more follows it, shared by every
  // caller meanwhile.
  if (next) {
    next.charts = next.charts || charts;
  } else {
    next = { charts };
    next.promise = loading.then(() => {
      const n = next;
      next = null;
      return loadTokens({ charts: n.charts });
    });
  }
  return next.promise;
}

async function load(charts) {
  const error = $('tokens-error');
  let tokens;
  try {
    [tokens] = await Promise.all([listTokens(), loadAccount()]);
  } catch (err) {
    error.textContent = `The tokens could not be loaded: ${err.message}`;
    return;
  }
  error.textContent = '';
  if (!state.user) {
    return; // signed out meanwhile
  }
  state.tokens = tokens;
  render();
  $('refreshed-at').textContent = `Updated ${new Intl.DateTimeFormat(undefined, { timeStyle: 'short' }).format(new Date())}`;
  if (charts) {
    chartsAt = Date.now();
  }
  // New rows get their chart at once; the others when charts are due.
  await loadUsage(charts ? state.tokens : state.tokens.filter((t) => !state.usage.has(t.id)));
}

async function loadAccount() {
  try {
    const a = await api('GET', '/v1/account');
    state.account = a;
    const words = periodWords(a.period);
    const used = a.credit_quota == null
      ? `${formatNumber(a.credits_used)} credits used ${words.this} · no quota`
      : `${formatNumber(a.credits_used)} of ${formatNumber(a.credit_quota)} credits used ${words.this}`;
    $('account-summary').textContent = `${a.account.name} · ${a.plan} plan · ${used}`;
    $('credits-col').textContent = `Credits ${words.this}`;
  } catch (err) {
    $('account-summary').textContent = '';
  }
}

/** Fetches the charts' data, a few tokens at a time. */
async function loadUsage(tokens) {
  const queue = [...tokens];
  const worker = async () => {
    while (queue.length > 0) {
      const t = queue.shift();
      try {
        const u = await tokenUsage(t.id, DAYS);
        state.usage.set(t.id, fillDays(u.days, DAYS));
      } catch (err) {
        state.usage.set(t.id, null);
      }
      drawChart(t.id);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function drawChart(id) {
  const cell = document.querySelector(`tr[data-id="${CSS.escape(id)}"] .chart-cell`);
  if (!cell) {
    return;
  }
  const series = state.usage.get(id);
  cell.replaceChildren(series ? barChart(series, { width: 120, height: 30 }) : h('span', { className: 'muted' }, 'unavailable'));
}

/** Redraws the table from state.tokens. */
export function render() {
  const body = $('tokens-body');
  // Rows are rebuilt; a control that had focus keeps it in its new row.
  const active = body.contains(document.activeElement) ? document.activeElement : null;
  body.replaceChildren(...state.tokens.map(row));
  const again = findAgain(active);
  if (again) {
    again.focus();
  }
  $('tokens-empty').hidden = state.tokens.length > 0;
  $('tokens-table').hidden = state.tokens.length === 0;
  for (const t of state.tokens) {
    if (state.usage.has(t.id)) {
      drawChart(t.id);
    }
  }
}

function row(t) {
  const mine = manages(t);
  const nickname = t.nickname || t.id;
  const status = [];
  if (!t.enabled) {
    status.push(h('span', { className: 'badge off' }, 'disabled'));
  }
  if (t.expires_at) {
    const past = new Date(t.expires_at) <= new Date();
    status.push(h('span', { className: past ? 'badge off' : 'badge' }, past ? 'expired ' : 'expires ', timeEl(t.expires_at, { brief: true })));
  }
  if (t.previous_token_expires_at) {
    status.push(h('span', { className: 'badge warn prev-expires' }, 'previous value expires ', timeEl(t.previous_token_expires_at, { brief: true })));
  }
  if (t.user_id && state.user && t.user_id !== state.user.id) {
    status.push(h('span', { className: 'badge' }, 'a teammate’s'));
  }
  const limit = t.credit_limit == null ? null : t.credit_limit;
  const credits = h('td', { className: 'num credits', 'data-label': `Credits ${periodWords(state.account && state.account.period).this}` },
    h('span', {}, formatNumber(t.credits_used || 0), ' / ', limit == null ? h('span', { className: 'muted' }, 'no limit') : formatNumber(limit)));
  if (limit != null && limit > 0) {
    credits.append(h('meter', { min: 0, max: limit, value: Math.min(t.credits_used || 0, limit), high: limit * 0.8, optimum: 0,
      'aria-label': `${nickname}: credits used of the limit` }));
  }
  const actions = h('td', { className: 'actions' },
    h('button', { type: 'button', className: 'icon-button edit', title: 'Edit', 'aria-label': `Edit ${nickname}`, 'data-focus-key': `edit:${t.id}`,
      onclick: (e) => openEditor(t.id, e.currentTarget) }, icon('gear')));
  if (mine) {
    actions.append(h('button', { type: 'button', className: 'small roll', 'aria-label': `Roll ${nickname}`, 'data-focus-key': `roll:${t.id}`,
      onclick: (e) => openRoll(t, e.currentTarget) }, icon('roll'), h('span', {}, 'Roll')));
  }
  if (t.kind !== 'secret' && (mine || state.admin)) {
    actions.append(h('button', { type: 'button', className: 'small danger-quiet delete', 'aria-label': `Delete ${nickname}`, 'data-focus-key': `delete:${t.id}`,
      onclick: (e) => deleteToken(t, e.currentTarget) }, icon('trash'), h('span', {}, 'Delete')));
  }
  return h('tr', { 'data-id': t.id, className: t.enabled ? '' : 'disabled' },
    h('th', { scope: 'row', className: 'name' },
      h('span', { className: 'nickname' }, nickname),
      h('button', { type: 'button', className: 'link mono token-id', 'aria-label': `Edit ${nickname} (${t.id})`, 'data-focus-key': `id:${t.id}`,
        onclick: (e) => openEditor(t.id, e.currentTarget) }, t.id),
      status.length ? h('span', { className: 'status' }, status) : null,
      h('span', { className: 'perms' }, permissions(t))),
    h('td', { 'data-label': 'Kind' }, h('span', { className: `kind ${t.kind}` }, t.kind)),
    h('td', { 'data-label': 'Token' }, h('code', { className: 'prefix' }, `${t.prefix}…`), copyControl(t)),
    h('td', { className: 'time', 'data-label': 'Created' }, timeEl(t.created_at)),
    h('td', { className: 'time last-used', 'data-label': 'Last used' }, timeEl(t.last_used_at, { relative: true })),
    credits,
    h('td', { className: 'chart-cell', 'data-label': 'Last 30 days' }, h('span', { className: 'muted' }, '…')),
    actions);
}

/**
 * Sums up in one line what a token may do and where: its data, datasets,
 * APIs, grants and restrictions, in the words of the edit form.
 */
export function permissions(t) {
  if (t.kind === 'secret') {
    return 'Everything: a secret token has every permission';
  }
  const can = [];
  if (t.core) {
    can.push('core data');
  }
  if (t.premium) {
    can.push('premium data');
  }
  const datasets = Object.keys(t.datasets || {}).sort();
  if (datasets.length === 0) {
    can.push('no datasets');
  } else if (datasets.length <= 2) {
    can.push(...datasets.map((d) => `${d} (${(t.datasets[d] || []).join(', ') || 'nothing'})`));
  } else {
    can.push(`${datasets.length} datasets`);
  }
  const apis = t.allowed_apis || [];
  can.push(apis.length === 0 ? 'every API but import' : `${apis.length === 1 ? 'API' : 'APIs'}: ${apis.join(', ')}`);
  const grants = (t.grants || []).length;
  if (grants > 0) {
    can.push(grants === 1 ? '1 grant' : `${grants} grants`);
  }
  const where = [];
  const domains = t.allowed_domains || [];
  if (domains.length > 0) {
    where.push(domains.length === 1 ? `from ${domains[0]}` : `from ${domains.length} domains`);
  }
  const ips = t.allowed_ips || [];
  if (ips.length > 0) {
    where.push(ips.length === 1 ? `from ${ips[0]}` : `from ${ips.length} IP ranges`);
  }
  if (t.signed_requests) {
    where.push('signed requests only');
  }
  if (t.rate_limit) {
    where.push(`${formatNumber(t.rate_limit.rps)} requests/s`);
  }
  if (where.length === 0) {
    where.push('from anywhere');
  }
  return `Can use ${can.join(', ')} · ${where.join(', ')}`;
}

/**
 * Ready-to-copy requests with a token's value: curl and fetch, against the
 * console's own origin (Tollgate has no setting for the API's public
 * address; docs/console.md says so).
 */
export function examples(value, t) {
  // A dataset the token may read, when it names one outright.
  const named = Object.keys((t && t.datasets) || {}).find((d) => !d.includes('*'));
  const url = `${window.location.origin}/v1/data/${named || 'DATASET_NAME'}`;
  const curl = `curl '${url}' \\\n  -H 'Authorization: Bearer ${value}'`;
  const fetchJS = `const res = await fetch('${url}', {\n  headers: { Authorization: 'Bearer ${value}' },\n});\nconsole.log(await res.json());`;
  const block = (id, label, code) => {
    const pre = h('pre', { id, tabIndex: 0, 'aria-label': label }, h('code', {}, code));
    const status = h('span', { className: 'copy-status', role: 'status' });
    const button = h('button', { type: 'button', className: 'small copy-example', 'aria-describedby': id, onclick: async () => {
      const ok = await copyText(code, null);
      status.textContent = ok ? 'Copied' : 'Select the text and press Ctrl+C to copy';
    } }, 'Copy');
    return h('div', { className: 'example' }, h('div', { className: 'example-head' }, h('strong', {}, label), button, status), pre);
  };
  return h('section', { className: 'examples', 'aria-label': 'Example requests' },
    h('h3', {}, 'Try it'),
    h('p', { className: 'hint' }, named ? '' : 'Replace DATASET_NAME with one of your datasets (add it to the token first: a new token reads core data but no dataset). ',
      'The token also works as ', h('code', {}, '?token='), ' in the URL or in an ', h('code', {}, 'X-API-Key'), ' header.'),
    block('example-curl', 'curl', curl),
    block('example-fetch', 'JavaScript', fetchJS));
}

/** Replaces a token in the list (keeping its credits if the answer has none). */
export function replaceToken(updated) {
  const i = state.tokens.findIndex((t) => t.id === updated.id);
  const merged = { ...updated };
  delete merged.token;
  delete merged.signing_secret;
  if (i >= 0) {
    if (merged.credits_used === undefined) {
      merged.credits_used = state.tokens[i].credits_used;
    }
    state.tokens[i] = merged;
  } else {
    state.tokens.push(merged);
  }
  render();
}

function rowButton(id, cls) {
  return document.querySelector(`tr[data-id="${CSS.escape(id)}"] button.${cls}`);
}

// The quick way: a publishable token with the defaults, after a confirmation.
async function quickToken(opener) {
  const ok = await confirmDialog({
    title: 'Add a publishable token?',
    text: 'A new publishable token with core read access will be added to your list. You can change its permissions and restrictions afterwards.',
    ok: 'Add token',
    opener,
  });
  if (!ok) {
    return;
  }
  $('tokens-error').textContent = '';
  let t;
  try {
    t = await api('POST', '/v1/tokens', {});
  } catch (err) {
    $('tokens-error').textContent = `The token was not created: ${err.message}`;
    $('tokens-error').focus();
    return;
  }
  showNewToken(t);
}

/** Lists a token just made and shows its value, once, with example requests. */
export function showNewToken(t) {
  state.usage.set(t.id, fillDays([], DAYS));
  replaceToken(t);
  const items = [{ id: 'new-token-value', label: 'Token value', value: t.token }];
  if (t.signing_secret) {
    items.push({ id: 'new-signing-secret', label: 'Signing secret', value: t.signing_secret });
  }
  const panel = revealPanel(`Your new token “${t.nickname}”`, items, shownOnceNote(t));
  panel.append(examples(t.token, t));
  showReveal('reveal-slot', panel);
  announce(`Token ${t.nickname} created. ${t.value_kept ? 'Its value can be copied again from the list.' : 'Its value is shown once.'}`);
}

function openRoll(t, opener) {
  const dialog = $('roll-dialog');
  const form = $('roll-form');
  $('roll-title').textContent = `Roll “${t.nickname}”`;
  $('roll-error').textContent = '';
  $('roll-grace-24h').checked = true;
  const submit = async (e) => {
    e.preventDefault();
    const grace = new FormData(form).get('grace');
    const button = $('roll-ok');
    button.disabled = true;
    try {
      const rolled = await api('POST', `/v1/tokens/${encodeURIComponent(t.id)}/roll`, { grace_period: grace });
      dialog.close();
      // The roll's answer counts no credits (it reads none); a roll spends none.
      const before = state.tokens.find((x) => x.id === t.id);
      replaceToken({ ...rolled, credits_used: before ? before.credits_used : rolled.credits_used });
      const when = rolled.previous_token_expires_at
        ? `The previous value works until ${formatTime(rolled.previous_token_expires_at)}.`
        : 'The previous value no longer works.';
      showReveal('reveal-slot', revealPanel(`New value for “${rolled.nickname}”`,
        [{ id: 'new-token-value', label: 'Token value', value: rolled.token }],
        `${when} ${shownOnceNote(rolled) || 'Copy the new value now: it won’t be shown again.'}`));
      announce(`Token ${rolled.nickname} rolled. ${when}`);
    } catch (err) {
      $('roll-error').textContent = err.message;
    } finally {
      button.disabled = false;
    }
  };
  const cleanup = () => {
    form.removeEventListener('submit', submit);
    dialog.removeEventListener('close', cleanup);
  };
  form.addEventListener('submit', submit);
  dialog.addEventListener('close', cleanup);
  openDialog(dialog, { opener, fallback: $('tokens-title'), focus: form.querySelector('input[name="grace"]:checked') });
}

async function deleteToken(t, opener) {
  const ok = await confirmDialog({
    title: `Delete “${t.nickname}”?`,
    text: `Requests with this token will be refused at once. This cannot be undone.`,
    ok: 'Delete token',
    danger: true,
    opener,
    fallback: $('tokens-title'),
  });
  if (!ok) {
    return;
  }
  try {
    await api('DELETE', `/v1/tokens/${encodeURIComponent(t.id)}`);
  } catch (err) {
    $('tokens-error').textContent = `The token was not deleted: ${err.message}`;
    return;
  }
  const i = state.tokens.findIndex((x) => x.id === t.id);
  state.tokens.splice(i, 1);
  state.usage.delete(t.id);
  render();
  // Focus goes to the next row's edit button, or the page's heading.
  const next = state.tokens[i] || state.tokens[i - 1];
  const target = next ? rowButton(next.id, 'edit') : $('create-token');
  target.focus();
  announce(`Token ${t.nickname} deleted.`);
}
