// Sign-in page: username + password → token in sessionStorage → back to `?next=` (a path on this server) or `/`.

import { safeNext, signIn } from './auth.js';
import { applyI18n, initLangToggle, t } from './i18n.js';

const form = /** @type {HTMLFormElement} */ (document.getElementById('login-form'));
const username = /** @type {HTMLInputElement} */ (form.elements.namedItem('username'));
const password = /** @type {HTMLInputElement} */ (form.elements.namedItem('password'));
const error = /** @type {HTMLElement} */ (document.getElementById('login-error'));
const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));

initLangToggle(document.getElementById('lang-toggle'));
applyI18n();
username.focus();

/** The last error shown, as [key, params], so a language switch re-renders it. */
let shown = null;

/** @param {string|null} key @param {Record<string, string|number>} [params] */
function showError(key, params) {
  shown = key ? [key, params] : null;
  error.hidden = !key;
  error.textContent = key ? t(key, params) : '';
}

document.addEventListener('hoichan:lang', () => showError(...(shown ?? [null])));

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!username.value.trim() || !password.value) {
    showError('login.missing');
    (username.value.trim() ? password : username).focus();
    return;
  }
  submit.disabled = true;
  const result = await signIn(username.value.trim(), password.value);
  submit.disabled = false;
  if (result.ok) {
    location.replace(safeNext(new URLSearchParams(location.search).get('next')));
    return;
  }
  password.value = '';
  password.focus();
  if (result.code === 'too-many-attempts') showError('login.throttled', { seconds: result.retryAfter || 30 });
  else if (result.code === 'unauthorized') showError('login.wrong');
  else showError('login.failed');
});
