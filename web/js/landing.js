// Start page: room id, name, facility → /room/<id>?name=…&facility=…  Name and facility are remembered.

import { applyI18n, initLangToggle } from './i18n.js';
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
    [name, isValidName(values.name)],
    [facility, isValidFacility(values.facility)],
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
  saveProfile({ name: values.name, facility: values.facility, room: values.room });
  const record = /** @type {HTMLInputElement} */ (form.elements.namedItem('record')).checked;
  location.assign(roomUrl(values.room, values.name, values.facility, record));
});
