// The shared panel of the room page: images (with everyone's pointer and marks), vitals cards. What is shared
// arrives over socket.io (`shared-item`, `pointer`, protocol.md); images are uploaded and fetched over HTTP with
// the sign-in token, so a guest sees the vitals and marks but is asked to sign in for the pictures.

import { errorText, t } from './i18n.js';
import { toast } from './toast.js';

/** @typedef {{id: string, room: string, kind: 'image'|'vitals'|'annotation', at: number,
 *   author: {username: string, name: string, facility: string, participantId: string}, data: any}} SharedItem */

const POINTER_INTERVAL_MS = 100;   // 10 pointer moves a second: well inside the server's annotation rate
const POINTER_FADE_MS = 3000;
const MAX_STROKE_POINTS = 200;     // schemas.MAX_STROKE_POINTS
const VITAL_ORDER = ['heartRate', 'bloodPressure', 'spo2', 'temperature', 'respiratoryRate'];
const COLOURS = ['#f97316', '#22d3ee', '#a3e635', '#f472b6', '#facc15', '#c084fc', '#60a5fa', '#f87171'];

/** A stable colour per participant, so everyone sees the same person's marks in the same colour. */
function colourOf(participantId) {
  let h = 0;
  for (const c of participantId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLOURS[h % COLOURS.length];
}

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class SharedPanel {
  /**
   * @param {{room: string, token: string|null, signaling: import('./signaling.js').Signaling,
   *   selfId: () => string|null}} opts
   */
  constructor({ room, token, signaling, selfId }) {
    this.room = room;
    this.token = token;
    this.signaling = signaling;
    this.selfId = selfId;
    /** Every item of the room, in order (plain array so tests can read it through page.evaluate). */
    /** @type {SharedItem[]} */
    this.items = [];
    /** @type {string|null} */
    this.currentImage = null;
    /** @type {Map<string, string>} image id → blob URL */
    this.blobs = new Map();
    this.tool = 'point';
    this.lastPointerAt = 0;
    /** @type {number[][]|null} */
    this.stroke = null;
    /** @type {Map<string, {el: HTMLElement, timer: number}>} */
    this.pointers = new Map();
    /** Told the number of shared images and vitals cards, and whether the panel is open. */
    /** @type {(count: number, open: boolean) => void} */
    this.onChange = () => {};

    this.panel = $('shared-panel');
    this.imageEl = /** @type {HTMLImageElement} */ ($('shared-image'));
    this.stage = $('shared-stage');
    this.strokes = $('shared-strokes');
    this.marks = $('shared-marks');
    $('shared-signin').hidden = !!token;
    $('shared-close').innerHTML = '&times;';
    $('shared-close').addEventListener('click', () => this.show(false));
    $('tool-point').addEventListener('click', () => this.setTool('point'));
    $('tool-draw').addEventListener('click', () => this.setTool('draw'));
    this._wireDrawing();
    signaling.on('shared-item', (item) => this.add(item, true));
    signaling.on('pointer', (p) => this._showPointer(p));
    document.addEventListener('hoichan:lang', () => this.render());
  }

  /** What was shared before we came in (signed-in participants only: the list needs the token). */
  async load() {
    if (!this.token) return;
    try {
      const res = await fetch(`/api/rooms/${encodeURIComponent(this.room)}/shared`, { headers: this._auth() });
      if (!res.ok) return;
      const body = await res.json();
      for (const item of body.items) this.add(item, false);
    } catch { /* offline: live items still arrive */ }
  }

  /** @param {SharedItem} item @param {boolean} live shown to the room just now (opens the panel, shows it) */
  add(item, live) {
    if (!item?.id || this.items.some((i) => i.id === item.id)) return;
    this.items.push(item);
    if (item.kind === 'image' && (live || !this.currentImage)) this.currentImage = item.id;
    if (live || this.items.length === 1) this.show(true);
    this.render();
  }

  /** @param {boolean} open */
  show(open) {
    this.panel.hidden = !open;
    document.body.dataset.shared = open ? 'open' : 'closed';
    this._changed();
  }

  _changed() {
    this.onChange(this.items.filter((i) => i.kind !== 'annotation').length, !this.panel.hidden);
  }

  toggle() {
    this.show(this.panel.hidden);
  }

  /** @param {'point'|'draw'} tool */
  setTool(tool) {
    this.tool = tool;
    $('tool-point').setAttribute('aria-pressed', String(tool === 'point'));
    $('tool-draw').setAttribute('aria-pressed', String(tool === 'draw'));
    this.stage.dataset.tool = tool;
  }

  // ---- sharing ----------------------------------------------------------------------------------------------

  /** @param {File} file */
  async uploadImage(file) {
    const form = new FormData();
    form.append('image', file, file.name || 'image');
    const closing = toast(t('shared.uploading'), { timeoutMs: 0 });
    try {
      const res = await fetch(`/api/rooms/${encodeURIComponent(this.room)}/shared/images`, {
        method: 'POST', headers: this._auth(), body: form,
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw Object.assign(new Error(body?.error?.message ?? res.statusText), { code: body?.error?.code });
      this.add(body.item, true);
    } catch (err) {
      toast(t('shared.uploadFailed', { reason: imageError(err) }), { kind: 'error', timeoutMs: 10000 });
    } finally {
      closing();
    }
  }

  /** @param {Record<string, number>} values @returns {Promise<{ok: boolean, message?: string}>} */
  async sendVitals(values) {
    try {
      const ack = await this.signaling.request('share-vitals', values);
      if (ack?.ok) {
        this.add(ack.item, true);
        return { ok: true };
      }
      return { ok: false, message: errorText(ack?.error?.code, ack?.error?.message) + ` (${ack?.error?.message ?? ''})` };
    } catch {
      return { ok: false, message: t('error.timeout') };
    }
  }

  async _annotate(shape, points) {
    if (!this.currentImage) return;
    try {
      const ack = await this.signaling.request('annotate', { imageId: this.currentImage, shape, points });
      if (ack?.ok && ack.item) this.add(ack.item, false);
      else if (!ack?.ok && shape !== 'pointer') toast(errorText(ack?.error?.code, ack?.error?.message), { kind: 'error' });
    } catch { /* a lost pointer move does not matter; a lost mark shows as missing */ }
  }

  // ---- drawing on the image ---------------------------------------------------------------------------------

  _wireDrawing() {
    this.setTool('point');
    const at = (e) => {
      const box = this.imageEl.getBoundingClientRect();
      const clamp = (v) => Math.min(1, Math.max(0, v));
      return [clamp((e.clientX - box.left) / box.width), clamp((e.clientY - box.top) / box.height)]
        .map((v) => Math.round(v * 10000) / 10000);
    };
    this.stage.addEventListener('pointerdown', (e) => {
      if (!this.currentImage || !this.token) return;
      e.preventDefault();
      if (this.tool === 'draw') {
        this.stage.setPointerCapture(e.pointerId);
        this.stroke = [at(e)];
      } else {
        this._annotate('pin', [at(e)]);
      }
    });
    this.stage.addEventListener('pointermove', (e) => {
      if (!this.currentImage || !this.token) return;
      if (this.stroke) {
        const p = at(e);
        const last = this.stroke[this.stroke.length - 1];
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) > 0.004) this.stroke.push(p);
        this._drawLive();
        return;
      }
      const now = performance.now();
      if (this.tool === 'point' && now - this.lastPointerAt > POINTER_INTERVAL_MS) {
        this.lastPointerAt = now;
        this._annotate('pointer', [at(e)]);
      }
    });
    const finish = () => {
      const stroke = this.stroke;
      this.stroke = null;
      this.strokes.querySelector('.live')?.remove();
      if (stroke && stroke.length >= 2) this._annotate('stroke', thin(stroke, MAX_STROKE_POINTS));
    };
    this.stage.addEventListener('pointerup', finish);
    this.stage.addEventListener('pointercancel', finish);
  }

  _drawLive() {
    let line = this.strokes.querySelector('.live');
    if (!line) {
      line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
      line.classList.add('live');
      line.setAttribute('stroke', colourOf(this.selfId() ?? ''));
      this.strokes.append(line);
    }
    line.setAttribute('points', this.stroke.map((p) => p.join(',')).join(' '));
  }

  /** @param {{imageId: string, participantId: string, name: string, x: number, y: number}} p */
  _showPointer(p) {
    if (p.imageId !== this.currentImage) return;
    let entry = this.pointers.get(p.participantId);
    if (!entry) {
      const el = document.createElement('div');
      el.className = 'shared-pointer';
      el.style.setProperty('--colour', colourOf(p.participantId));
      el.textContent = p.name;
      this.marks.append(el);
      entry = { el, timer: 0 };
      this.pointers.set(p.participantId, entry);
    }
    entry.el.style.left = `${p.x * 100}%`;
    entry.el.style.top = `${p.y * 100}%`;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.el.remove();
      this.pointers.delete(p.participantId);
    }, POINTER_FADE_MS);
  }

  // ---- rendering --------------------------------------------------------------------------------------------

  render() {
    const images = this.items.filter((i) => i.kind === 'image');
    const current = images.find((i) => i.id === this.currentImage) ?? null;
    $('shared-viewer').hidden = !current;
    if (current) this._renderImage(current);
    this._renderThumbs(images);
    this._renderVitals(this.items.filter((i) => i.kind === 'vitals'));
    this._changed();
  }

  /** @param {SharedItem} item */
  async _renderImage(item) {
    $('shared-caption').textContent = [item.data.caption, t('shared.by', { name: item.author.name, time: clock(item.at) })]
      .filter(Boolean).join(' · ');
    this.stage.dataset.imageId = item.id;
    for (const { el } of this.pointers.values()) el.remove();
    this.pointers.clear();
    this.strokes.replaceChildren();
    this.marks.replaceChildren();
    for (const mark of this.items.filter((i) => i.kind === 'annotation' && i.data.imageId === item.id)) {
      const colour = colourOf(mark.author.participantId);
      if (mark.data.shape === 'stroke') {
        const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
        line.setAttribute('points', mark.data.points.map((p) => p.join(',')).join(' '));
        line.setAttribute('stroke', colour);
        this.strokes.append(line);
      } else {
        const pin = document.createElement('div');
        pin.className = 'shared-pin';
        pin.style.setProperty('--colour', colour);
        pin.style.left = `${mark.data.points[0][0] * 100}%`;
        pin.style.top = `${mark.data.points[0][1] * 100}%`;
        pin.title = mark.author.name;
        this.marks.append(pin);
      }
    }
    const url = await this._blobUrl(item);
    if (url && this.currentImage === item.id && this.imageEl.src !== url) {
      this.imageEl.src = url;
      this.imageEl.alt = item.data.caption ?? t('shared.image');
    }
  }

  /** @param {SharedItem} item @returns {Promise<string|null>} */
  async _blobUrl(item) {
    if (this.blobs.has(item.id)) return this.blobs.get(item.id);
    if (!this.token) return null;
    try {
      const res = await fetch(item.data.url, { headers: this._auth() });
      if (!res.ok) return null;
      const url = URL.createObjectURL(await res.blob());
      this.blobs.set(item.id, url);
      return url;
    } catch {
      return null;
    }
  }

  /** @param {SharedItem[]} images */
  _renderThumbs(images) {
    const list = $('shared-thumbs');
    list.hidden = images.length < 2;
    list.replaceChildren(...images.map((item, n) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'shared-thumb';
      b.setAttribute('aria-pressed', String(item.id === this.currentImage));
      b.textContent = item.data.caption || t('shared.imageN', { n: n + 1 });
      b.title = t('shared.by', { name: item.author.name, time: clock(item.at) });
      b.addEventListener('click', () => {
        this.currentImage = item.id;
        this.render();
      });
      li.append(b);
      return li;
    }));
  }

  /** @param {SharedItem[]} cards newest first */
  _renderVitals(cards) {
    const list = $('shared-vitals');
    list.replaceChildren(...cards.slice().reverse().map((item) => {
      const li = document.createElement('li');
      li.className = 'vitals-card';
      li.dataset.itemId = item.id;
      const head = document.createElement('p');
      head.className = 'vitals-head';
      head.textContent = t('shared.by', { name: item.author.name, time: clock(item.at) });
      const dl = document.createElement('dl');
      const { values, units } = item.data;
      for (const key of VITAL_ORDER) {
        let value;
        let unit;
        if (key === 'bloodPressure') {
          if (values.systolic === undefined) continue;
          value = `${values.systolic}/${values.diastolic}`;
          unit = units.systolic;
        } else {
          if (values[key] === undefined) continue;
          value = String(values[key]);
          unit = units[key];
        }
        const dt = document.createElement('dt');
        dt.textContent = t(`vitals.${key}`);
        const dd = document.createElement('dd');
        dd.dataset.vital = key;
        dd.textContent = `${value} ${unit === '/min' ? t('unit.perMin') : unit}`;
        dl.append(dt, dd);
      }
      li.append(head, dl);
      return li;
    }));
  }

  _auth() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }
}

/** At most n points, evenly picked, first and last kept. */
function thin(points, n) {
  if (points.length <= n) return points;
  const out = [];
  for (let i = 0; i < n; i++) out.push(points[Math.round((i * (points.length - 1)) / (n - 1))]);
  return out;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function imageError(err) {
  const key = `shared.error.${err?.code}`;
  const text = t(key);
  return text === key ? (err?.message || t('error.unknown')) : text;
}
