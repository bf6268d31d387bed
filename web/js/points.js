// The technician's dashboard (/points): the connection points the server lets this account test (its facility's;
// an admin's: all), filtered by province, facility and tier, with online state, the last verdict and the trend of
// recent tests. window.hoichanPoints is the test contract.

import { loginUrl, signOut, whoAmI } from './auth.js';
import { applyI18n, errorText, initLangToggle, t } from './i18n.js';
import { VERDICT_TIERS, api, el, figure, verdictBadge, when, words } from './points-common.js';
import './points-strings.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($('filters'));
const SVG = 'http://www.w3.org/2000/svg';
let scope = /** @type {any[]} */ ([]); // every point this account may see: the filters' choices
let points = /** @type {any[]} */ ([]);
let scopeName = '';

// @ts-ignore
window.hoichanPoints = { get points() { return points; }, get scope() { return scope; } };

initLangToggle($('lang-toggle'));
applyI18n();
document.addEventListener('hoichan:lang', () => { fillSelects(); render(); });
$('sign-out').addEventListener('click', () => { signOut(); location.assign(loginUrl('/points')); });
form.addEventListener('change', () => load());

main();

async function main() {
  const who = await whoAmI();
  if (!who.user) {
    location.replace(loginUrl('/points'));
    return;
  }
  $('points-user').textContent = `${who.user.displayName} · ${t(`role.${who.user.role}`)}`;
  try {
    const all = await api('/api/points');
    scope = all.points;
    scopeName = all.scope;
  } catch (error) {
    message(t('points.failed', { message: errorText(error.code, error.message) }));
    document.body.dataset.state = 'failed';
    return;
  }
  points = scope;
  fillSelects();
  render();
  document.body.dataset.state = 'ready';
}

function message(text) {
  $('points-message').textContent = text ?? '';
  $('points-message').hidden = !text;
}

/** The filters offer what the account's points have: no province or facility that would show nothing. */
function fillSelects() {
  const distinct = (key, name) => [...new Map(scope.map((p) => [p[key], name(p)])).entries()]
    .sort((a, b) => a[1].localeCompare(b[1], 'vi'));
  for (const [key, items] of [
    ['province', distinct('province', (p) => p.provinceName)],
    ['facility', distinct('facility', (p) => p.facilityName)],
    ['tier', distinct('tier', (p) => t(`tier.${p.tier}`))],
  ]) {
    const select = /** @type {HTMLSelectElement} */ (form.elements.namedItem(key));
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '', textContent: t('points.any') }),
      ...items.map(([value, text]) => el('option', { value, textContent: text })));
    select.value = chosen;
  }
}

let loading = 0; // only the answer to the latest filters is shown, whatever order answers arrive in

async function load() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, String(value));
  const mine = ++loading;
  document.body.dataset.state = 'loading';
  let answer = null;
  try {
    answer = (await api(`/api/points?${params}`)).points;
  } catch (error) {
    if (mine === loading) message(t('points.failed', { message: errorText(error.code, error.message) }));
  }
  if (mine !== loading) return;
  if (answer) { points = answer; message(null); }
  render();
  document.body.dataset.state = 'ready';
}

function render() {
  $('points-scope').textContent = scopeName ? t(scopeName === 'all' ? 'points.scopeAll' : 'points.scopeFacility') : '';
  $('points').querySelector('tbody').replaceChildren(...points.map((p) => el('tr', {
    dataset: { point: p.id, online: String(p.online), tier: p.last?.tier ?? '' },
  },
  el('td', {}, el('a', { href: `/points/${encodeURIComponent(p.id)}`, textContent: p.label })),
  el('td', { textContent: p.facilityName }),
  el('td', { textContent: p.provinceName }),
  el('td', { textContent: t(`tier.${p.tier}`) }),
  el('td', {}, el('span', {
    className: `online-dot ${p.online ? 'is-online' : ''}`,
    textContent: t(p.online ? 'points.isOnline' : 'points.isOffline'),
  })),
  el('td', { className: 'last-verdict' }, ...(p.last ? [
    verdictBadge(p.last.tier), ' ', el('span', { textContent: words(p.last.carries) }),
    el('div', { className: 'admin-note', textContent: when(p.last.startedAt) }),
  ] : [el('span', { className: 'admin-empty', textContent: t('points.never') })])),
  el('td', { className: 'trend' }, ...trend(p.trend)))));
  $('points-empty').hidden = points.length > 0;
}

/** The verdict's direction since the test before (an arrow) and a sparkline of the slower way's throughput. */
function trend(tests) {
  if (!tests.length) return [];
  const rank = (tier) => { const i = VERDICT_TIERS.indexOf(tier); return i < 0 ? null : i; };
  const [before, last] = [tests[tests.length - 2], tests[tests.length - 1]];
  let direction = 'none';
  if (before && rank(before.tier) != null && rank(last.tier) != null) {
    direction = rank(last.tier) < rank(before.tier) ? 'up' : rank(last.tier) > rank(before.tier) ? 'down' : 'same';
  }
  const arrows = { up: '↑', down: '↓', same: '→', none: '' };
  const names = { up: 'points.trendUp', down: 'points.trendDown', same: 'points.trendSame' };
  const arrow = el('span', { className: `trend-arrow trend-${direction}`, textContent: arrows[direction] });
  if (direction !== 'none') arrow.title = t(names[direction]);
  const values = tests.map((x) => (x.downKbps == null || x.upKbps == null ? null : Math.min(x.downKbps, x.upKbps)));
  const spark = sparkline(values);
  spark.setAttribute('aria-label', values.map((v) => figure(v, 'kbit/s')).join(', '));
  const cell = el('span', { className: 'trend-cell', dataset: { trend: direction } }, arrow, spark);
  return [cell];
}

/** A tiny line chart of numbers (gaps for unknown ones), as an inline SVG. @param {(number|null)[]} values */
function sparkline(values) {
  const width = 96;
  const height = 24;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('role', 'img');
  svg.classList.add('sparkline');
  svg.dataset.values = JSON.stringify(values);
  const known = values.filter((v) => v != null);
  const top = Math.max(...known, 1);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const y = (v) => height - 2 - (v / top) * (height - 4);
  let path = '';
  values.forEach((v, i) => {
    if (v == null) return;
    path += `${path && values[i - 1] != null ? 'L' : 'M'}${(i * step).toFixed(1)},${y(v).toFixed(1)}`;
  });
  const line = document.createElementNS(SVG, 'path');
  line.setAttribute('d', path);
  svg.append(line);
  if (known.length) {
    const lastIndex = values.length - 1 - [...values].reverse().findIndex((v) => v != null);
    const dot = document.createElementNS(SVG, 'circle');
    dot.setAttribute('cx', (lastIndex * step).toFixed(1));
    dot.setAttribute('cy', y(/** @type {number} */ (values[lastIndex])).toFixed(1));
    dot.setAttribute('r', '2.5');
    svg.append(dot);
  }
  return svg;
}
