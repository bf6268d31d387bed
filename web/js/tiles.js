// DOM for participant tiles: one <div class="tile" data-participant-id> per remote participant, with video,
// name + facility, a muted-mic badge and a camera-off placeholder. Also used for the local preview.

import { icons } from './icons.js';
import { t } from './i18n.js';

/** @typedef {import('./session.js').Participant} Participant */
/** @typedef {import('./peer.js').ParticipantTracks} ParticipantTracks */

/** Initials for the placeholder avatar; skips titles like "BS." / "Dr.". */
export function initials(name) {
  const words = name.trim().split(/\s+/).filter((w) => w && !w.endsWith('.'));
  if (!words.length) return '?';
  const first = words[0][0];
  const last = words.length > 1 ? words[words.length - 1][0] : '';
  return (first + last).toUpperCase();
}

/** One tile's DOM and media. */
export class Tile {
  /**
   * @param {{id?: string, local?: boolean}} opts
   */
  constructor({ id, local = false } = {}) {
    const el = document.createElement('div');
    el.className = local ? 'tile tile-local' : 'tile';
    if (id) el.dataset.participantId = id;
    el.innerHTML = `
      <video playsinline autoplay></video>
      <div class="tile-placeholder">
        <div class="avatar" aria-hidden="true"></div>
        <div class="placeholder-text"></div>
      </div>
      <div class="tile-label">
        <span class="mic-off-badge" hidden>${icons.micOff}</span>
        <span class="tile-name"></span>
        <span class="tile-facility"></span>
        <span class="tile-adaptation" hidden></span>
        <button type="button" class="link-quality" hidden>
          <span class="lq-bar"></span><span class="lq-bar"></span><span class="lq-bar"></span><span class="lq-bar"></span>
        </button>
      </div>
      <dl class="link-quality-details" hidden></dl>`;
    this.el = el;
    this.local = local;
    this.video = /** @type {HTMLVideoElement} */ (el.querySelector('video'));
    if (local) this.video.muted = true; // never play our own mic back
    this.micBadge = /** @type {HTMLElement} */ (el.querySelector('.mic-off-badge'));
    this.nameEl = /** @type {HTMLElement} */ (el.querySelector('.tile-name'));
    this.facilityEl = /** @type {HTMLElement} */ (el.querySelector('.tile-facility'));
    this.avatar = /** @type {HTMLElement} */ (el.querySelector('.avatar'));
    this.placeholderText = /** @type {HTMLElement} */ (el.querySelector('.placeholder-text'));
    this.qualityButton = /** @type {HTMLButtonElement} */ (el.querySelector('.link-quality'));
    this.qualityDetails = /** @type {HTMLElement} */ (el.querySelector('.link-quality-details'));
    this.adaptationEl = /** @type {HTMLElement} */ (el.querySelector('.tile-adaptation'));
    /** What the relay does with this participant's video for us (`adaptation` event: layer, paused, why). */
    /** @type {{layer: number|null, layers: number, paused: boolean, reason: string|null} | null} */
    this.received = null;
    // Hover shows the figures (title); a tap or click pins them open.
    this.qualityButton.addEventListener('click', (e) => {
      e.stopPropagation();
      this.qualityDetails.hidden = !this.qualityDetails.hidden;
      this.qualityButton.setAttribute('aria-expanded', String(!this.qualityDetails.hidden));
    });
    /** The latest `link-quality` about this participant (protocol.md LinkQuality), null until one arrives. */
    /** @type {Record<string, any> | null} */
    this.quality = null;
    /** placeholderKey: i18n key overriding the placeholder text (local tile without a camera). */
    /** facilityName: the facility as the directory names it ("TTYT huyện Mường Tè"), shown instead of its id. */
    /** limits: what applies to this participant's site (audio-only, kbit/s caps), as the server says. */
    /** @type {{name: string, facility: string, facilityName?: string, audioMuted: boolean, videoOff: boolean, placeholderKey?: string, limits?: Record<string, any>}} */
    this.info = { name: '', facility: '', audioMuted: false, videoOff: false };
    /** @type {ParticipantTracks} */
    this.tracks = { audio: null, video: null };
    this.trackListeners = new AbortController();
    this.render();
  }

  /** @param {{layer: number|null, layers: number, paused: boolean, reason: string|null} | null} received */
  setReceived(received) {
    this.received = received;
    this.render();
  }

  /** @param {Partial<Participant> & {placeholderKey?: string}} info */
  setInfo(info) {
    this.info = { ...this.info, ...info };
    this.render();
  }

  /**
   * Attach tracks (replacing the stream only when the tracks actually changed, so video does not flicker).
   * @param {ParticipantTracks} tracks
   * @param {(video: HTMLVideoElement) => void} play
   */
  setTracks(tracks, play) {
    if (tracks.audio === this.tracks.audio && tracks.video === this.tracks.video) return;
    this.tracks = { ...tracks };
    this.trackListeners.abort();
    this.trackListeners = new AbortController();
    const list = [tracks.audio, tracks.video].filter(Boolean);
    this.video.srcObject = list.length ? new MediaStream(list) : null;
    // A remote video track is "muted" until packets arrive (and again if they stop): show the placeholder then.
    if (tracks.video) {
      for (const type of ['mute', 'unmute', 'ended']) {
        tracks.video.addEventListener(type, () => this.render(), { signal: this.trackListeners.signal });
      }
    }
    if (list.length) play(this.video);
    this.render();
  }

  /** Local preview: the camera stream as is. @param {MediaStream} stream */
  setLocalStream(stream) {
    // A media element on a stream with no tracks never gets metadata and holds back the page's load event.
    if (stream.getVideoTracks().length) {
      this.video.srcObject = stream;
      this.video.play().catch(() => { /* muted video may always autoplay; ignore aborted plays */ });
    } else {
      this.video.srcObject = null;
    }
    this.render();
  }

  render() {
    const { name, audioMuted, videoOff } = this.info;
    const facility = this.info.facilityName || this.info.facility;
    this.nameEl.textContent = this.local ? `${t('room.you')}${name ? ` · ${name}` : ''}` : name;
    this.facilityEl.textContent = facility || '';
    this.facilityEl.hidden = !facility;
    this.avatar.textContent = initials(name || '?');
    this.micBadge.hidden = !audioMuted;
    this.micBadge.title = t('tile.micMuted');
    this.micBadge.setAttribute('aria-label', t('tile.micMuted'));

    const video = this.local ? this.video.srcObject?.getVideoTracks?.()[0] : this.tracks.video;
    const flowing = !!video && video.readyState === 'live' && !video.muted;
    const limits = this.info.limits ?? {};
    const paused = this.received?.paused ? this.received.reason ?? 'weak-link' : null;
    const showPlaceholder = videoOff || !flowing || !!limits.audioOnly || !!paused;
    this.el.dataset.videoOff = String(!!videoOff);
    this.el.dataset.audioMuted = String(!!audioMuted);
    this.el.classList.toggle('show-placeholder', showPlaceholder);
    const pausedKey = { 'weak-link': 'tile.videoPausedWeak', cap: 'tile.videoPausedCap',
      'audio-only': 'tile.videoPausedAudioOnly' }[paused ?? ''];
    const key = this.info.placeholderKey ?? (limits.audioOnly ? 'tile.audioOnly' : videoOff ? 'tile.cameraOff'
      : pausedKey ?? 'tile.waitingVideo');
    this.placeholderText.textContent = t(key);
    this.renderAdaptation(limits, paused);
    this.renderQuality();
  }

  /**
   * The adaptation in force, in words: audio-only, caps, and (remote tiles) the layer we get or why it is paused.
   * @param {{audioOnly?: boolean, uplinkKbps?: number|null, downlinkKbps?: number|null}} limits
   * @param {string|null} paused
   */
  renderAdaptation(limits, paused) {
    const caps = [limits.uplinkKbps ? `↑${limits.uplinkKbps}` : '', limits.downlinkKbps ? `↓${limits.downlinkKbps}` : '']
      .filter(Boolean).join(' ');
    const parts = [];
    if (limits.audioOnly) parts.push(t('adapt.audioOnly'));
    if (caps) parts.push(t('adapt.capped', { caps: `${caps} kbit/s` }));
    if (paused === 'weak-link') parts.push(t('adapt.pausedWeak'));
    else if (paused === 'cap') parts.push(t('adapt.pausedCap'));
    else if (!limits.audioOnly && this.received?.layer != null && this.received.layers > 1) {
      parts.push(t('adapt.layer', { layer: this.received.layer + 1, layers: this.received.layers }));
    }
    this.adaptationEl.textContent = parts.join(' · ');
    this.adaptationEl.hidden = !parts.length;
    this.el.dataset.audioOnly = String(!!limits.audioOnly);
    this.el.dataset.cappedKbps = caps;
    this.el.dataset.videoPaused = paused ?? '';
  }

  /** @param {Record<string, any>} quality */
  setLinkQuality(quality) {
    this.quality = quality;
    this.renderQuality();
  }

  renderQuality() {
    const q = this.quality;
    this.qualityButton.hidden = !q;
    if (!q) return;
    const grade = ['excellent', 'good', 'poor', 'lost'].includes(q.grade) ? q.grade : 'lost';
    this.el.dataset.linkQuality = grade;
    const label = t('quality.label', { grade: t(`quality.${grade}`) });
    const ms = (v) => (v == null ? '–' : `${Math.round(v)} ms`);
    const pct = (v) => (v == null ? '–' : `${(v * 100).toFixed(1)} %`);
    const kbps = (v) => (v == null ? '–' : `${Math.round(v)} kbit/s`);
    const c = q.candidate;
    const rows = [
      ['quality.mos', q.mos == null ? '–' : Number(q.mos).toFixed(1)],
      ['quality.rtt', ms(q.rttMs)],
      ['quality.jitter', ms(q.jitterMs)],
      ['quality.lossUp', pct(q.lossUp)],
      ['quality.lossDown', pct(q.lossDown)],
      ['quality.send', kbps(q.sendKbps)],
      ['quality.recv', kbps(q.recvKbps)],
      ['quality.remb', `${kbps(q.rembKbps)} / ${kbps(q.rembDownKbps)}`],
      ['quality.candidate', c ? `${c.local} → ${c.remote}, ${String(c.protocol).toUpperCase()}` : '–'],
    ];
    this.qualityButton.title = [label, ...rows.map(([k, v]) => `${t(k)}: ${v}`)].join('\n');
    this.qualityButton.setAttribute('aria-label', label);
    this.qualityDetails.replaceChildren(...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = t(k);
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }));
  }

  destroy() {
    this.trackListeners.abort();
    this.video.srcObject = null;
    this.el.remove();
  }
}

/** The grid of remote tiles. */
export class TileGrid {
  /**
   * @param {HTMLElement} container
   * @param {{onAutoplayBlocked?: () => void, onCountChange?: (n: number) => void}} [hooks]
   */
  constructor(container, hooks = {}) {
    this.container = container;
    this.hooks = hooks;
    /** @type {Map<string, Tile>} */
    this.tiles = new Map();
    /** Latest participant → tracks snapshot, kept so a tile created later still gets its media. */
    /** @type {Map<string, ParticipantTracks>} */
    this.media = new Map();
    /** @type {Map<string, Record<string, any>>} */
    this.quality = new Map();
    /** @type {Record<string, {layer: number|null, layers: number, paused: boolean, reason: string|null}>} */
    this.adaptation = {};
    /** Until the user interacts, Chrome may refuse to autoplay with sound; we then play muted and ask. */
    this.audioBlocked = false;
    this._play = (video) => this._tryPlay(video);
    document.addEventListener('hoichan:lang', () => this.renderAll());
  }

  /** @param {Participant} participant */
  upsert(participant) {
    let tile = this.tiles.get(participant.id);
    if (!tile) {
      tile = new Tile({ id: participant.id });
      this.tiles.set(participant.id, tile);
      this.container.append(tile.el);
      this._countChanged();
    }
    tile.setInfo(participant);
    if (this.adaptation?.[participant.id] && !tile.received) tile.setReceived(this.adaptation[participant.id]);
    const quality = this.quality.get(participant.id);
    if (quality && !tile.quality) tile.setLinkQuality(quality);
    tile.setTracks(this.media.get(participant.id) ?? { audio: null, video: null }, this._play);
  }

  /** The latest link quality of one participant (a tile created later still gets it). @param {Record<string, any>} q */
  setLinkQuality(q) {
    this.quality.set(q.participantId, q);
    this.tiles.get(q.participantId)?.setLinkQuality(q);
  }

  /**
   * Our downlink's adaptation (`adaptation` event): per publisher, the layer we get or why its video is paused.
   * @param {{videos?: Record<string, {layer: number|null, layers: number, paused: boolean, reason: string|null}>}} state
   */
  setAdaptation(state) {
    this.adaptation = state?.videos ?? {};
    for (const [id, tile] of this.tiles) tile.setReceived(this.adaptation[id] ?? null);
  }

  /** @param {string} id */
  remove(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.destroy();
    this.tiles.delete(id);
    this.quality.delete(id);
    this._countChanged();
  }

  /** Make the grid show exactly these participants. @param {Participant[]} participants */
  reset(participants) {
    const keep = new Set(participants.map((p) => p.id));
    for (const id of [...this.tiles.keys()]) if (!keep.has(id)) this.remove(id);
    for (const p of participants) this.upsert(p);
  }

  /** Apply a full participant → tracks snapshot from the peer connection. @param {Map<string, ParticipantTracks>} media */
  setMedia(media) {
    this.media = media;
    for (const [id, tile] of this.tiles) tile.setTracks(media.get(id) ?? { audio: null, video: null }, this._play);
  }

  renderAll() {
    for (const tile of this.tiles.values()) tile.render();
  }

  /** User gesture: un-mute every tile that had to start muted. */
  unlockAudio() {
    this.audioBlocked = false;
    for (const tile of this.tiles.values()) {
      tile.video.muted = false;
      tile.video.play().catch((err) => console.warn('play after unlock failed', err));
    }
  }

  /** @param {HTMLVideoElement} video */
  _tryPlay(video) {
    video.muted = this.audioBlocked;
    video.play().catch((err) => {
      if (err?.name !== 'NotAllowedError') return; // AbortError: a newer srcObject replaced this one
      video.muted = true;
      video.play().catch(() => {});
      if (!this.audioBlocked) {
        this.audioBlocked = true;
        this.hooks.onAutoplayBlocked?.();
      }
    });
  }

  _countChanged() {
    const n = this.tiles.size;
    this.container.dataset.count = String(n);
    this.container.dataset.cols = String(n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4);
    this.hooks.onCountChange?.(n);
  }
}
