// In a consult's room, the doctor who answered may invite more experts: a button in the top bar opens a short list
// of doctors online now; the server checks that the inviter answered and tells the expert (consult-invited).

import { getToken } from './auth.js';
import { errorText, t } from './i18n.js';
import './lobby-strings.js';
import { toast } from './toast.js';

const PREFIX = 'consult-';

/** @param {string} tag @param {Record<string, any>} [props] @param {...(Node|string)} children */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${getToken()}` } });
  return res.ok ? res.json() : null;
}

/**
 * Add the invite button when `room` is a consult room and `user` answered it.
 * @param {string} room @param {{username: string}|null} user @param {() => any} signaling the session's Signaling
 * @param {HTMLElement} before the top-bar element the button goes in front of
 */
export async function offerInvite(room, user, signaling, before) {
  if (!room.startsWith(PREFIX) || !user) return;
  const consultId = room.slice(PREFIX.length);
  const consult = await api(`/api/consults/${consultId}`);
  if (!consult || consult.answeredBy?.username !== user.username) return;
  const button = el('button', { type: 'button', id: 'invite', className: 'btn-ghost', textContent: t('invite.button') });
  before.before(button);
  document.addEventListener('hoichan:lang', () => { button.textContent = t('invite.button'); });
  button.addEventListener('click', () => openDialog(consult, user, signaling));
}

async function openDialog(consult, user, signaling) {
  const presence = await api('/api/presence');
  const taken = new Set([user.username, consult.caller.username]);
  const doctors = (presence?.doctors ?? []).filter((d) => !taken.has(d.username));
  const select = el('select', { name: 'username' },
    ...doctors.map((d) => el('option', { value: d.username, textContent: `${d.displayName} (${d.facility})` })));
  const send = el('button', { type: 'submit', className: 'btn-primary', textContent: t('invite.send'), disabled: !doctors.length });
  const close = el('button', { type: 'button', className: 'btn-secondary', textContent: t('invite.close') });
  const dialog = el('dialog', { className: 'invite-dialog' }, el('form', { method: 'dialog' },
    el('h2', { textContent: t('invite.title') }),
    el('label', {}, t('invite.who'), doctors.length ? select : el('p', { textContent: t('invite.nobody') })),
    el('div', { className: 'card-actions' }, send, close)));
  document.body.append(dialog);
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  send.addEventListener('click', async (e) => {
    e.preventDefault();
    const answer = await signaling().request('consult-invite', { consult: consult.id, username: select.value })
      .catch(() => ({ ok: false, error: { code: 'timeout' } }));
    if (answer.ok) toast(t('invite.sent', { name: select.selectedOptions[0].textContent }), { kind: 'success', timeoutMs: 4000 });
    else toast(errorText(answer.error.code, answer.error.message), { timeoutMs: 6000 });
    dialog.close();
  });
  dialog.showModal();
}
