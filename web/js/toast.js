// Non-blocking notifications (server errors, peers joining/leaving). They stack in a corner and expire, so a
// doctor in the middle of an examination never has to dismiss anything.

import { icons } from './icons.js';
import { t } from './i18n.js';

/** @typedef {'info'|'error'|'success'} ToastKind */

let container = /** @type {HTMLElement|null} */ (null);

function region() {
  if (!container) {
    container = document.getElementById('toasts') ?? document.body.appendChild(document.createElement('div'));
    container.id = 'toasts';
    container.className = 'toasts';
    container.setAttribute('aria-live', 'polite');
  }
  return container;
}

/**
 * @param {string} message
 * @param {{kind?: ToastKind, timeoutMs?: number, action?: {label: string, onClick: () => void}}} [opts]
 *   timeoutMs 0 = stays until closed (used for prompts that need a click, like enabling sound)
 * @returns {() => void} closes the toast
 */
export function toast(message, { kind = 'info', timeoutMs = 6000, action } = {}) {
  const el = document.createElement('div');
  el.className = `toast toast-${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  const text = document.createElement('span');
  text.className = 'toast-text';
  text.textContent = message;
  el.append(text);
  const close = () => el.remove();
  if (action) {
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'toast-action';
    btn.textContent = action.label;
    btn.addEventListener('click', () => { close(); action.onClick(); });
    el.append(btn);
  }
  const x = document.createElement('button');
  x.type = 'button';
  x.className = 'toast-close';
  x.innerHTML = icons.close;
  x.title = t('toast.close');
  x.setAttribute('aria-label', t('toast.close'));
  x.addEventListener('click', close);
  el.append(x);
  const list = region();
  list.append(el);
  // Keep the corner tidy: at most 4 visible.
  while (list.children.length > 4) list.firstElementChild?.remove();
  if (timeoutMs > 0) setTimeout(close, timeoutMs);
  return close;
}
