// The Tollgate console: sign in, then the API Tokens and Teammates pages.
// No framework and no build step: plain modules served as they are.

import { forgetUser, initAccount, showAdminControls } from './account.js';
import { loadAlerts } from './alerts.js';
import { api, APIError, onSessionEnd, setCSRF } from './api.js';
import { initEditor, keepDraft, restoreDraft } from './edit.js';
import { announce } from './dom.js';
import { state } from './state.js';
import { initTeammates, loadTeammates } from './teammates.js';
import { initTokens, loadTokens, replaceToken, showNewToken } from './tokens.js';

const $ = (id) => document.getElementById(id);
const PAGES = ['page-signin', 'page-tokens', 'page-teammates'];

function show(page) {
  $('loading').hidden = true;
  for (const id of PAGES) {
    $(id).hidden = id !== page;
  }
  const signedIn = page !== 'page-signin';
  $('nav').hidden = !signedIn;
  $('who').hidden = !signedIn;
}

function signedIn(user, admin, csrf) {
  state.user = user;
  state.admin = admin;
  setCSRF(csrf);
  $('who-email').textContent = `${user.email}${admin ? ' (admin)' : ''}`;
  showAdminControls();
}

function showSignIn(message, { sessionEnded = false } = {}) {
  // An edit in progress when the session ends is kept for the same user.
  const kept = sessionEnded && keepDraft();
  state.user = null;
  state.account = null;
  state.admin = false;
  state.tokens = [];
  state.usage.clear();
  setCSRF('');
  for (const d of document.querySelectorAll('dialog[open]')) {
    d.close();
  }
  forgetUser({ forms: !sessionEnded });
  showAdminControls();
  show('page-signin');
  document.title = 'Sign in — Tollgate';
  $('signin-error').textContent = kept ? `${message} Your unsaved changes will be waiting.` : (message || '');
  $('signin-email').focus();
}

/** Shows the page the address names; focus moves to its heading when asked. */
async function route(focus) {
  if (!state.user) {
    return;
  }
  const teammates = location.hash === '#/teammates';
  for (const [id, on] of [['nav-tokens', !teammates], ['nav-teammates', teammates]]) {
    if (on) {
      $(id).setAttribute('aria-current', 'page');
    } else {
      $(id).removeAttribute('aria-current');
    }
  }
  if (teammates) {
    show('page-teammates');
    document.title = 'Teammates — Tollgate';
    if (focus) {
      $('teammates-title').focus();
    }
    await loadTeammates();
  } else {
    show('page-tokens');
    document.title = 'API Tokens — Tollgate';
    if (focus) {
      $('tokens-title').focus();
    }
    await loadTokens();
    await loadAlerts();
  }
}

async function signIn(e) {
  e.preventDefault();
  const email = $('signin-email');
  const password = $('signin-password');
  const error = $('signin-error');
  error.textContent = '';
  for (const input of [email, password]) {
    input.removeAttribute('aria-invalid');
  }
  if (email.value.trim() === '' || password.value === '') {
    const missing = email.value.trim() === '' ? email : password;
    missing.setAttribute('aria-invalid', 'true');
    error.textContent = 'Enter your email and your password.';
    missing.focus();
    return;
  }
  const button = $('signin-submit');
  button.disabled = true;
  try {
    const r = await api('POST', '/v1/session', { email: email.value.trim(), password: password.value });
    password.value = '';
    signedIn(r.user, r.user.role === 'admin', r.csrf_token);
    announce(`Signed in as ${r.user.email}.`);
    await route(true);
    restoreDraft();
  } catch (err) {
    error.textContent = err.status === 401 ? 'The email or the password is wrong.' : err.message;
    password.setAttribute('aria-invalid', 'true');
    password.focus();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api('DELETE', '/v1/session');
  } catch (err) {
    // The session is over either way.
  }
  showSignIn('');
  announce('Signed out.');
}

async function start() {
  initTokens();
  initEditor({ saved: replaceToken, created: showNewToken });
  initTeammates();
  initAccount();
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => route(true));
  // An ended session sends every page back to sign in.
  onSessionEnd(() => {
    if (state.user) {
      showSignIn('Your session has ended. Sign in again.', { sessionEnded: true });
    }
  });
  try {
    const who = await api('GET', '/v1/session');
    if (!who.user) {
      // The secret token acts without a user; the console is for people.
      showSignIn('');
      return;
    }
    signedIn(who.user, who.admin, who.csrf_token);
    await route(false);
  } catch (err) {
    showSignIn(err instanceof APIError && err.status === 401 ? '' : err.message);
  }
}

start();
