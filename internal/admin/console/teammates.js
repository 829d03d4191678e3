// The Teammates page: who can sign in, inviting and removing them. The
// controls that only admins may use are hidden from members.

import { showAdminControls } from './account.js';
import { api } from './api.js';
import { confirmDialog } from './dialogs.js';
import { announce, h, revealPanel, showReveal, timeEl } from './dom.js';
import { state } from './state.js';

const $ = (id) => document.getElementById(id);
let users = [];

/** Wires the invite form; called once. */
export function initTeammates() {
  $('invite-form').addEventListener('submit', (e) => {
    e.preventDefault();
    invite();
  });
}

/** Loads and shows the account's users. */
export async function loadTeammates() {
  $('invite-form').hidden = !state.admin;
  $('users-error').textContent = '';
  try {
    users = (await api('GET', '/v1/users')).users || [];
  } catch (err) {
    $('users-error').textContent = `Teammates could not be loaded: ${err.message}`;
    return;
  }
  render();
}

function render() {
  $('users-body').replaceChildren(...users.map((u) => {
    const me = state.user && u.id === state.user.id;
    const actions = h('td', { className: 'actions' });
    if (me) {
      actions.append(h('span', { className: 'muted' }, 'you'));
    } else if (state.admin) {
      actions.append(h('button', { type: 'button', className: 'small danger-quiet remove-user', 'aria-label': `Remove ${u.email}`,
        onclick: (e) => remove(u, e.currentTarget) }, 'Remove'));
    }
    return h('tr', { 'data-id': u.id },
      h('th', { scope: 'row' }, u.email),
      h('td', { 'data-label': 'Role' }, state.admin ? roleSelect(u) : h('span', { className: `role ${u.role}` }, u.role)),
      h('td', { className: 'time', 'data-label': 'Joined' }, timeEl(u.created_at)),
      actions);
  }));
}

// An admin's control for a teammate's role; the change is saved at once.
function roleSelect(u) {
  const select = h('select', { className: 'role-select', 'aria-label': `Role of ${u.email}`, onchange: () => changeRole(u, select) },
    h('option', { value: 'member', selected: u.role === 'member' }, 'Member'),
    h('option', { value: 'admin', selected: u.role === 'admin' }, 'Admin'));
  return select;
}

async function changeRole(u, select) {
  $('users-error').textContent = '';
  select.disabled = true;
  try {
    const r = await api('PATCH', `/v1/users/${encodeURIComponent(u.id)}`, { role: select.value });
    u.role = r.user.role;
    if (state.user && u.id === state.user.id) {
      state.user.role = u.role;
    }
    announce(`${u.email} is now ${u.role === 'admin' ? 'an admin' : 'a member'}.`);
  } catch (err) {
    select.value = u.role;
    $('users-error').textContent = `${u.email}’s role was not changed: ${err.message}`;
  } finally {
    select.disabled = false;
  }
  if (state.user && u.id === state.user.id && u.role !== 'admin') {
    // You are a member now: the admins' controls go.
    state.admin = false;
    $('who-email').textContent = state.user.email;
    showAdminControls();
    await loadTeammates();
    $('teammates-title').focus();
    return;
  }
  select.focus();
}

async function invite() {
  const email = $('invite-email');
  const role = $('invite-role');
  for (const id of ['invite-email-error', 'invite-role-error', 'invite-error']) {
    $(id).textContent = '';
  }
  email.removeAttribute('aria-invalid');
  role.removeAttribute('aria-invalid');
  if (email.value.trim() === '') {
    fieldError(email, 'invite-email-error', 'Enter the teammate’s email address.');
    return;
  }
  try {
    const r = await api('POST', '/v1/users', { email: email.value.trim(), role: role.value });
    users.push(r.user);
    render();
    email.value = '';
    showReveal('invite-reveal-slot', revealPanel(`${r.user.email} is invited`,
      [{ id: 'new-password', label: 'First password', value: r.password }],
      'Pass this first password on privately. It won’t be shown again.'));
    announce(`${r.user.email} invited as ${r.user.role}.`);
  } catch (err) {
    if (err.field === 'email') {
      fieldError(email, 'invite-email-error', err.message);
    } else if (err.field === 'role') {
      fieldError(role, 'invite-role-error', err.message);
    } else {
      $('invite-error').textContent = err.message;
    }
  }
}

function fieldError(input, slot, message) {
  $(slot).textContent = message;
  input.setAttribute('aria-invalid', 'true');
  input.focus();
}

async function remove(u, opener) {
  const ok = await confirmDialog({
    title: `Remove ${u.email}?`,
    text: 'They will no longer be able to sign in. Their tokens keep working and pass to the account, where admins manage them.',
    ok: 'Remove teammate',
    danger: true,
    opener,
    fallback: $('teammates-title'),
  });
  if (!ok) {
    return;
  }
  try {
    await api('DELETE', `/v1/users/${encodeURIComponent(u.id)}`);
  } catch (err) {
    $('users-error').textContent = `${u.email} was not removed: ${err.message}`;
    $('users-error').focus();
    return;
  }
  const i = users.findIndex((x) => x.id === u.id);
  users.splice(i, 1);
  render();
  const next = document.querySelectorAll('#users-body button.remove-user')[Math.max(0, i - 1)];
  (next || $('teammates-title')).focus();
  announce(`${u.email} removed.`);
}
