// A connection point's page (/points/<id>): run a link test from this browser (progress, then the verdict in words
// and what to fix), and the point's history as charts (RTT, jitter and loss; throughput both ways) and a list.
// The server measures and stores every result; the page only plays the client's part and shows what it stored.
// window.hoichanPoint is the test contract.

import { getToken, loginUrl, signOut, whoAmI } from './auth.js';
import { applyI18n, errorText, initLangToggle, t } from './i18n.js';
import { runLinkTest } from './linktest-run.js';
import { api, el, figure, locale, percent, verdictBadge, when, words } from './points-common.js';
import './points-strings.js';
import { initCaps, renderCaps } from './point-caps.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const pointId = decodeURIComponent(location.pathname.split('/').pop() ?? '');
const HISTORY_LIMIT = 200;
const EXPECTED_SECONDS = 15;

let info = /** @type {any} */ (null); // the dashboard's entry for this point: facility, province, online
let tests = /** @type {any[]} */ ([]); // newest first, as the API lists them
let shown = /** @type {any} */ (null); // the result in the verdict panel
let progress = { phase: '', progress: 0, overall: 0 };
let testState = 'idle'; // idle | running | done | failed
let controller = /** @type {AbortController|null} */ (null);
const charts = { delay: /** @type {any} */ (null), throughput: /** @type {any} */ (null) };
let chartData = /** @type {any} */ (null);

// @ts-ignore
window.hoichanPoint = {
  get point() { return info; },
  get tests() { return tests; },
  get result() { return shown; },
  get progress() { return progress; },
  get testState() { return testState; },
  get charts() { return charts; },
  get chartData() { return chartData; },
};

initLangToggle($('lang-toggle'));
applyI18n();
document.addEventListener('hoichan:lang', () => render());
$('sign-out').addEventListener('click', () => { signOut(); location.assign(loginUrl()); });
$('run-test').addEventListener('click', runTest);
$('cancel-test').addEventListener('click', () => controller?.abort());

main();

async function main() {
  const who = await whoAmI();
  if (!who.user) {
    location.replace(loginUrl());
    return;
  }
  $('point-user').textContent = `${who.user.displayName} · ${t(`role.${who.user.role}`)}`;
  try {
    const history = await api(`/api/points/${encodeURIComponent(pointId)}/link-tests?limit=${HISTORY_LIMIT}`);
    tests = history.tests;
    const listed = await api(`/api/points?facility=${encodeURIComponent(history.point.facility)}`);
    info = listed.points.find((p) => p.id === pointId) ?? { ...history.point, facilityName: history.point.facility };
  } catch (error) {
    message(error.status === 404 || error.status === 403 ? t('point.notFound') : errorText(error.code, error.message));
    document.body.dataset.state = 'failed';
    return;
  }
  shown = tests[0] ?? null;
  $('point-main').hidden = false;
  render();
  if (['technician', 'admin'].includes(who.user.role)) await initCaps(pointId, () => shown).catch(() => {});
  document.body.dataset.state = 'ready';
}

function message(text) {
  $('point-message').textContent = text ?? '';
  $('point-message').hidden = !text;
}

function setTestState(state) {
  testState = state;
  document.body.dataset.testState = state;
  const running = state === 'running';
  /** @type {HTMLButtonElement} */ ($('run-test')).disabled = running;
  $('cancel-test').hidden = !running;
  $('test-progress').hidden = !running;
}

async function runTest() {
  message(null);
  controller = new AbortController();
  progress = { phase: 'connect', progress: 0, overall: 0 };
  setTestState('running');
  renderProgress();
  try {
    shown = await runLinkTest(pointId, getToken() ?? '', (p) => { progress = p; renderProgress(); }, controller.signal);
    tests = (await api(`/api/points/${encodeURIComponent(pointId)}/link-tests?limit=${HISTORY_LIMIT}`)).tests;
    setTestState('done');
  } catch (error) {
    const key = `linktest.error.${error.code}`;
    message(t('point.testFailed', { message: t(key) !== key ? t(key) : errorText(error.code, error.message) }));
    setTestState('failed');
  }
  controller = null;
  render();
}

function renderProgress() {
  /** @type {HTMLProgressElement} */ ($('progress')).value = progress.overall;
  $('progress-text').textContent = `${t('point.running', { phase: t(`phase.${progress.phase}`) })} ${Math.round(progress.overall * 100)} %`;
}

function render() {
  if (!info) return;
  $('point-title').textContent = info.label;
  document.title = `Hoichan — ${info.label}`;
  $('point-facts').replaceChildren(
    el('strong', { textContent: info.facilityName }),
    ...(info.provinceName ? [` · ${info.provinceName}`] : []),
    ...(info.tier ? [` · ${t(`tier.${info.tier}`)}`] : []),
    ' · ',
    el('span', { className: `online-dot ${info.online ? 'is-online' : ''}`, textContent: t(info.online ? 'points.isOnline' : 'points.isOffline') }),
  );
  $('run-hint').textContent = t('point.runHint', { seconds: EXPECTED_SECONDS });
  if (testState === 'running') renderProgress();
  renderVerdict();
  renderHistory();
  renderCaps(shown);
}

function renderVerdict() {
  $('verdict').hidden = !shown;
  if (!shown) return;
  const v = shown.verdict;
  $('verdict').dataset.test = shown.id;
  $('verdict').dataset.tier = v.tier;
  $('verdict-when').textContent = `${when(shown.startedAt)} · ${t(`status.${shown.status}`)}`;
  $('verdict-carries').replaceChildren(verdictBadge(v.tier), ' ', t('point.carries', { what: words(v.carries) }));
  $('verdict-reasons').replaceChildren(...(v.reasons.length
    ? v.reasons.map((r) => el('li', { dataset: { code: r.code, severity: r.severity }, textContent: words(r) }))
    : [el('li', { dataset: { code: 'none', severity: 'info' }, textContent: t('point.allGood') })]));
  const throughput = (kbps, atLeast) => {
    const text = figure(kbps, 'kbit/s');
    return kbps != null && atLeast ? t('point.atLeast', { value: text }) : text;
  };
  const rows = [
    ['rtt', 'point.rtt', figure(shown.rttMs, 'ms', 1)],
    ['jitter', 'point.jitter', figure(shown.jitterMs, 'ms', 1)],
    ['loss', 'point.loss', percent(shown.loss)],
    ['down', 'point.down', throughput(shown.downKbps, shown.downAtLeast)],
    ['up', 'point.up', throughput(shown.upKbps, shown.upAtLeast)],
  ];
  $('verdict-figures').replaceChildren(...rows.flatMap(([name, key, value]) => [
    el('dt', { textContent: t(key) }), el('dd', { dataset: { figure: name }, textContent: value })]));
  $('verdict-paths').replaceChildren(...shown.paths.map((p) => {
    const status = p.status ?? (p.ok ? 'ok' : 'failed');
    const key = `path.${status}`;
    const parts = [`${words(p.name)}: ${t(key) !== key ? t(key) : status}`];
    if (p.connectMs != null) parts.push(figure(p.connectMs, 'ms'));
    if (p.path === shown.measuredOn) parts.push(t('point.measuredOn'));
    return el('li', { dataset: { path: p.path, status }, textContent: parts.join(' · ') });
  }));
}

function renderHistory() {
  $('tests-empty').hidden = tests.length > 0;
  $('tests').querySelector('tbody').replaceChildren(...tests.map((r) => {
    const row = el('tr', { dataset: { test: r.id, tier: r.verdict.tier, status: r.status } },
      el('td', { textContent: when(r.startedAt) }),
      el('td', { textContent: r.startedBy }),
      el('td', { textContent: t(`status.${r.status}`) }),
      el('td', {}, verdictBadge(r.verdict.tier)),
      el('td', { textContent: figure(r.rttMs, 'ms', 1) }),
      el('td', { textContent: figure(r.jitterMs, 'ms', 1) }),
      el('td', { textContent: percent(r.loss) }),
      el('td', { textContent: figure(r.downKbps, 'kbit/s') }),
      el('td', { textContent: figure(r.upKbps, 'kbit/s') }));
    row.setAttribute('aria-selected', String(r.id === shown?.id));
    row.addEventListener('click', () => { shown = r; render(); });
    return row;
  }));
  drawCharts();
}

/** Oldest first, one point per test, on a time axis: delay and loss in one chart, throughput in the other. */
function drawCharts() {
  // @ts-ignore: the UMD build defines window.Chart
  const Chart = window.Chart;
  const ordered = [...tests].reverse();
  const series = (key, scale = 1) => ordered.map((r) => ({ x: r.startedAt * 1000, y: r[key] == null ? null : r[key] * scale }));
  chartData = {
    ids: ordered.map((r) => r.id),
    rttMs: series('rttMs'), jitterMs: series('jitterMs'), lossPercent: series('loss', 100),
    downKbps: series('downKbps'), upKbps: series('upKbps'),
  };
  const xAxis = {
    type: 'linear',
    ticks: { maxTicksLimit: 6, callback: (v) => new Date(v).toLocaleString(locale(), { dateStyle: 'short', timeStyle: 'short' }) },
  };
  const line = (label, data, color, extra = {}) => ({ label, data, borderColor: color, backgroundColor: color, spanGaps: true, ...extra });
  const common = { responsive: true, maintainAspectRatio: false, animation: false, parsing: true };
  const configs = {
    delay: {
      type: 'line',
      data: { datasets: [
        line(t('point.rtt'), chartData.rttMs, '#0f766e', { yAxisID: 'ms' }),
        line(t('point.jitter'), chartData.jitterMs, '#7c3aed', { yAxisID: 'ms' }),
        line(t('point.loss'), chartData.lossPercent, '#dc2626', { yAxisID: 'loss' }),
      ] },
      options: { ...common, scales: { x: xAxis,
        ms: { position: 'left', beginAtZero: true, title: { display: true, text: 'ms' } },
        loss: { position: 'right', beginAtZero: true, suggestedMax: 5, grid: { drawOnChartArea: false }, title: { display: true, text: '%' } } } },
    },
    throughput: {
      type: 'line',
      data: { datasets: [
        line(t('point.down'), chartData.downKbps, '#2563eb'),
        line(t('point.up'), chartData.upKbps, '#ea580c'),
      ] },
      options: { ...common, scales: { x: xAxis, y: { beginAtZero: true, title: { display: true, text: 'kbit/s' } } } },
    },
  };
  for (const [name, config] of Object.entries(configs)) {
    const canvas = /** @type {HTMLCanvasElement} */ ($(`chart-${name}`));
    canvas.setAttribute('aria-label', t(name === 'delay' ? 'point.chartDelay' : 'point.chartThroughput'));
    charts[name]?.destroy();
    charts[name] = new Chart(canvas, config);
  }
}
