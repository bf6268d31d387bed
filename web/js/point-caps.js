// A connection point's caps on its page (/points/<id>), for its technicians and admins: the uplink and downlink
// caps (kbit/s) and audio-only that the relay applies to everyone joining from this point, set by hand or from a
// link test's figures ("apply as cap": 80 % of what the test measured each way; audio only when that is all it
// carries). The server checks and stores them (PUT/DELETE /api/points/<id>/caps) and applies them at once.

import { getToken } from './auth.js';
import { dictionaries, errorText, t } from './i18n.js';
import { api } from './points-common.js';

Object.assign(dictionaries.vi, {
  'caps.title': 'Giới hạn băng thông của điểm cầu',
  'caps.hint': 'Áp dụng ngay cho mọi người đang tham gia từ điểm cầu này.',
  'caps.uplink': 'Chiều lên (kbit/s)',
  'caps.downlink': 'Chiều xuống (kbit/s)',
  'caps.audioOnly': 'Chỉ âm thanh',
  'caps.save': 'Lưu giới hạn',
  'caps.remove': 'Bỏ giới hạn',
  'caps.none': 'Chưa đặt giới hạn.',
  'caps.current': 'Đang áp dụng: {what} (đặt bởi {by}).',
  'caps.applyVerdict': 'Áp dụng làm giới hạn',
});
Object.assign(dictionaries.en, {
  'caps.title': "This point's bandwidth caps",
  'caps.hint': 'Applied at once to everyone taking part from this point.',
  'caps.uplink': 'Uplink (kbit/s)',
  'caps.downlink': 'Downlink (kbit/s)',
  'caps.audioOnly': 'Audio only',
  'caps.save': 'Save caps',
  'caps.remove': 'Remove caps',
  'caps.none': 'No caps set.',
  'caps.current': 'In force: {what} (set by {by}).',
  'caps.applyVerdict': 'Apply as cap',
});

const $ = (id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
const SHARE = 0.8; // of a link test's measured throughput: headroom for the link's other traffic
const MIN_KBPS = 32;
const MAX_KBPS = 20000;

let path = '';
let caps = /** @type {any} */ (null);

/** Show and wire the caps for a technician or admin. @param {string} pointId @param {() => any} shown */
export async function initCaps(pointId, shown) {
  path = `/api/points/${encodeURIComponent(pointId)}/caps`;
  caps = (await api(path)).caps;
  $('caps').hidden = false;
  $('caps-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const kbps = (id) => ($(id).value === '' ? null : Number($(id).value));
    save('PUT', { uplinkKbps: kbps('caps-up'), downlinkKbps: kbps('caps-down'), audioOnly: $('caps-audio-only').checked });
  });
  $('caps-remove').addEventListener('click', () => save('DELETE'));
  $('apply-cap').addEventListener('click', () => {
    const result = shown();
    if (result) save('PUT', fromTest(result));
  });
  renderCaps(shown());
}

/** Caps from a link test's result. @param {any} result */
export function fromTest(result) {
  const cap = (kbps) => (kbps == null ? null : Math.min(MAX_KBPS, Math.max(MIN_KBPS, Math.floor(kbps * SHARE))));
  return { uplinkKbps: cap(result.upKbps), downlinkKbps: cap(result.downKbps),
    audioOnly: ['audio', 'none'].includes(result.verdict?.tier) };
}

/** @param {string} method @param {any} [body] */
async function save(method, body) {
  $('caps-error').hidden = true;
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${getToken()}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) {
    $('caps-error').textContent = errorText(answer?.error?.code ?? 'unknown', answer?.error?.message ?? res.statusText);
    $('caps-error').hidden = false;
    return;
  }
  caps = answer.caps;
  renderCaps(null);
}

/** @param {any} shown the result in the verdict panel (its "apply as cap" button), null: leave it as it is */
export function renderCaps(shown) {
  if (!path) return;
  if (shown !== null) $('apply-cap').hidden = !shown;
  $('caps-up').value = caps?.uplinkKbps ?? '';
  $('caps-down').value = caps?.downlinkKbps ?? '';
  $('caps-audio-only').checked = !!caps?.audioOnly;
  const what = caps && [caps.uplinkKbps && `↑${caps.uplinkKbps} kbit/s`, caps.downlinkKbps && `↓${caps.downlinkKbps} kbit/s`,
    caps.audioOnly && t('caps.audioOnly')].filter(Boolean).join(' · ');
  $('caps-current').textContent = caps ? t('caps.current', { what, by: caps.setBy }) : t('caps.none');
  document.getElementById('caps').dataset.caps = caps ? JSON.stringify(caps) : '';
}
