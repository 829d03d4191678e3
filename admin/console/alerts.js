// Alerts on tokens: leaks that secret scanning reported. A panel above
// the token list names every token in trouble; the token's page carries a
// banner with where its value was found and what Tollgate did.

import { api } from './api.js';
import { h, timeEl } from './dom.js';
import { state } from './state.js';

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

/** Loads the panel of alerts above the token list. */
export async function loadAlerts() {
  const slot = $('alerts');
  try {
    const { leaks } = await api('GET', '/v1/leaks');
    // The newest report per token is enough in the list.
    const seen = new Set();
    const newest = leaks.filter((l) => !seen.has(l.token_id) && seen.add(l.token_id));
    fillSlot(slot, newest.map((l) => leakBanner(l, true)));
  } catch {
    fillSlot(slot, []);
  }
}

/** Shows a token's alerts on its page. */
export async function showTokenAlerts(id) {
  const slot = $('edit-alerts');
  fillSlot(slot, []);
  try {
    const { leaks } = await api('GET', `/v1/tokens/${encodeURIComponent(id)}/leaks`);
    fillSlot(slot, leaks.map((l) => leakBanner(l, false)));
  } catch {
    fillSlot(slot, []);
  }
}
