// Admin recordings page: search, view the manifest, play tracks and the combined view, download, legal hold,
// combine, delete (typed confirmation), and the access log with CSV export. The server enforces the admin role
// and audits every request; this page only asks.
//
// Players and download links carry the sign-in as `?token=`: a <video src> or <a download> cannot send an
// Authorization header, and fetching a recording into a blob would forbid seeking and hold it all in memory.
// The server accepts `?token=` on the track, combined and zip routes only; everything else uses the header.

import { getToken, loginUrl, signOut, whoAmI } from './auth.js';
import { applyI18n, getLang, initLangToggle, t } from './i18n.js';
import './admin-recordings-strings.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const POLL_MS = 1000;

/** @type {string|null} */
let selected = null;
/** @type {any} the last detail answer, re-rendered on a language switch */
let detail = null;
/** @type {any[]} */
let rows = [];
/** @type {any[]} */
let auditRows = [];
let pollTimer = 0;

class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** JSON API call with the bearer token; a 401 sends the user to the sign-in page. */
async function api(path, { method = 'GET', body } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${getToken()}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError(0, 'network', t('rec.network'));
  }
  if (res.status === 401) {
    signOut();
    location.assign(loginUrl());
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? 'unknown', data?.error?.message ?? res.statusText);
  return data;
}

/** A media URL for players and links (see the top of this file for why the token rides in the query). */
function mediaUrl(path, download = false) {
  const query = new URLSearchParams({ token: getToken() ?? '' });
  if (download) query.set('download', '1');
  return `${path}?${query}`;
}

function showMessage(text) {
  const box = $('admin-message');
  box.textContent = text ?? '';
  box.hidden = !text;
}

function failed(error) {
  showMessage(error instanceof ApiError && error.code !== 'network' ? t('rec.failed', { message: error.message })
    : t('rec.network'));
}

const locale = () => (getLang() === 'vi' ? 'vi-VN' : 'en-GB');
const when = (iso) => (iso ? new Date(iso).toLocaleString(locale()) : '—');

function duration(seconds) {
  if (seconds == null) return '—';
  const s = Math.round(seconds);
  const parts = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  return parts.map((n, i) => (i ? String(n).padStart(2, '0') : String(n))).join(':');
}

function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toLocaleString(locale(), { maximumFractionDigits: 1 })} ${units[unit]}`;
}

/** @param {string} tag @param {Record<string, any>} [props] @param {...(Node|string)} children */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// ------------------------------------------------------------------------------------------------ list

/** Local calendar days → the instants the server filters on. */
function filterQuery() {
  const form = /** @type {HTMLFormElement} */ ($('filters'));
  const data = new FormData(form);
  const query = new URLSearchParams();
  const from = String(data.get('from') || '');
  const to = String(data.get('to') || '');
  if (from) query.set('from', new Date(`${from}T00:00:00`).toISOString());
  if (to) query.set('to', new Date(`${to}T23:59:59.999`).toISOString());
  for (const key of ['facility', 'consult', 'participant']) {
    const value = String(data.get(key) || '').trim();
    if (value) query.set(key, value);
  }
  return query;
}

async function loadList() {
  try {
    rows = (await api(`/api/recordings?${filterQuery()}`)).recordings;
    showMessage(null);
  } catch (error) {
    failed(error);
    return;
  }
  renderList();
}

function renderList() {
  const body = $('recordings').querySelector('tbody');
  body.replaceChildren(...rows.map((row) => {
    const people = row.participants.map((p) => `${p.name}${p.facility ? ` — ${p.facility}` : ''}`).join('; ');
    const state = el('td', {}, t(`rec.state.${row.state}`));
    if (row.hold) state.append(' ', el('span', { className: 'badge badge-hold' }, t('rec.onHold')));
    const tr = el('tr', { tabIndex: 0 },
      el('td', {}, when(row.started_at)),
      el('td', {}, row.room_id, row.consult_id ? el('div', { className: 'admin-note' }, row.consult_id) : ''),
      el('td', {}, people),
      el('td', {}, duration(row.duration)),
      el('td', {}, bytes(row.size)),
      state);
    tr.dataset.recordingId = row.id;
    tr.setAttribute('aria-selected', String(row.id === selected));
    tr.addEventListener('click', () => select(row.id));
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') select(row.id); });
    return tr;
  }));
  $('recordings-empty').hidden = rows.length > 0;
}

// ---------------------------------------------------------------------------------------------- detail

async function select(id) {
  selected = id;
  for (const tr of $('recordings').querySelectorAll('tbody tr')) {
    tr.setAttribute('aria-selected', String(/** @type {HTMLElement} */ (tr).dataset.recordingId === id));
  }
  await loadDetail(true);
}

async function loadDetail(fresh = false) {
  if (!selected) return;
  try {
    detail = await api(`/api/recordings/${encodeURIComponent(selected)}`);
  } catch (error) {
    failed(error);
    if (error instanceof ApiError && error.status === 404) closeDetail();
    return;
  }
  renderDetail(fresh);
  schedulePoll();
}

function closeDetail() {
  selected = null;
  detail = null;
  $('detail').hidden = true;
}

function renderDetail(fresh) {
  const { manifest, admin, kept } = detail;
  const base = `/api/recordings/${encodeURIComponent(manifest.id)}`;
  $('detail').hidden = false;
  $('detail').dataset.recordingId = manifest.id;
  $('detail-title').textContent = manifest.id;
  $('detail-hold-badge').hidden = !admin.hold;

  const facts = [
    ['rec.facts.room', manifest.room_id],
    ['rec.facts.consult', manifest.consult_id ?? '—'],
    ['rec.facts.started', when(manifest.started_at)],
    ['rec.facts.ended', when(manifest.ended_at)],
    ['rec.facts.state', t(`rec.state.${manifest.state}`)],
    ['rec.facts.endReason', manifest.end_reason ?? '—'],
  ];
  if (manifest.errors?.length) facts.push(['rec.facts.errors', manifest.errors.map((e) => e.message).join('; ')]);
  $('detail-facts').replaceChildren(...facts.flatMap(([key, value]) => [el('dt', {}, t(key)), el('dd', {}, value)]));

  /** @type {HTMLAnchorElement} */ ($('download-zip')).href = mediaUrl(`${base}/zip`);
  const hold = /** @type {HTMLInputElement} */ ($('hold'));
  hold.checked = admin.hold;
  /** @type {HTMLButtonElement} */ ($('delete')).disabled = kept !== null;
  $('kept-reason').hidden = kept === null;
  $('kept-reason').textContent = kept ? t(`rec.kept.${kept}`) : '';

  renderCombine(base);
  if (fresh) renderTracks(base, manifest);
  $('manifest').textContent = JSON.stringify(manifest, null, 2);
}

function renderCombine(base) {
  const { admin, manifest, combined_size: combinedSize } = detail;
  const job = admin.combine;
  const busy = job.state === 'queued' || job.state === 'running';
  const button = /** @type {HTMLButtonElement} */ ($('combine'));
  button.disabled = busy || manifest.state === 'recording';
  button.textContent = t(combinedSize != null ? 'rec.combineAgain' : 'rec.combine');
  const progress = /** @type {HTMLProgressElement} */ ($('combine-progress'));
  progress.hidden = !busy;
  progress.value = job.progress;
  const status = job.state === 'none' && combinedSize == null ? 'rec.combine.none' : `rec.combine.${job.state}`;
  $('combine-status').textContent = job.state === 'none' && combinedSize != null ? ''
    : t(status, { progress: Math.round(job.progress), error: job.error ?? '' });
  $('combine-status').dataset.state = job.state;
  const player = /** @type {HTMLVideoElement} */ ($('combined-player'));
  const link = /** @type {HTMLAnchorElement} */ ($('combined-download'));
  const ready = combinedSize != null && !busy;
  player.hidden = !ready;
  link.hidden = !ready;
  // A new combined file gets a new URL (its finish time), so the player does not keep the old one.
  const src = ready ? `${mediaUrl(`${base}/combined`)}&v=${encodeURIComponent(job.finished_at ?? '')}` : '';
  if (ready && player.dataset.src !== src) {
    player.dataset.src = src;
    player.src = src;
  }
  link.href = ready ? mediaUrl(`${base}/combined`, true) : '';
}

function renderTracks(base, manifest) {
  const byId = new Map(manifest.participants.map((p) => [p.id, p]));
  $('tracks').replaceChildren(...manifest.tracks.map((track) => {
    const url = `${base}/tracks/${encodeURIComponent(track.file)}`;
    const player = el(track.kind === 'video' ? 'video' : 'audio', { controls: true, preload: 'metadata' });
    player.src = mediaUrl(url);
    const person = byId.get(track.participant_id);
    const heading = [
      t(`rec.track.${track.kind}`),
      person ? `${person.name}${person.facility ? ` — ${person.facility}` : ''}` : track.participant_id,
      t('rec.track.segment', { n: track.segment }),
      t('rec.track.offset', { seconds: Number(track.start_offset ?? 0).toFixed(1) }),
      duration(track.duration),
      bytes(track.size),
    ].join(' · ');
    const link = el('a', { href: mediaUrl(url, true) }, t('rec.download'));
    const figure = el('figure', { className: `track track-${track.kind}` }, player,
      el('figcaption', {}, heading, ' ', link, el('div', { className: 'sha' }, track.sha256 ?? '')));
    figure.dataset.file = track.file;
    return figure;
  }));
}

/** While a combine job runs, follow it (and refresh the list row) once a second. */
function schedulePoll() {
  clearTimeout(pollTimer);
  const state = detail?.admin?.combine?.state;
  if (state === 'queued' || state === 'running') pollTimer = window.setTimeout(() => loadDetail(), POLL_MS);
}

async function toggleHold() {
  const hold = /** @type {HTMLInputElement} */ ($('hold'));
  try {
    await api(`/api/recordings/${encodeURIComponent(selected)}/hold`, { method: 'PUT', body: { hold: hold.checked } });
  } catch (error) {
    failed(error);
  }
  await Promise.all([loadDetail(), loadList()]);
}

async function startCombine() {
  try {
    await api(`/api/recordings/${encodeURIComponent(selected)}/combine`, { method: 'POST' });
  } catch (error) {
    failed(error);
  }
  await loadDetail();
}

function askDelete() {
  const dialog = /** @type {HTMLDialogElement} */ ($('delete-dialog'));
  const input = /** @type {HTMLInputElement} */ ($('delete-confirm'));
  $('delete-id').textContent = selected;
  input.value = '';
  /** @type {HTMLButtonElement} */ ($('delete-go')).disabled = true;
  dialog.showModal();
  input.focus();
}

async function confirmDelete() {
  const id = selected;
  const confirm = /** @type {HTMLInputElement} */ ($('delete-confirm')).value.trim();
  try {
    await api(`/api/recordings/${encodeURIComponent(id)}`, { method: 'DELETE', body: { confirm } });
    showMessage(t('rec.deleted', { id }));
    closeDetail();
  } catch (error) {
    failed(error);
  }
  await loadList();
}

// ----------------------------------------------------------------------------------------------- audit

async function loadAudit() {
  const recording = /** @type {HTMLInputElement} */ ($('audit-recording')).value.trim();
  const query = new URLSearchParams({ format: 'json', limit: '500' });
  if (recording) query.set('recording', recording);
  try {
    auditRows = (await api(`/api/audit?${query}`)).entries;
  } catch (error) {
    failed(error);
    return;
  }
  renderAudit();
}

function renderAudit() {
  $('audit').querySelector('tbody').replaceChildren(...auditRows.map((e) => {
    const tr = el('tr', {},
      el('td', {}, when(e.at)),
      el('td', {}, e.actor ? `${e.actor} (${e.role})` : t('rec.auditAnonymous')),
      el('td', {}, e.remote ?? '—'),
      el('td', {}, t(`rec.action.${e.action}`), e.detail ? el('div', { className: 'admin-note' }, e.detail) : ''),
      el('td', {}, [e.recording, e.file].filter(Boolean).join(' / ') || '—'),
      el('td', { className: e.status >= 400 ? 'status-refused' : '' }, String(e.status)));
    tr.dataset.action = e.action;
    return tr;
  }));
}

/** The CSV goes through fetch (the audit route takes no ?token=), then is saved from a blob. */
async function exportAudit() {
  const recording = /** @type {HTMLInputElement} */ ($('audit-recording')).value.trim();
  const query = new URLSearchParams({ format: 'csv' });
  if (recording) query.set('recording', recording);
  try {
    const res = await fetch(`/api/audit?${query}`, { headers: { Authorization: `Bearer ${getToken()}` } });
    if (!res.ok) throw new ApiError(res.status, 'export', res.statusText);
    const url = URL.createObjectURL(await res.blob());
    el('a', { href: url, download: 'hoichan-audit.csv' }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    failed(error);
  }
}

// ------------------------------------------------------------------------------------------------ wiring

function showTab(name) {
  const audit = name === 'audit';
  $('recordings-view').hidden = audit;
  $('audit-view').hidden = !audit;
  $('tab-recordings').setAttribute('aria-selected', String(!audit));
  $('tab-audit').setAttribute('aria-selected', String(audit));
  if (audit) loadAudit();
}

async function main() {
  initLangToggle($('lang-toggle'));
  applyI18n();
  const who = await whoAmI();
  if (who.state === 'none' || who.state === 'rejected') {
    location.assign(loginUrl());
    return;
  }
  $('sign-out').addEventListener('click', () => {
    signOut();
    location.assign(loginUrl());
  });
  if (who.user) $('admin-user').textContent = who.user.displayName || who.user.username;
  if (who.user && who.user.role !== 'admin') {
    showMessage(t('rec.notAdmin', { role: who.user.role }));
    document.body.dataset.state = 'forbidden';
    return;
  }
  $('admin-main').hidden = false;
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    loadList();
  });
  $('hold').addEventListener('change', toggleHold);
  $('combine').addEventListener('click', startCombine);
  $('delete').addEventListener('click', askDelete);
  $('delete-confirm').addEventListener('input', (e) => {
    /** @type {HTMLButtonElement} */ ($('delete-go')).disabled =
      /** @type {HTMLInputElement} */ (e.target).value.trim() !== selected;
  });
  $('delete-dialog').addEventListener('close', () => {
    if (/** @type {HTMLDialogElement} */ ($('delete-dialog')).returnValue === 'delete') confirmDelete();
  });
  $('tab-recordings').addEventListener('click', () => showTab('recordings'));
  $('tab-audit').addEventListener('click', () => showTab('audit'));
  $('audit-refresh').addEventListener('click', loadAudit);
  $('audit-export').addEventListener('click', exportAudit);
  document.addEventListener('hoichan:lang', () => {
    renderList();
    if (detail) renderDetail(true);
    renderAudit();
  });
  await loadList();
  document.body.dataset.state = 'ready';
}

main();
