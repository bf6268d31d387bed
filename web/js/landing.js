// Start page: room id, name, facility → /room/<id>?name=…&facility=…  Name and facility are remembered.
// Signed in, only the room is asked: name and facility are the account's. The header shows who is signed in.

import { signOut, whoAmI } from './auth.js';
import { applyI18n, initLangToggle, t } from './i18n.js';
import {
  isValidFacility, isValidName, isValidRoomId, loadProfile, randomRoomId, roomUrl, saveProfile,
} from './params.js';

const form = /** @type {HTMLFormElement} */ (document.getElementById('landing-form'));
const room = /** @type {HTMLInputElement} */ (form.elements.namedItem('room'));
const name = /** @type {HTMLInputElement} */ (form.elements.namedItem('name'));
const facility = /** @type {HTMLInputElement} */ (form.elements.namedItem('facility'));

initLangToggle(document.getElementById('lang-toggle'));
applyI18n();

const profile = loadProfile();
// A shared link like /?room=abc fills the room; name and facility come from last time.
room.value = new URLSearchParams(location.search).get('room') ?? '';
name.value = profile.name;
facility.value = profile.facility;
(([room, name].find((el) => !el.value)) ?? room).focus();

/** @type {import('./auth.js').User|null} */
let user = null;

/** Header and form for the current sign-in (re-run on a language switch). */
function renderAccount() {
  const label = /** @type {HTMLElement} */ (document.getElementById('account-user'));
  label.hidden = !user;
  label.textContent = user ? `${t('auth.signedInAs', { name: user.displayName })} · ${t(`role.${user.role}`)}` : '';
  document.getElementById('sign-in').hidden = !!user;
  document.getElementById('lobby-link').hidden = !user;
  document.getElementById('points-link').hidden = !user;
  document.getElementById('sign-out').hidden = !user;
  for (const el of form.querySelectorAll('.guest-only')) /** @type {HTMLElement} */ (el).hidden = !!user;
  const joinAs = /** @type {HTMLElement} */ (document.getElementById('join-as'));
  joinAs.hidden = !user;
  joinAs.textContent = user ? t('auth.joinAs', { name: user.displayName, facility: user.facility }) : '';
}

document.getElementById('sign-out').addEventListener('click', () => {
  signOut();
  user = null;
  renderAccount();
});
document.addEventListener('hoichan:lang', renderAccount);
whoAmI().then((who) => {
  user = who.user;
  renderAccount();
});

document.getElementById('room-generate').addEventListener('click', () => {
  room.value = randomRoomId();
  showError(room, false);
  name.focus();
});

/** @param {HTMLInputElement} input @param {boolean} show */
function showError(input, show) {
  const error = /** @type {HTMLElement} */ (input.closest('.field').querySelector('.field-error'));
  error.hidden = !show;
  input.setAttribute('aria-invalid', String(show));
}

for (const input of [room, name, facility]) input.addEventListener('input', () => showError(input, false));

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const values = { room: room.value.trim(), name: name.value.trim(), facility: facility.value.trim() };
  const checks = [
    [room, isValidRoomId(values.room)],
    [name, !!user || isValidName(values.name)],
    [facility, !!user || isValidFacility(values.facility)],
  ];
  // Empty and malformed room ids get different advice.
  const roomError = /** @type {HTMLElement} */ (room.closest('.field').querySelector('.field-error'));
  roomError.dataset.i18n = values.room ? 'form.errorRoom' : 'form.errorRoomEmpty';
  applyI18n(form);
  for (const [input, ok] of checks) showError(/** @type {HTMLInputElement} */ (input), !ok);
  const firstBad = checks.find(([, ok]) => !ok);
  if (firstBad) {
    /** @type {HTMLInputElement} */ (firstBad[0]).focus();
    return;
  }
  const record = /** @type {HTMLInputElement} */ (form.elements.namedItem('record')).checked;
  if (user) { // the account's name and facility are used: the URL needs neither
    location.assign(roomUrl(values.room, '', '', record));
    return;
  }
  saveProfile({ name: values.name, facility: values.facility, room: values.room });
  location.assign(roomUrl(values.room, values.name, values.facility, record));
});
