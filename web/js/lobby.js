// Lobby page. A district (or commune, provincial) doctor calls a specialist and follows each request live; a
// central hospital's doctor goes on duty, hears incoming calls and accepts or declines them. Accepting, or having
// one's call accepted, leads both doctors into the consult's room. The server decides everything (who is rung,
// who wins); this page shows what it is told. window.hoichanLobby is the test contract.

import { getToken, loginUrl, signOut, whoAmI } from './auth.js';
import { applyI18n, errorText, getLang, initLangToggle, t } from './i18n.js';
import './lobby-strings.js';
import { Ringer } from './ringer.js';
import { Signaling } from './signaling.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const POINT_KEY = 'hoichan.point';

/** @param {string} tag @param {Record<string, any>} [props] @param {...(Node|string)} children */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const ringer = new Ringer();
/** @type {Map<string, any>} consult id → its latest state */
const consults = new Map();
/** @type {Map<string, any>} consult id → invitation */
const invitations = new Map();
let clockOffset = 0; // server clock − this clock, ms
let user = /** @type {any} */ (null);
let directory = /** @type {any} */ (null);
let signaling = /** @type {Signaling|null} */ (null);
let onDuty = false;
let presence = /** @type {Record<string, number>} */ ({});
let leaving = false;

// @ts-ignore
window.hoichanLobby = {
  get consults() { return [...consults.values()]; },
  get ringing() { return ringer.ringing; },
  get audio() { return ringer.ctx?.state ?? 'none'; },
  get onDuty() { return onDuty; },
  get connected() { return signaling?.connected ?? false; },
};

initLangToggle($('lang-toggle'));
applyI18n();
document.addEventListener('hoichan:lang', () => { renderStatic(); render(); });
// Any click or key is a gesture that lets the ring sound.
for (const kind of ['click', 'keydown']) document.addEventListener(kind, () => { ringer.unlock(); render(); });
$('sign-out').addEventListener('click', () => { signOut(); location.assign(loginUrl('/lobby')); });

main();

async function main() {
  const who = await whoAmI();
  if (!who.user) {
    location.replace(loginUrl('/lobby'));
    return;
  }
  user = who.user;
  $('lobby-user').textContent = `${user.displayName} · ${t(`role.${user.role}`)}`;
  const res = await fetch('/api/directory', { headers: { Authorization: `Bearer ${getToken()}` } });
  if (!res.ok) {
    message(errorText((await res.json().catch(() => ({})))?.error?.code, res.statusText));
    return;
  }
  directory = await res.json();
  const facility = facilityOf(user.facility);
  if (!facility) message(t('lobby.unknownFacility', { facility: user.facility }));
  const central = facility?.tier === 'central';
  $('district').hidden = !(user.role === 'doctor' && facility && !central);
  $('central').hidden = !(user.role === 'doctor' && central);
  if (user.role !== 'doctor') message(t('lobby.staffOnly'));
  renderStatic();
  $('call-form').addEventListener('submit', onCall);
  $('specialty').addEventListener('change', renderTargets);
  $('duty').addEventListener('click', () => request('duty', { onDuty: !onDuty }).then((a) => {
    if (a.ok) setDuty(a.onDuty);
  }));
  $('point').addEventListener('change', () => {
    localStorage.setItem(POINT_KEY, /** @type {HTMLSelectElement} */ ($('point')).value);
    enter();
  });
  connect();
  window.setInterval(render, 1000); // the "ringing for 12 s" counters
  document.body.dataset.state = 'ready';
}

function facilityOf(id) {
  return directory?.facilities.find((f) => f.id === id) ?? null;
}

function specialtyName(code) {
  const s = directory?.specialties.find((x) => x.code === code);
  return s ? (getLang() === 'vi' ? s.name : s.nameEn) : code;
}

function message(text) {
  $('lobby-message').textContent = text ?? '';
  $('lobby-message').hidden = !text;
}

// ------------------------------------------------------------------------------------------ connection

function connect() {
  signaling = new Signaling({
    onConnect: () => { message(null); enter(); },
    onDisconnect: () => { if (!leaving) message(t('lobby.disconnected')); },
    onConnectError: (err) => {
      if (/** @type {any} */ (err).data?.code === 'unauthorized') location.replace(loginUrl('/lobby'));
    },
  }, getToken());
  signaling.on('consult-state', (state) => { keep(state); render(); follow(state); });
  signaling.on('consult-invited', (state) => { keep(state); invitations.set(state.id, state); render(); });
  signaling.on('presence', (p) => { presence = p.onDuty; renderPresence(); });
  signaling.on('duty', (d) => setDuty(d.onDuty));
  signaling.connect();
}

async function enter() {
  const point = /** @type {HTMLSelectElement} */ ($('point')).value || undefined;
  const answer = await request('lobby-enter', point ? { point } : {});
  if (!answer.ok) return;
  for (const state of answer.consults) keep(state);
  presence = answer.presence;
  setDuty(answer.onDuty);
  renderPresence();
  render();
}

/** @param {string} event @param {object} payload */
async function request(event, payload) {
  try {
    const answer = await /** @type {Signaling} */ (signaling).request(event, payload);
    if (!answer.ok) message(errorText(answer.error.code, answer.error.message));
    return answer;
  } catch {
    message(errorText('timeout'));
    return { ok: false };
  }
}

function keep(state) {
  clockOffset = Date.parse(state.now) - Date.now();
  consults.set(state.id, state);
}

/** An accepted call (mine, as caller or as the doctor who accepted) takes this tab into its room. */
function follow(state) {
  const mine = state.caller.username === user.username || state.answeredBy?.username === user.username;
  if (state.state === 'answered' && mine && state.room && !leaving) {
    leaving = true;
    message(t('lobby.goingToRoom'));
    window.setTimeout(() => location.assign(`/room/${state.room}`), 600);
  }
}

function setDuty(value) {
  onDuty = value;
  render();
}

// ---------------------------------------------------------------------------------------------- district

function renderStatic() {
  if (!directory) return;
  const specialty = /** @type {HTMLSelectElement} */ ($('specialty'));
  const chosen = specialty.value;
  specialty.replaceChildren(...directory.specialties
    .filter((s) => directory.facilities.some((f) => f.tier === 'central' && f.specialties.includes(s.code)))
    .map((s) => el('option', { value: s.code, textContent: specialtyLabel(s.code) })));
  if (chosen) specialty.value = chosen;
  renderTargets();
  const point = /** @type {HTMLSelectElement} */ ($('point'));
  const stored = localStorage.getItem(POINT_KEY) ?? '';
  const points = directory.points.filter((p) => p.facility === user.facility);
  point.replaceChildren(el('option', { value: '', textContent: t('lobby.noPoint') }),
    ...points.map((p) => el('option', { value: p.id, textContent: p.label })));
  point.value = points.some((p) => p.id === stored) ? stored : '';
}

function specialtyLabel(code) {
  const count = presence[code] ?? 0;
  return count ? t('lobby.onDutyCount', { name: specialtyName(code), count }) : specialtyName(code);
}

function renderTargets() {
  const code = /** @type {HTMLSelectElement} */ ($('specialty')).value;
  const partners = facilityOf(user.facility)?.partners ?? [];
  const hospitals = directory.facilities.filter((f) => f.tier === 'central' && f.specialties.includes(code));
  hospitals.sort((a, b) => rank(a.id) - rank(b.id));
  function rank(id) { const i = partners.indexOf(id); return i < 0 ? 1000 : i; }
  const target = /** @type {HTMLSelectElement} */ ($('target'));
  target.replaceChildren(el('option', { value: '', textContent: t('lobby.targetPartners') }),
    ...hospitals.map((f) => el('option', {
      value: f.id, textContent: partners.includes(f.id) ? t('lobby.partner', { name: f.name }) : f.name,
    })));
}

async function onCall(e) {
  e.preventDefault();
  const form = /** @type {HTMLFormElement} */ ($('call-form'));
  const data = new FormData(form);
  const summary = String(data.get('summary') ?? '').trim();
  const error = $('call-error');
  if (!summary) {
    error.textContent = t('lobby.missingSummary');
    error.hidden = false;
    $('summary').focus();
    return;
  }
  error.hidden = true;
  const payload = { specialty: data.get('specialty'), urgency: data.get('urgency'), summary };
  if (data.get('target')) payload.target = data.get('target');
  const point = /** @type {HTMLSelectElement} */ ($('point')).value;
  if (point) payload.point = point;
  /** @type {HTMLButtonElement} */ ($('call')).disabled = true;
  const answer = await request('consult-request', payload);
  /** @type {HTMLButtonElement} */ ($('call')).disabled = false;
  if (answer.ok) {
    keep(answer.consult);
    /** @type {HTMLTextAreaElement} */ ($('summary')).value = '';
    render();
  } else {
    error.textContent = errorText(answer.error?.code, answer.error?.message);
    error.hidden = false;
  }
}

// ------------------------------------------------------------------------------------------------ render

const seconds = (iso) => Math.max(0, Math.round((Date.now() + clockOffset - Date.parse(iso)) / 1000));
const until = (iso) => Math.max(0, Math.round((Date.parse(iso) - Date.now() - clockOffset) / 1000));
const timeOf = (iso) => new Date(iso).toLocaleTimeString(getLang() === 'vi' ? 'vi-VN' : 'en-GB');

function badge(urgency) {
  return el('span', { className: `badge urgency-${urgency}`, textContent: t(`urgency.${urgency}`) });
}

function render() {
  if (!user || !directory) return;
  const mine = [...consults.values()].filter((c) => c.caller.username === user.username)
    .sort((a, b) => b.requestedAt.localeCompare(a.requestedAt));
  $('requests').replaceChildren(...mine.map(requestCard));
  $('requests-empty').hidden = mine.length > 0;

  const calls = [...consults.values()].filter((c) => {
    const ring = c.rings.find((r) => r.username === user.username);
    return ring && (ring.status === 'ringing' || (c.state !== 'ringing' && seconds(c.closedAt ?? c.now) < 8));
  }).sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
  $('calls').replaceChildren(...calls.map(callCard));
  $('calls-empty').hidden = calls.length > 0;

  $('invitations').replaceChildren(...[...invitations.values()].map(invitationCard));
  $('invitations').hidden = invitations.size === 0;

  const duty = $('duty');
  duty.textContent = t(onDuty ? 'lobby.onDuty' : 'lobby.offDuty');
  duty.setAttribute('aria-pressed', String(onDuty));
  $('duty-hint').textContent = onDuty
    ? t('lobby.onDutyHint', { specialties: (user.specialties ?? []).map(specialtyName).join(', ') })
    : t('lobby.offDutyHint');

  const ringingNow = calls.some((c) => c.state === 'ringing');
  if (ringingNow) ringer.start(); else ringer.stop();
  document.body.dataset.ringing = String(ringingNow);
  $('sound-hint').hidden = !(onDuty && ringer.blocked);
  $('sound-hint').textContent = t('lobby.soundHint');
}

function requestCard(c) {
  const card = el('article', { className: `consult-card state-${c.state}` });
  card.dataset.consult = c.id;
  card.dataset.state = c.state;
  card.append(el('header', {}, badge(c.urgency), el('strong', { textContent: specialtyName(c.specialty) }),
    el('span', { className: 'consult-state', textContent: t(`state.${c.state}`) })));
  card.append(el('p', { className: 'consult-summary', textContent: c.summary }));
  if (c.state === 'ringing') {
    const left = c.waveEndsAt ? until(c.waveEndsAt) : 0;
    card.append(el('p', { className: 'admin-note', textContent: `${t('lobby.wave', { wave: c.wave, waves: c.waves })}, ${
      t(c.wave === c.waves ? 'lobby.lastWave' : 'lobby.nextWave', { seconds: left })}` }));
    const rings = c.rings.filter((r) => r.status === 'ringing');
    card.append(rings.length
      ? el('ul', { className: 'ring-list' }, ...rings.map((r) => el('li', {
        textContent: `${r.name} (${r.facilityName}) — ${t('lobby.ringingFor', { seconds: seconds(r.since) })}`,
      })))
      : el('p', { className: 'admin-note', textContent: t('lobby.nobodyRinging') }));
    const cancel = el('button', { type: 'button', className: 'btn-secondary', textContent: t('lobby.cancel') });
    cancel.dataset.action = 'cancel';
    cancel.addEventListener('click', () => request('consult-cancel', { consult: c.id }).then((a) => {
      if (a.ok) { keep(a.consult); render(); }
    }));
    card.append(el('div', { className: 'card-actions' }, cancel));
  } else if (c.state === 'answered') {
    card.append(el('p', { textContent: t('lobby.answeredBy', {
      name: c.answeredBy.name, facility: c.answeredBy.facilityName, seconds: Math.round(c.answerSeconds),
    }) }));
    card.append(el('a', { className: 'btn-primary', href: `/room/${c.room}`, textContent: t('lobby.join') }));
  }
  card.append(el('p', { className: 'admin-note', textContent: t('lobby.requestedAgo', { time: timeOf(c.requestedAt) }) }));
  return card;
}

function callCard(c) {
  const card = el('article', { className: `consult-card call-card urgency-${c.urgency}` });
  card.dataset.consult = c.id;
  card.dataset.state = c.state;
  const ring = c.rings.find((r) => r.username === user.username);
  card.append(el('header', {}, badge(c.urgency), el('strong', { textContent: specialtyName(c.specialty) }),
    el('span', { className: 'consult-state', textContent: t('lobby.ringingFor', { seconds: seconds(ring.since) }) })));
  card.append(el('p', { className: 'consult-caller', textContent: t('lobby.from', {
    name: c.caller.name, facility: `${c.caller.facilityName}, ${provinceName(c.caller.province)}` }) }));
  card.append(el('p', { className: 'consult-summary', textContent: c.summary }));
  if (c.state === 'ringing') {
    const accept = el('button', { type: 'button', className: 'btn-primary btn-large', textContent: t('lobby.accept') });
    accept.dataset.action = 'accept';
    const decline = el('button', { type: 'button', className: 'btn-secondary', textContent: t('lobby.decline') });
    decline.dataset.action = 'decline';
    accept.addEventListener('click', () => request('consult-accept', { consult: c.id }).then((a) => {
      if (a.ok) { keep(a.consult); follow(a.consult); }
      render();
    }));
    decline.addEventListener('click', () => request('consult-decline', { consult: c.id }).then((a) => {
      if (a.ok) keep(a.consult);
      render();
    }));
    card.append(el('div', { className: 'card-actions' }, accept, decline));
  } else if (c.state === 'answered' && c.answeredBy.username !== user.username) {
    card.append(el('p', { className: 'admin-note', textContent: t('lobby.takenBy', { name: c.answeredBy.name }) }));
  } else {
    card.append(el('p', { className: 'admin-note', textContent: t(`state.${c.state}`) }));
  }
  return card;
}

function invitationCard(c) {
  const card = el('article', { className: 'consult-card invitation-card' });
  card.dataset.consult = c.id;
  card.append(el('header', {}, badge(c.urgency), el('strong', { textContent: t('lobby.invited', { by: c.invitedBy }) })));
  card.append(el('p', { className: 'consult-summary', textContent: `${specialtyName(c.specialty)}: ${c.summary}` }));
  card.append(el('a', { className: 'btn-primary', href: `/room/${c.room}`, textContent: t('lobby.join') }));
  return card;
}

function provinceName(id) {
  return directory.provinces.find((p) => p.id === id)?.name ?? id;
}

async function renderPresence() {
  const entries = Object.entries(presence);
  $('on-duty').replaceChildren(...entries.map(([code, n]) => el('li', { textContent: `${specialtyName(code)}: ${n}` })));
  if (!entries.length) $('on-duty').append(el('li', { className: 'admin-empty', textContent: t('lobby.nobodyOnDuty') }));
  const specialty = /** @type {HTMLSelectElement} */ ($('specialty'));
  for (const option of specialty.options) option.textContent = specialtyLabel(option.value);
  const res = await fetch('/api/presence', { headers: { Authorization: `Bearer ${getToken()}` } }).catch(() => null);
  if (res?.ok) $('points-online').textContent = t('lobby.pointsOnline', { count: (await res.json()).points.length });
}
