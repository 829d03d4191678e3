// Alerts on tokens: leaks that secret scanning reported and flags of
// unusual usage. A panel above the token list names every token in
// trouble; the token's page carries a banner for each, with the evidence
// (where a value was found; the numbers that opened a flag) and, for a
// flag, one click to roll or disable the token.

import { api } from './api.js';
import { announce, h, revealPanel, showReveal, timeEl } from './dom.js';
import { manages, state } from './state.js';
import { loadTokens } from './tokens.js';

const $ = (id) => document.getElementById(id);

const DONE = {
  disabled: 'Tollgate disabled it',
  rolled: 'Tollgate rolled it: the leaked value no longer works; roll it again to get a new value',
  recorded: 'it is still enabled: publishable tokens are public by design, so check its allowed domains and addresses',
  already_disabled: 'it was already disabled',
};

/** A link to where a value was found, when that is a web address. */
function where(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return h('span', { className: 'mono' }, url);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    return h('span', { className: 'mono' }, url);
  }
  return h('a', { href: u.href, target: '_blank', rel: 'noopener noreferrer', className: 'mono' }, url);
}

function nameOf(id) {
  const t = state.tokens.find((x) => x.id === id);
  return t ? `${t.nickname} (${t.prefix}…)` : id;
}

function leakBanner(l, withName) {
  return h('div', { className: 'alert-banner leak', role: 'note', 'data-token': l.token_id },
    h('strong', {}, withName ? `${nameOf(l.token_id)} was found in public` : 'This token was found in public'),
    ' at ', where(l.url),
    ` (reported by ${l.reporter}${l.source ? `, in ${l.source}` : ''}, `, timeEl(l.reported_at, { relative: true }), '): ',
    DONE[l.action] || l.action, '.');
}

/** Fills a slot with banners, hiding it when there are none. */
function fillSlot(slot, banners) {
  slot.replaceChildren(...banners);
  slot.hidden = banners.length === 0;
}

const TITLES = {
  spike: 'Far more requests than usual',
  denials: 'A burst of denied requests',
  new_network: 'Requests from networks never seen for it',
  new_site: 'Requests from sites never seen for it',
  secret_in_browser: 'A secret token sent from a browser',
};

/** The evidence of a flag, in words. */
function evidence(f) {
  const e = f.evidence || {};
  const within = e.window ? ` within ${e.window}` : '';
  switch (f.kind) {
    case 'spike':
      return `${e.requests} requests${within}, ${e.factor ? `${e.factor}× its usual ${e.baseline_per_window}` : 'with no usage before'}.`;
    case 'denials':
      return `${e.count} requests denied with ${e.code}${within} (${Math.round(e.share * 100)}% of its requests).`;
    case 'new_network':
      return `New networks${within}: ${(e.networks || []).join(', ')}.`;
    case 'new_site':
      return `New sites${within}: ${(e.sites || []).join(', ')}.`;
    case 'secret_in_browser':
      return `${e.requests} requests from a browser${within}: a secret token belongs on a server.`;
    default:
      return JSON.stringify(e);
  }
}

/** Runs a token action from a flag, then closes the flag and reloads. */
async function act(f, button, action) {
  button.disabled = true;
  try {
    await action();
    await api('POST', `/v1/flags/${f.id}/resolve`);
    await loadTokens();
    await loadAlerts();
  } catch (err) {
    button.disabled = false;
    announce(`That did not work: ${err.message}`);
  }
}

function flagBanner(f, withName) {
  const t = state.tokens.find((x) => x.id === f.token_id);
  const path = `/v1/tokens/${encodeURIComponent(f.token_id)}`;
  const buttons = [];
  if (t && manages(t)) {
    buttons.push(h('button', { type: 'button', className: 'roll-now', onclick: (e) => act(f, e.currentTarget, async () => {
      const rolled = await api('POST', `${path}/roll`, { grace_period: '0s' });
      showReveal('reveal-slot', revealPanel(`New value for “${rolled.nickname}”`,
        [{ id: 'new-token-value', label: 'Token value', value: rolled.token }],
        'The previous value no longer works. Copy the new value now: it won’t be shown again.'));
    }) }, 'Roll now'));
  }
  if (t && t.enabled && (manages(t) || state.admin) && t.kind !== 'secret') {
    buttons.push(h('button', { type: 'button', className: 'danger disable-now', onclick: (e) => act(f, e.currentTarget,
      () => api('PATCH', path, { enabled: false })) }, 'Disable'));
  }
  buttons.push(h('button', { type: 'button', className: 'link resolve', onclick: (e) => act(f, e.currentTarget, async () => {}) },
    'Mark as expected'));
  return h('div', { className: 'alert-banner flag', role: 'note', 'data-token': f.token_id, 'data-kind': f.kind },
    h('strong', {}, withName ? `${nameOf(f.token_id)}: ${TITLES[f.kind] || f.kind}` : TITLES[f.kind] || f.kind),
    ' (since ', timeEl(f.opened_at, { relative: true }), '). ', evidence(f),
    h('div', { className: 'actions' }, buttons));
}

/** Loads the panel of alerts above the token list. */
export async function loadAlerts() {
  const slot = $('alerts');
  try {
    const [{ leaks }, { flags }] = await Promise.all([api('GET', '/v1/leaks'), api('GET', '/v1/flags')]);
    // The newest report per token is enough in the list.
    const seen = new Set();
    const newest = leaks.filter((l) => !seen.has(l.token_id) && seen.add(l.token_id));
    fillSlot(slot, [...newest.map((l) => leakBanner(l, true)), ...flags.map((f) => flagBanner(f, true))]);
  } catch {
    fillSlot(slot, []);
  }
}

/** Shows a token's alerts on its page. */
export async function showTokenAlerts(id) {
  const slot = $('edit-alerts');
  fillSlot(slot, []);
  try {
    const token = encodeURIComponent(id);
    const [{ leaks }, { flags }] = await Promise.all([api('GET', `/v1/tokens/${token}/leaks`), api('GET', `/v1/tokens/${token}/flags`)]);
    fillSlot(slot, [...leaks.map((l) => leakBanner(l, false)), ...flags.map((f) => flagBanner(f, false))]);
  } catch {
    fillSlot(slot, []);
  }
}
