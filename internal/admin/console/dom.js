// Small DOM helpers: building elements, formatting, announcing, copying,
// and the "shown once" panel for new secrets.

/**
 * Builds an element. attrs sets properties (className, textContent, …),
 * "on<event>" listeners, "data-*"/"aria-*" and other attributes; children
 * are nodes or strings.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Builds an SVG element; attrs are attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) {
      el.setAttribute(k, String(v));
    }
  }
  appendAll(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) {
      continue;
    }
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k.includes('-') || k === 'role' || k === 'for' || k === 'scope') {
      el.setAttribute(k, v === true ? '' : String(v));
    } else {
      el[k] = v;
    }
  }
}

function appendAll(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Returns a fresh id with the prefix, for label/input pairs. */
let seq = 0;
export function uid(prefix) {
  seq += 1;
  return `${prefix}-${seq}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateShort = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dateBrief = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });
const dayShort = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const number = new Intl.NumberFormat();

/**
 * Formats an RFC 3339 time as a <time> element ("never" when empty): the
 * date; with brief, the day and time; with relative, how long ago for the
 * last week. The full time is its tooltip.
 */
export function timeEl(iso, { never = 'never', relative: rel = false, brief = false } = {}) {
  if (!iso) {
    return h('span', { className: 'muted' }, never);
  }
  const d = new Date(iso);
  let text = brief ? dateBrief.format(d) : dateShort.format(d);
  if (rel) {
    text = ago(d) || text;
  }
  return h('time', { dateTime: iso, title: dateTime.format(d) }, text);
}

// Says how long ago a time in the last week was ("5 minutes ago"), or ''.
function ago(d) {
  const s = (d.getTime() - Date.now()) / 1000;
  const steps = [[60, 'second', 1], [3600, 'minute', 60], [86400, 'hour', 3600], [604800, 'day', 86400]];
  if (s > 0 || -s >= 604800) {
    return '';
  }
  if (-s < 45) {
    return 'just now';
  }
  for (const [limit, unit, size] of steps) {
    if (-s < limit) {
      return relative.format(Math.round(s / size), unit);
    }
  }
  return '';
}

/** Formats an RFC 3339 time as text. */
export function formatTime(iso) {
  return dateTime.format(new Date(iso));
}

/** Formats a YYYY-MM-DD day. */
export function formatDay(day) {
  return dateOnly.format(new Date(`${day}T00:00:00Z`));
}

/** Formats a YYYY-MM-DD day briefly, as an axis label ("Dec 2"). */
export function formatDayShort(day) {
  return dayShort.format(new Date(`${day}T00:00:00Z`));
}

/** Formats a whole number with grouping. */
export function formatNumber(n) {
  return number.format(n);
}

/** Says something to screen-reader users through the live region. */
export function announce(message) {
  const region = document.getElementById('announce');
  region.textContent = '';
  // A fresh text node in a later task is announced even when repeated.
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/**
 * Puts text on the clipboard: the Clipboard API, or, where it is missing
 * or refused, selecting the input and the copy command.
 */
export async function copyText(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (err) {
    // Fall through to the fallback.
  }
  if (!input) {
    return false;
  }
  input.focus();
  input.select();
  try {
    return document.execCommand('copy');
  } catch (err) {
    return false;
  }
}

/**
 * Returns a panel that shows new secrets once, each with a Copy button
 * and a "Copied" status. items: [{id, label, value}].
 */
export function revealPanel(title, items, note) {
  const titleId = uid('reveal-title');
  const panel = h('section', { className: 'reveal', 'aria-labelledby': titleId });
  const close = h('button', { type: 'button', className: 'link dismiss', onclick: () => {
    const next = panel.closest('main').querySelector('h1');
    panel.remove();
    if (next) {
      next.focus();
    }
  } }, 'Dismiss');
  panel.append(
    h('div', { className: 'reveal-head' }, h('h2', { id: titleId, tabIndex: -1 }, title), close),
    h('p', { className: 'warning' }, note || 'Copy it now and keep it somewhere safe: it won’t be shown again.'),
  );
  for (const item of items) {
    const input = h('input', { id: item.id, type: 'text', readOnly: true, value: item.value, className: 'mono secret',
      spellcheck: false, autocomplete: 'off', onfocus: (e) => e.target.select() });
    const status = h('span', { className: 'copy-status', role: 'status' });
    const button = h('button', { type: 'button', className: 'copy', 'aria-describedby': item.id, onclick: async () => {
      const ok = await copyText(item.value, input);
      status.textContent = ok ? 'Copied' : 'Select the text and press Ctrl+C to copy';
      if (ok) {
        button.focus();
      }
    } }, 'Copy');
    panel.append(h('div', { className: 'secret-row' },
      h('label', { for: item.id }, item.label), h('div', { className: 'secret-line' }, input, button, status)));
  }
  return panel;
}

/** Shows a reveal panel in the slot, replacing any earlier one, and moves focus to it. */
export function showReveal(slotId, panel) {
  const slot = document.getElementById(slotId);
  slot.replaceChildren(panel);
  panel.querySelector('h2').focus();
}

/** Returns an inline SVG icon: gear, roll or trash. */
export function icon(name) {
  const paths = {
    gear: 'M19.14 12.94a7.14 7.14 0 0 0 .05-.94 7.14 7.14 0 0 0-.05-.94l2.03-1.58a.5.5 0 0 0 .12-.64l-1.92-3.32a.5.5 0 0 0-.6-.22l-2.39.96a7.03 7.03 0 0 0-1.63-.94l-.36-2.54a.5.5 0 0 0-.5-.42h-3.84a.5.5 0 0 0-.5.42l-.36 2.54c-.59.24-1.13.56-1.63.94l-2.39-.96a.5.5 0 0 0-.6.22L2.65 8.84a.5.5 0 0 0 .12.64l2.03 1.58a7.3 7.3 0 0 0 0 1.88l-2.03 1.58a.5.5 0 0 0-.12.64l1.92 3.32c.13.22.39.3.6.22l2.39-.96c.5.38 1.04.7 1.63.94l.36 2.54c.05.24.26.42.5.42h3.84c.25 0 .45-.18.5-.42l.36-2.54c.59-.24 1.13-.56 1.63-.94l2.39.96c.22.08.47 0 .6-.22l1.92-3.32a.5.5 0 0 0-.12-.64l-2.03-1.58zM12 15.6a3.6 3.6 0 1 1 0-7.2 3.6 3.6 0 0 1 0 7.2z',
    roll: 'M17.65 6.35A7.96 7.96 0 0 0 12 4a8 8 0 1 0 7.75 10h-2.08A6 6 0 1 1 12 6c1.66 0 3.14.69 4.22 1.78L13 11h7V4l-2.35 2.35z',
    trash: 'M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6v12zM19 4h-3.5l-1-1h-5l-1 1H5v2h14V4z',
  };
  return svg('svg', { viewBox: '0 0 24 24', width: 18, height: 18, 'aria-hidden': 'true', focusable: 'false', class: 'icon' },
    svg('path', { d: paths[name] }));
}
