// Room page: wires local media, the session (protocol) and the DOM (tiles, banner, controls, overlays) together,
// and publishes window.hoichan for automated tests.

import { adoptTokenFromUrl, getToken, guestsAllowed, loginUrl, whoAmI } from './auth.js';
import { applyI18n, errorText, initLangToggle, t } from './i18n.js';
import { icons } from './icons.js';
import { LocalMedia } from './media.js';
import { isValidFacility, isValidName, isValidRoomId, loadProfile, roomIdFromPath, saveProfile } from './params.js';
import { Session } from './session.js';
import { SharedPanel } from './sharing.js';
import { Tile, TileGrid } from './tiles.js';
import { Banner } from './banner.js';
import { offerInvite } from './consult-invite.js';
import { toast } from './toast.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const POINT_KEY = 'hoichan.point'; // set by the lobby page (lobby.js)

/** @type {Session|null} */
let session = null;

// Test contract (see web/README.md): always reflects the live objects.
const hoichan = {
  get pc() { return session?.pc ?? null; },
  get state() { return session?.state ?? document.body.dataset.state ?? 'connecting'; },
  get participantId() { return session?.participantId ?? null; },
  get peers() { return session?.peers ?? {}; },
  get room() { return roomId; },
  get session() { return session; },
  get socket() { return session?.signaling.socket ?? null; },
  get localStream() { return media.stream; },
  get shared() { return shared?.items ?? []; },
};

/** @type {SharedPanel|null} */
let shared = null;
// @ts-ignore
window.hoichan = hoichan;

initLangToggle($('lang-toggle'));
applyI18n();
$('copy-link').querySelector('.copy-icon').innerHTML = icons.link;

const banner = new Banner($('banner'), () => session?.retry());

adoptTokenFromUrl(); // before anything reads the URL: a link may carry a sign-in as ?token=
const roomId = roomIdFromPath();
const media = new LocalMedia();

if (!roomId || !isValidRoomId(roomId)) {
  $('invalid-overlay').hidden = false;
  banner.set('failed');
} else {
  main(roomId);
}

/** @param {string} room */
async function main(room) {
  $('room-id').textContent = room;
  document.title = `${room} · Hoichan`;

  // Who joins: the signed-in account (name and facility are the account's), else a guest if the server allows.
  const who = await whoAmI();
  if (who.state === 'rejected' || (who.state === 'none' && !(await guestsAllowed()))) {
    showSignIn(who.state === 'rejected' ? 'auth.expired' : 'auth.required');
    return;
  }

  // Self view and controls work before joining, so the doctor can check the camera while typing a name.
  const selfTile = new Tile({ local: true });
  $('self-view').append(selfTile.el);
  const grid = new TileGrid($('grid'), {
    onAutoplayBlocked: () => toast(t('audio.unlock'), {
      timeoutMs: 0, action: { label: t('audio.unlock'), onClick: () => grid.unlockAudio() },
    }),
    onCountChange: (n) => {
      $('stage').dataset.count = String(n);
      $('empty').hidden = n > 0;
    },
  });
  // Any click is a user gesture that lets audio play.
  document.addEventListener('click', () => { if (grid.audioBlocked) grid.unlockAudio(); });

  const renderSelf = () => {
    selfTile.setInfo({
      name: session?.self?.name ?? session?.name ?? '',
      facility: session?.self?.facility ?? session?.facility ?? '',
      facilityName: session?.self?.facilityName,
      audioMuted: media.audioMuted,
      videoOff: media.videoOff,
      limits: session?.self?.limits,
      placeholderKey: media.hasLive('video') ? undefined : 'control.noCamera',
    });
  };
  media.addEventListener('change', () => { renderSelf(); renderControls(); });
  media.addEventListener('device-lost', (e) => {
    toast(t(e.detail.kind === 'video' ? 'media.cameraLost' : 'media.micLost'), { kind: 'error' });
  });
  document.addEventListener('hoichan:lang', () => { renderSelf(); renderControls(); renderMediaNotice(); });
  wireControls();
  renderControls();

  media.acquire().then(() => {
    selfTile.setLocalStream(media.stream);
    renderSelf();
    renderMediaNotice();
  });

  const params = new URLSearchParams(location.search);
  let name = who.user?.displayName ?? '';
  let facility = who.user?.facility ?? '';
  if (who.state === 'none') {
    name = (params.get('name') ?? '').trim();
    facility = (params.get('facility') ?? '').trim();
    if (!isValidName(name) || !isValidFacility(facility)) {
      ({ name, facility } = await askForName(room, name, facility));
    }
    saveProfile({ name, facility, room });
  }

  const record = params.get('record') === '1' ? true : null;
  // The connection point the lobby page at this PC was set to (staff only): the point's caps apply to us.
  const point = who.state === 'valid' ? localStorage.getItem(POINT_KEY) || null : null;
  session = new Session({ room, name, facility, token: getToken(), localMedia: media, record, point });
  const s = session;
  shared = new SharedPanel({ room, token: getToken(), signaling: s.signaling, selfId: () => s.participantId });
  wireSharing(shared, who.state !== 'none');
  renderSelf();
  wireSession(session, grid, renderSelf, selfTile);
  addEventListener('pagehide', () => session?.leaveNow());
  session.start();
  offerInvite(room, who.user, () => session?.signaling, $('lang-toggle'));
}

/** @param {Session} s @param {TileGrid} grid @param {() => void} renderSelf @param {Tile} selfTile */
function wireSession(s, grid, renderSelf, selfTile) {
  s.addEventListener('adaptation', (e) => grid.setAdaptation(e.detail));
  s.addEventListener('self-updated', () => { renderSelf(); renderControls(); });
  s.addEventListener('link-quality', (e) => {
    if (e.detail.participantId === s.self?.id) selfTile.setLinkQuality(e.detail);
    else grid.setLinkQuality(e.detail);
  });
  s.addEventListener('state', (e) => {
    const { state, failure } = e.detail;
    banner.set(state, failure);
    if (state === 'left') {
      grid.reset([]);
      showLeft();
    } else if (state === 'failed' && (failure?.reason === 'auth' ||
        (failure?.reason === 'join' && failure?.code === 'unauthorized'))) { // e.g. a scheduled room, as a guest
      showSignIn(getToken() ? 'auth.expired' : 'auth.required');
    }
  });
  s.addEventListener('joined', (e) => {
    if (!e.detail.resumed) shared?.load();
    grid.reset(Object.values(e.detail.peers));
    renderSelf(); // the server's word on our name and facility (a signed-in account's own)
  });
  s.addEventListener('peer-joined', (e) => {
    grid.upsert(e.detail.peer);
    if (e.detail.announce) toast(t('peer.joined', { name: e.detail.peer.name }), { kind: 'success', timeoutMs: 4000 });
  });
  s.addEventListener('peer-updated', (e) => grid.upsert(e.detail.peer));
  s.addEventListener('peer-left', (e) => {
    grid.remove(e.detail.id);
    if (e.detail.announce) toast(t('peer.left', { name: e.detail.peer.name }), { timeoutMs: 4000 });
  });
  s.addEventListener('remote-media', (e) => grid.setMedia(e.detail.media));
  s.addEventListener('server-error', (e) => {
    const { code, message, event } = e.detail;
    if (event === 'share-vitals' || event === 'annotate') return; // the shared panel and the vitals form say it
    toast(errorText(code, message), { kind: 'error' });
  });
  s.addEventListener('client-error', (e) => {
    console.error('client error', e.detail);
    toast(errorText(e.detail.code, e.detail.message), { kind: 'error' });
  });
  s.addEventListener('notice', (e) => toast(t(e.detail.key)));
  // A scheduled session of ours opened (protocol.md ScheduledSession): one click to go there.
  s.signaling.on('scheduled-session', (p) => {
    if (!p?.url || p.room === s.room) return;
    toast(t('schedule.opened', { title: p.title }), {
      timeoutMs: 0, action: { label: t('schedule.join'), onClick: () => location.assign(p.url) },
    });
  });
  s.addEventListener('recording', (e) => {
    $('recording').hidden = !e.detail.active;
    if (e.detail.stopped && e.detail.error) {
      toast(t('recording.failed', { reason: e.detail.error }), { kind: 'error', timeoutMs: 0 });
    }
  });
}

/**
 * Share buttons (signed-in participants: what they share goes into the record under their name) and the vitals form.
 * @param {SharedPanel} panel @param {boolean} signedIn
 */
function wireSharing(panel, signedIn) {
  const imageButton = $('btn-share-image');
  const vitalsButton = $('btn-vitals');
  const input = /** @type {HTMLInputElement} */ ($('share-image-input'));
  imageButton.hidden = vitalsButton.hidden = !signedIn;
  imageButton.querySelector('.control-icon').innerHTML = icons.image;
  vitalsButton.querySelector('.control-icon').innerHTML = icons.vitals;
  imageButton.addEventListener('click', () => input.click());
  const panelButton = $('btn-shared');
  panelButton.querySelector('.control-icon').innerHTML = icons.folder;
  panelButton.addEventListener('click', () => panel.toggle());
  panel.onChange = (count, open) => {
    panelButton.hidden = count === 0;
    panelButton.setAttribute('aria-pressed', String(open));
    panelButton.querySelector('.control-count').textContent = String(count);
  };
  input.addEventListener('change', () => {
    const file = input.files?.[0];
    input.value = '';
    if (file) panel.uploadImage(file);
  });

  const overlay = $('vitals-overlay');
  const form = /** @type {HTMLFormElement} */ ($('vitals-form'));
  const error = $('vitals-error');
  const close = () => { overlay.hidden = true; error.hidden = true; };
  vitalsButton.addEventListener('click', () => {
    overlay.hidden = false;
    /** @type {HTMLInputElement} */ (form.elements.namedItem('heartRate')).focus();
  });
  $('vitals-cancel').addEventListener('click', close);
  overlay.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    /** @type {Record<string, number>} */
    const values = {};
    for (const el of form.querySelectorAll('input')) {
      const text = el.value.trim().replace(',', '.');
      if (text === '') continue;
      const value = Number(text);
      if (!Number.isFinite(value)) {
        error.textContent = t('vitals.notANumber');
        error.hidden = false;
        return el.focus();
      }
      values[el.name] = el.name === 'temperature' ? value : Math.round(value);
    }
    if (Object.keys(values).length === 0) {
      error.textContent = t('vitals.empty');
      error.hidden = false;
      return;
    }
    const result = await panel.sendVitals(values);
    if (result.ok) {
      form.reset();
      close();
    } else {
      error.textContent = result.message ?? t('error.unknown');
      error.hidden = false;
    }
  });
}

function wireControls() {
  $('btn-mic').addEventListener('click', () => media.setAudioMuted(!media.audioMuted));
  $('btn-cam').addEventListener('click', () => media.setVideoOff(!media.videoOff));
  $('btn-audio-only').addEventListener('click', () => session?.setAudioOnly(!session.self?.audioOnlySelf));
  $('btn-leave').addEventListener('click', async () => {
    if (!session) {
      location.assign('/');
      return;
    }
    await session.leave();
  });
  $('btn-rejoin').addEventListener('click', () => location.reload());
  $('btn-leave').querySelector('.control-icon').innerHTML = icons.leave;
  $('copy-link').addEventListener('click', copyLink);
}

function renderControls() {
  const mic = $('btn-mic');
  const cam = $('btn-cam');
  const hasMic = media.hasLive('audio');
  const hasCam = media.hasLive('video');
  setControl(mic, {
    disabled: !hasMic,
    pressed: media.audioMuted,
    icon: media.audioMuted ? icons.micOff : icons.mic,
    label: !hasMic ? t('control.noMic') : media.audioMuted ? t('control.unmute') : t('control.mute'),
  });
  setControl(cam, {
    disabled: !hasCam,
    pressed: media.videoOff,
    icon: media.videoOff ? icons.cameraOff : icons.camera,
    label: !hasCam ? t('control.noCamera') : media.videoOff ? t('control.cameraOn') : t('control.cameraOff'),
  });
  // Our own switch; a point's audio-only cap holds it on (and the button cannot lift it).
  const self = session?.self;
  const audioOnly = $('btn-audio-only');
  audioOnly.hidden = !self;
  setControl(audioOnly, {
    disabled: !!self?.limits?.audioOnly && !self?.audioOnlySelf,
    pressed: !!self?.limits?.audioOnly,
    icon: icons.speaker,
    label: self?.audioOnlySelf ? t('control.audioOnlyOff') : t('control.audioOnly'),
  });
}

/**
 * @param {HTMLElement} button
 * @param {{disabled: boolean, pressed: boolean, icon: string, label: string}} s
 */
function setControl(button, s) {
  /** @type {HTMLButtonElement} */ (button).disabled = s.disabled;
  button.setAttribute('aria-pressed', String(s.pressed));
  button.querySelector('.control-icon').innerHTML = s.icon;
  button.querySelector('.control-label').textContent = s.label;
}

function renderMediaNotice() {
  const el = $('media-notice');
  const key = {
    none: null, noCamera: 'media.noCamera', noMic: 'media.noMic', noDevices: 'media.none', denied: 'media.denied',
  }[media.problem];
  el.hidden = !key;
  if (!key) return;
  el.querySelector('.media-notice-icon').innerHTML = icons.warning;
  el.querySelector('.media-notice-text').textContent = t(key);
}

/** The server will not let us in without (a new) sign-in: stop the camera and point to the sign-in page. */
function showSignIn(reasonKey) {
  media.stop();
  banner.set('failed', { reason: 'auth' });
  $('signin-reason').dataset.i18n = reasonKey;
  /** @type {HTMLAnchorElement} */ ($('signin-link')).href = loginUrl(location.pathname);
  applyI18n($('signin-overlay'));
  $('signin-overlay').hidden = false;
}

function showLeft() {
  media.stop();
  $('left-overlay').hidden = false;
  /** @type {HTMLElement} */ ($('btn-rejoin')).focus();
}

async function copyLink() {
  const url = `${location.origin}/room/${encodeURIComponent(roomId ?? '')}`;
  try {
    await navigator.clipboard.writeText(url);
    toast(t('room.linkCopied'), { kind: 'success', timeoutMs: 3000 });
  } catch {
    // Clipboard needs a secure context or permission; show the link so it can be copied by hand.
    toast(t('room.copyFailed', { url }), { timeoutMs: 15000 });
  }
}

/**
 * Inline form when the URL carries no (valid) name: fill from the remembered profile, resolve on submit.
 * @returns {Promise<{name: string, facility: string}>}
 */
function askForName(room, name, facility) {
  const overlay = $('join-overlay');
  const form = /** @type {HTMLFormElement} */ ($('join-form'));
  const nameInput = /** @type {HTMLInputElement} */ (form.elements.namedItem('name'));
  const facilityInput = /** @type {HTMLInputElement} */ (form.elements.namedItem('facility'));
  const profile = loadProfile();
  /** @type {HTMLElement} */ (form.querySelector('.join-room-id')).textContent = room;
  nameInput.value = name || profile.name;
  facilityInput.value = facility || profile.facility;
  overlay.hidden = false;
  (nameInput.value ? form.querySelector('button[type=submit]') : nameInput)?.focus();

  return new Promise((resolve) => {
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const values = { name: nameInput.value.trim(), facility: facilityInput.value.trim() };
      const nameOk = isValidName(values.name);
      const facilityOk = isValidFacility(values.facility);
      /** @type {HTMLElement} */ (nameInput.parentElement.querySelector('.field-error')).hidden = nameOk;
      /** @type {HTMLElement} */ (facilityInput.parentElement.querySelector('.field-error')).hidden = facilityOk;
      if (!nameOk) return nameInput.focus();
      if (!facilityOk) return facilityInput.focus();
      // Put them in the URL so a reload (or "rejoin") does not ask again.
      const url = new URL(location.href);
      url.searchParams.set('name', values.name);
      if (values.facility) url.searchParams.set('facility', values.facility);
      else url.searchParams.delete('facility');
      history.replaceState(null, '', url);
      overlay.hidden = true;
      resolve(values);
    });
  });
}
