// Account basics beside the token pages: change your password, the audit
// log for admins, copying a publishable token again, and leaving nothing
// of a user in the page once they sign out.

import { api } from './api.js';
import { announce, copyText, formatTime, h } from './dom.js';
import { state } from './state.js';

const $ = (id) => document.getElementById(id);

/** Builds the header's Account and Audit log buttons and their dialogs; called once. */
export function initAccount() {
  const account = h('button', { type: 'button', id: 'open-account', className: 'link', onclick: (e) => openAccount(e.currentTarget) }, 'Account');
  const audit = h('button', { type: 'button', id: 'open-audit', className: 'link', hidden: true, onclick: (e) => openAudit(e.currentTarget) }, 'Audit log');
  $('sign-out').before(account, audit);
  document.body.append(accountDialog(), auditDialog());
  for (const d of ['account-dialog', 'audit-dialog']) {
    $(d).addEventListener('close', () => {
      if (opener && opener.isConnected && !opener.hidden) {
        opener.focus();
      }
    });
  }
}

/** Shows the admins' header controls to admins only; call when who is signed in changes. */
export function showAdminControls() {
  $('open-audit').hidden = !state.admin || !state.user;
}

// --- Your account: change password --------------------------------------

function passwordField(id, label, autocomplete, hint) {
  return h('div', { className: 'field' },
    h('label', { for: id }, label, hint ? h('span', { className: 'hint' }, ` ${hint}`) : null),
    h('input', { id, type: 'password', autocomplete, required: true, 'aria-describedby': `${id}-error` }),
    h('p', { id: `${id}-error`, className: 'field-error' }));
}

function accountDialog() {
  const form = h('form', { id: 'password-form', className: 'dialog-body', noValidate: true, onsubmit: changePassword },
    h('h2', { id: 'account-title', tabIndex: -1 }, 'Your account'),
    h('p', { id: 'account-who', className: 'muted' }),
    h('h3', {}, 'Change password'),
    h('p', { className: 'hint' }, 'Your other sessions will be signed out; this one stays.'),
    passwordField('pw-current', 'Current password', 'current-password'),
    passwordField('pw-new', 'New password', 'new-password', '(10 to 72 characters)'),
    passwordField('pw-confirm', 'New password again', 'new-password'),
    h('p', { id: 'password-error', className: 'form-error', role: 'alert' }),
    h('div', { className: 'dialog-actions' },
      h('button', { type: 'button', id: 'password-cancel', onclick: () => $('account-dialog').close() }, 'Close'),
      h('button', { type: 'submit', id: 'password-submit', className: 'primary' }, 'Change password')));
  return h('dialog', { id: 'account-dialog', 'aria-labelledby': 'account-title' }, form);
}

let opener = null;

function openAccount(from) {
  opener = from;
  $('password-form').reset();
  clearPasswordErrors();
  $('account-who').textContent = state.user ? `Signed in as ${state.user.email} (${state.user.role}).` : '';
  $('account-dialog').showModal();
  $('pw-current').focus();
}

function clearPasswordErrors() {
  for (const id of ['pw-current', 'pw-new', 'pw-confirm']) {
    $(id).removeAttribute('aria-invalid');
    $(`${id}-error`).textContent = '';
  }
  $('password-error').textContent = '';
}

function passwordError(id, message) {
  $(id).setAttribute('aria-invalid', 'true');
  $(`${id}-error`).textContent = message;
  $(id).focus();
}

async function changePassword(e) {
  e.preventDefault();
  clearPasswordErrors();
  const current = $('pw-current').value;
  const next = $('pw-new').value;
  if (current === '') {
    passwordError('pw-current', 'Enter your current password.');
    return;
  }
  if (next.length < 10 || next.length > 72) {
    passwordError('pw-new', 'Choose a new password of 10 to 72 characters.');
    return;
  }
  if ($('pw-confirm').value !== next) {
    passwordError('pw-confirm', 'The two new passwords differ: type the same one twice.');
    return;
  }
  const button = $('password-submit');
  button.disabled = true;
  try {
    await api('PUT', `/v1/users/${encodeURIComponent(state.user.id)}/password`, { current_password: current, new_password: next });
  } catch (err) {
    if (err.field === 'current_password') {
      passwordError('pw-current', 'That is not your current password.');
    } else if (err.field === 'new_password') {
      passwordError('pw-new', `The new password ${err.message}.`);
    } else {
      $('password-error').textContent = err.message;
    }
    return;
  } finally {
    button.disabled = false;
  }
  $('password-form').reset();
  $('account-dialog').close();
  announce('Password changed. Your other sessions were signed out.');
}

// --- The audit log (admins) ----------------------------------------------

const ACTIONS = {
  'token.create': 'created a token', 'token.update': 'changed a token', 'token.roll': 'rolled a token',
  'token.delete': 'deleted a token', 'token.reveal': 'copied a token’s value', 'user.invite': 'invited a teammate',
  'user.remove': 'removed a teammate', 'user.role': 'changed a teammate’s role', 'user.password': 'changed their password',
  'user.password.fail': 'gave a wrong current password', 'session.create': 'signed in', 'session.fail': 'failed to sign in',
};

function auditDialog() {
  return h('dialog', { id: 'audit-dialog', className: 'drawer', 'aria-labelledby': 'audit-title' },
    h('div', { className: 'dialog-body' },
      h('div', { className: 'drawer-head' },
        h('h2', { id: 'audit-title', tabIndex: -1 }, 'Audit log'),
        h('p', { className: 'muted' }, 'Every change to the account’s tokens and teammates, newest first.')),
      h('p', { id: 'audit-error', className: 'form-error', role: 'alert' }),
      h('div', { className: 'table-wrap' },
        h('table', { className: 'audit' },
          h('caption', { className: 'visually-hidden' }, 'Audit log, newest first'),
          h('thead', {}, h('tr', {}, ...['When', 'Who', 'What'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', { id: 'audit-body' }))),
      h('div', { className: 'dialog-actions sticky' },
        h('button', { type: 'button', id: 'audit-more', hidden: true, onclick: () => loadAudit(true) }, 'Show older'),
        h('button', { type: 'button', id: 'audit-close', className: 'primary', onclick: () => $('audit-dialog').close() }, 'Close'))));
}

let auditBefore = 0;
let names = new Map();

async function openAudit(from) {
  opener = from;
  $('audit-body').replaceChildren();
  $('audit-dialog').showModal();
  $('audit-title').focus();
  names = new Map();
  try {
    for (const u of (await api('GET', '/v1/users')).users || []) {
      names.set(u.id, u.email);
    }
  } catch (err) {
    // Ids are shown instead of emails.
  }
  for (const t of state.tokens) {
    names.set(t.id, t.kind === 'secret' ? 'the secret token' : `token ${t.nickname}`);
  }
  await loadAudit(false);
}

async function loadAudit(older) {
  $('audit-error').textContent = '';
  const q = older && auditBefore ? `?before=${auditBefore}` : '';
  let entries;
  try {
    entries = (await api('GET', `/v1/audit${q}`)).entries || [];
  } catch (err) {
    $('audit-error').textContent = `The audit log could not be loaded: ${err.message}`;
    return;
  }
  if (!older) {
    $('audit-body').replaceChildren();
  }
  $('audit-body').append(...entries.map((e) => h('tr', {},
    h('td', { className: 'time', 'data-label': 'When' }, h('time', { dateTime: e.at }, formatTime(e.at))),
    h('td', { 'data-label': 'Who' }, names.get(e.actor) || e.actor, h('br'), h('span', { className: 'hint', title: 'From this address' }, e.ip)),
    h('td', { 'data-label': 'What' }, ACTIONS[e.action] || e.action, detailText(e),
      h('br'), h('span', { className: 'hint', title: e.target }, names.get(e.target) || e.target)))));
  if (entries.length === 0 && !older) {
    $('audit-body').append(h('tr', {}, h('td', { colSpan: 3, className: 'muted' }, 'Nothing yet.')));
  }
  auditBefore = entries.length ? entries[entries.length - 1].id : auditBefore;
  $('audit-more').hidden = entries.length < 100;
}

// Says in words what the entry's details hold: the role given, the fields changed.
function detailText(e) {
  const d = e.details || {};
  if (d.role) {
    return `: ${d.role}`;
  }
  if (Array.isArray(d.fields) && d.fields.length) {
    return ` (${d.fields.join(', ')})`;
  }
  return '';
}

// --- Copy a publishable token again --------------------------------------

/**
 * Returns what a token row's Token cell shows after the prefix: for a
 * publishable token, Copy when its value is kept, or why it cannot be
 * copied again; nothing for a secret token.
 */
export function copyControl(t) {
  if (t.kind !== 'publishable') {
    return null;
  }
  if (!t.value_kept) {
    if (state.account && !state.account.values_kept) {
      return h('span', { className: 'hint not-kept',
        title: 'This server has no encryption key, so it keeps no token values: copy a value when it is made or rolled.' }, 'Shown only once');
    }
    return h('span', { className: 'hint not-kept',
      title: 'Its value was made before this server kept publishable values, so it cannot be shown again. Roll it, and the new value can be copied at any time.' },
    'Shown only once; roll to copy again');
  }
  const status = h('span', { className: 'copy-status', role: 'status' });
  const button = h('button', { type: 'button', className: 'small copy-again', 'aria-label': `Copy the value of ${t.nickname}`,
    'data-focus-key': `copy:${t.id}`, onclick: () => copyAgain(t, button, status) }, 'Copy');
  return [button, status];
}

/**
 * Says, beside a new value, whether it is shown only once: a publishable
 * value the server keeps can be copied again from the list (a signing
 * secret never); undefined for the usual warning.
 */
export function shownOnceNote(t) {
  if (t.kind !== 'publishable' || !t.value_kept) {
    return undefined;
  }
  return t.signing_secret
    ? 'The value can be copied again from the list at any time; the signing secret is shown only now: keep it somewhere safe.'
    : 'You can copy this value again from the list at any time.';
}

async function copyAgain(t, button, status) {
  status.textContent = '';
  button.disabled = true;
  try {
    const r = await api('GET', `/v1/tokens/${encodeURIComponent(t.id)}/value`);
    const ok = await copyText(r.token);
    status.textContent = ok ? 'Copied' : `Copy it by hand: ${r.token}`;
  } catch (err) {
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

// --- Signing in and out --------------------------------------------------

/**
 * Leaves nothing of the previous user in the page: lists, values, forms.
 * With forms, the edit form and the sign-in form too (a sign-out); an
 * edit in progress when the session ends is kept for the same user.
 */
export function forgetUser({ forms }) {
  for (const id of ['tokens-body', 'users-body', 'audit-body', 'reveal-slot', 'invite-reveal-slot', 'alerts', 'edit-alerts']) {
    $(id).replaceChildren();
  }
  for (const id of ['who-email', 'account-summary', 'account-who', 'tokens-error', 'users-error', 'audit-error']) {
    $(id).textContent = '';
  }
  names = new Map();
  auditBefore = 0;
  for (const id of forms ? ['password-form', 'invite-form', 'edit-form', 'signin-form'] : ['password-form', 'invite-form']) {
    $(id).reset();
  }
  if (location.hash) {
    // The next user starts on the first page, not the last one's.
    history.replaceState(null, '', location.pathname + location.search);
  }
}
