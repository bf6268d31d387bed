// Consult log page: everyone signed in sees the consults they may see (the server scopes the list); admins also
// get statistics by facility, province, specialty or day, a chart of them (Chart.js, vendored) and the CSV.
// window.hoichanStats is the test contract.

import { getToken, loginUrl, signOut, whoAmI } from './auth.js';
import { applyI18n, errorText, getLang, initLangToggle, t } from './i18n.js';
import './lobby-strings.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($('filters'));
let user = /** @type {any} */ (null);
let directory = /** @type {any} */ (null);
let stats = /** @type {any} */ (null);
let rows = /** @type {any[]} */ ([]);
let chart = /** @type {any} */ (null);

// @ts-ignore
window.hoichanStats = { get statistics() { return stats; }, get consults() { return rows; }, get chart() { return chart; } };

/** @param {string} tag @param {Record<string, any>} [props] @param {...(Node|string)} children */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${getToken()}` } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(body?.error?.code ?? 'unknown', body?.error?.message ?? res.statusText);
  return body;
}

initLangToggle($('lang-toggle'));
applyI18n();
document.addEventListener('hoichan:lang', () => { fillSelects(); render(); });
$('sign-out').addEventListener('click', () => { signOut(); location.assign(loginUrl('/consults')); });
form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
$('csv').addEventListener('click', downloadCsv);

main();

async function main() {
  const who = await whoAmI();
  if (!who.user) {
    location.replace(loginUrl('/consults'));
    return;
  }
  user = who.user;
  $('log-user').textContent = `${user.displayName} · ${t(`role.${user.role}`)}`;
  for (const node of document.querySelectorAll('.admin-only')) /** @type {HTMLElement} */ (node).hidden = user.role !== 'admin';
  directory = await api('/api/directory');
  fillSelects();
  await load();
  document.body.dataset.state = 'ready';
}

function fillSelects() {
  if (!directory) return;
  const lower = directory.facilities.filter((f) => f.tier !== 'central');
  const specialtyName = (s) => (getLang() === 'vi' ? s.name : s.nameEn);
  for (const [name, items] of [
    ['province', directory.provinces.map((p) => [p.id, p.name])],
    ['facility', lower.map((f) => [f.id, f.name])],
    ['specialty', directory.specialties.map((s) => [s.code, specialtyName(s)])],
  ]) {
    const select = /** @type {HTMLSelectElement} */ (form.elements.namedItem(name));
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '', textContent: t('log.any') }),
      ...items.map(([value, text]) => el('option', { value, textContent: text })));
    select.value = chosen;
  }
}

function query(withGrouping) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    if (value && (withGrouping || key !== 'by')) params.set(key, String(value));
  }
  return params.toString();
}

function message(text) {
  $('log-message').textContent = text ?? '';
  $('log-message').hidden = !text;
}

async function load() {
  message(null);
  let fresh;
  try {
    fresh = user.role === 'admin' ? await api(`/api/statistics?${query(true)}`) : null;
    if (fresh) { // the days the server counted (its time zone, the last 30 days unless chosen): the list follows
      form.elements.namedItem('from').value = fresh.from;
      form.elements.namedItem('to').value = fresh.to;
    }
    rows = (await api(`/api/consults?${query(false)}`)).consults;
  } catch (error) {
    message(t('log.failed', { message: errorText(error.code, error.message) }));
    return;
  }
  stats = fresh; // shown together with its list, in one step: never new figures beside the old table
  render();
}

const locale = () => (getLang() === 'vi' ? 'vi-VN' : 'en-GB');
const secondsText = (v) => (v == null ? '—' : t('log.seconds', { value: v.toLocaleString(locale(), { maximumFractionDigits: 1 }) }));
const share = (v) => (v == null ? '—' : `${(v * 100).toLocaleString(locale(), { maximumFractionDigits: 1 })} %`);

function render() {
  if (!user) return;
  const tbody = $('consults').querySelector('tbody');
  tbody.replaceChildren(...rows.map((c) => el('tr', {},
    el('td', { textContent: new Date(c.requestedAt).toLocaleString(locale()) }),
    el('td', { textContent: `${c.caller.name} (${facilityName(c.caller.facility)})` }),
    el('td', { textContent: specialtyName(c.specialty) }),
    el('td', { textContent: t(`outcome.${c.outcome}`) }),
    el('td', { textContent: c.answeredBy ? `${c.answeredBy.name} (${facilityName(c.answeredBy.facility)})` : '—' }),
    el('td', { textContent: secondsText(c.answerSeconds) }))));
  $('consults-empty').hidden = rows.length > 0;
  if (stats) renderStatistics();
}

function facilityName(id) {
  return directory.facilities.find((f) => f.id === id)?.name ?? id;
}

function specialtyName(code) {
  const s = directory.specialties.find((x) => x.code === code);
  return s ? (getLang() === 'vi' ? s.name : s.nameEn) : code;
}

function groupName(g) {
  return stats.by === 'specialty' ? specialtyName(g.key) : g.name;
}

function renderStatistics() {
  const total = stats.total;
  $('stats-summary').replaceChildren(...[
    ['log.count', total.count], ['log.answered', total.answered], ['log.unanswered', total.unanswered],
    ['log.share', share(total.answeredShare)], ['log.median', secondsText(total.medianAnswerSeconds)],
    ['log.p90', secondsText(total.p90AnswerSeconds)],
  ].map(([key, value]) => el('div', {}, el('span', { textContent: t(key) }), el('strong', { textContent: String(value) }))));
  const byKey = { facility: 'log.byFacility', province: 'log.byProvince', specialty: 'log.bySpecialty', day: 'log.byDay' };
  $('stats-group').textContent = t(byKey[stats.by]);
  $('stats-table').querySelector('tbody').replaceChildren(...stats.groups.map((g) => el('tr', {},
    el('td', { textContent: groupName(g) }), el('td', { textContent: String(g.count) }),
    el('td', { textContent: String(g.answered) }), el('td', { textContent: String(g.unanswered) }),
    el('td', { textContent: String(g.cancelled) }), el('td', { textContent: share(g.answeredShare) }),
    el('td', { textContent: secondsText(g.medianAnswerSeconds) }), el('td', { textContent: secondsText(g.p90AnswerSeconds) }))));
  drawChart();
}

/** Stacked bars: answered / not answered / cancelled per group; a line: median time to answer (right axis). */
function drawChart() {
  // @ts-ignore: the UMD build defines window.Chart
  const Chart = window.Chart;
  const data = {
    labels: stats.groups.map(groupName),
    datasets: [
      { type: 'bar', label: t('log.answered'), data: stats.groups.map((g) => g.answered), backgroundColor: '#16a34a', stack: 'n' },
      { type: 'bar', label: t('log.unanswered'), data: stats.groups.map((g) => g.unanswered), backgroundColor: '#dc2626', stack: 'n' },
      { type: 'bar', label: t('log.cancelled'), data: stats.groups.map((g) => g.cancelled), backgroundColor: '#94a3b8', stack: 'n' },
      { type: 'line', label: t('log.median'), data: stats.groups.map((g) => g.medianAnswerSeconds), borderColor: '#0f766e',
        backgroundColor: '#0f766e', yAxisID: 'seconds' },
    ],
  };
  const options = {
    responsive: true, maintainAspectRatio: false, animation: false,
    scales: {
      y: { stacked: true, beginAtZero: true, title: { display: true, text: t('log.count') }, ticks: { precision: 0 } },
      x: { stacked: true },
      seconds: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false },
        title: { display: true, text: t('log.median') } },
    },
  };
  const canvas = /** @type {HTMLCanvasElement} */ ($('stats-chart'));
  canvas.setAttribute('aria-label', t('log.statistics'));
  if (chart) chart.destroy();
  chart = new Chart(canvas, { data, options });
}

async function downloadCsv() {
  const res = await fetch(`/api/consults.csv?${query(false)}`, { headers: { Authorization: `Bearer ${getToken()}` } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    message(t('log.failed', { message: errorText(body?.error?.code, body?.error?.message) }));
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const link = el('a', { href: url, download: 'hoichan-consults.csv' });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}
