// The consultation session as a state machine over protocol.md: join / resume, server offers, peers, media
// restarts, leave. No DOM here; room.js renders what this reports through events.

import { Signaling } from './signaling.js';
import { PeerSession } from './peer.js';

/** @typedef {'connecting'|'connected'|'reconnecting'|'failed'|'left'} ConnState */
/** @typedef {{id: string, name: string, facility: string, facilityName: string, audioMuted: boolean, videoOff: boolean}} Participant */
/** @typedef {{reason: 'network'|'media'|'join'|'auth', code?: string, message?: string}} Failure */

const JOIN_TIMEOUT_MS = 10000;
/** How long to show "reconnecting" before admitting "failed" (socket.io keeps retrying in the background). */
const OFFLINE_FAIL_MS = 45000;
/** First connection: give up showing "connecting" after this. */
const FIRST_CONNECT_FAIL_MS = 20000;
/** ICE "disconnected" this long → rebuild the peer connection rather than wait ~30 s for "failed". */
const ICE_DISCONNECTED_RESTART_MS = 10000;
/** Our own `failed` detection and the server's `media-failed` usually arrive together: one restart for both. */
const RESTART_DEDUPE_MS = 5000;
/** More restarts than this within the window means the path is broken: show "failed" + retry. */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 120000;

export class Session extends EventTarget {
  /**
   * @param {{room: string, name: string, facility: string, token?: string|null,
   *   localMedia: import('./media.js').LocalMedia}} opts  token: sign-in token (none = a guest)
   */
  constructor({ room, name, facility, token = null, localMedia, record = null, point = null }) {
    super();
    this.room = room;
    /** The connection point this page is at (lobby's choice): its caps apply to us. @type {string|null} */
    this.point = point;
    this.name = name;
    this.facility = facility;
    this.media = localMedia;
    /** Whether to record the room, when this participant opens it and the server lets them choose. */
    this.record = record;
    /** @type {{active: boolean, recordingId: string|null, error: string|null}} */
    this.recording = { active: false, recordingId: null, error: null };

    /** @type {ConnState} */
    this.state = 'connecting';
    /** @type {Failure|null} */
    this.failure = null;
    /** @type {string|null} */
    this.participantId = null;
    /** @type {Participant|null} */
    this.self = null;
    /** Other participants by id (plain object so tests can read it through page.evaluate). */
    /** @type {Record<string, Participant>} */
    this.peers = {};
    /** @type {string|null} */
    this.resumeToken = null;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];

    this.joined = false;       // the server knows this socket as our participant
    this.everJoined = false;
    this.mediaEverConnected = false;
    this.left = false;
    this.joinSeq = 0;
    /** Offer that arrived before the join ack (so before we had iceServers to build the pc). */
    this.earlyOffer = null;
    /** Peer events seen while a join is in flight, replayed over the ack's snapshot. */
    this.eventsDuringJoin = null;
    this.pendingRestart = false;
    this.lastRestartAt = 0;
    /** @type {number[]} */
    this.restartTimes = [];
    this.watchdog = 0;
    this.iceTimer = 0;

    this.signaling = new Signaling({
      onConnect: () => this._onConnect(),
      onDisconnect: (reason) => this._onDisconnect(reason),
      onConnectError: (err) => this._onConnectError(err),
    }, token);
    this.peer = new PeerSession({
      localMedia,
      send: (event, payload, opts) => this.signaling.send(event, payload, opts),
    });
    this.peer.addEventListener('connectionstatechange', (e) => this._onPcState(e.detail.state));
    this.peer.addEventListener('remote-media', (e) => this._emit('remote-media', e.detail));
    this.peer.addEventListener('negotiation-error', (e) => {
      this._emit('client-error', { code: 'invalid-sdp', message: String(e.detail.error?.message || e.detail.error) });
      this.restartMedia('negotiation-error');
    });
    // Mute / camera off / device unplugged: tell the room (no renegotiation, see media.js).
    this.media.addEventListener('change', () => this._sendMediaState());
  }

  get pc() {
    return this.peer.pc;
  }

  start() {
    this._bindServerEvents();
    this._arm(FIRST_CONNECT_FAIL_MS);
    this.signaling.connect();
    this._updateState();
  }

  /** User pressed "retry" on the failed banner. */
  retry() {
    if (this.left) return;
    this.failure = null;
    this.restartTimes = [];
    if (!this.signaling.connected) {
      this._arm(FIRST_CONNECT_FAIL_MS);
      this.signaling.reconnectNow();
    } else if (!this.joined) {
      this._join();
    } else {
      this.restartMedia('user', { force: true });
    }
    this._updateState();
  }

  /** Leave politely: tell the server (so the room sees `peer-left` at once), then drop everything. */
  async leave() {
    if (this.left) return;
    this.left = true;
    this._clearTimers();
    this._updateState(); // show "left" at once; the goodbye below may take a moment
    if (this.joined && this.signaling.connected) {
      try {
        await this.signaling.request('leave', {}, 1500);
      } catch { /* no ack: the grace period removes us anyway */ }
    }
    this.signaling.close();
    this.peer.close();
  }

  /** Page is going away: no time to wait for an ack. */
  leaveNow() {
    if (this.left) return;
    this.left = true;
    if (this.joined && this.signaling.connected) this.signaling.socket.emit('leave', {});
    this.signaling.close();
    this.peer.close();
  }

  /**
   * Rebuild the media path: tell the server, then replace our pc; the server answers with a fresh offer.
   * @param {string} why for the log
   * @param {{force?: boolean}} [opts]
   */
  restartMedia(why, { force = false } = {}) {
    if (this.left) return;
    const now = Date.now();
    if (!force && now - this.lastRestartAt < RESTART_DEDUPE_MS) return;
    if (!this.joined || !this.signaling.connected) {
      // Can't signal now; the resume handler restarts once the socket is back.
      this.pendingRestart = true;
      return;
    }
    this.restartTimes = this.restartTimes.filter((t) => now - t < RESTART_WINDOW_MS);
    if (!force && this.restartTimes.length >= MAX_RESTARTS) {
      this._fail({ reason: 'media' });
      return;
    }
    console.info('restarting media:', why);
    this.restartTimes.push(now);
    this.lastRestartAt = now;
    this.pendingRestart = false;
    clearTimeout(this.iceTimer);
    // Answers/candidates still queued belong to the pc we are about to drop.
    this.signaling.clearQueue((m) => m.event === 'answer' || m.event === 'candidate');
    this.signaling.send('restart-media', {});
    this.peer.create(this.iceServers);
    this._emit('media-restart', { why });
    this._updateState();
  }

  // ---- socket lifecycle -------------------------------------------------------------------------------------

  _onConnect() {
    if (this.left) return;
    this._join();
  }

  /** The server refusing the connection (no or bad sign-in) is final: socket.io does not retry it, nor do we. */
  _onConnectError(err) {
    console.warn('socket connect error', err.message);
    const code = /** @type {any} */ (err).data?.code;
    if (this.left || (code !== 'unauthorized' && code !== 'forbidden')) return;
    this._clearTimers();
    this._fail({ reason: 'auth', code, message: /** @type {any} */ (err).data?.message });
  }

  _onDisconnect(reason) {
    if (this.left) return;
    console.warn('socket disconnected:', reason);
    this.joined = false;
    this.joinSeq++; // any join ack still in flight is void
    if (reason === 'io server disconnect') {
      // The server closed us on purpose (this participant was resumed from another socket, e.g. a duplicated
      // tab). Resuming automatically would take it back and start a tug of war: let the user decide.
      this._fail({ reason: 'network', code: 'server-disconnect' });
      return;
    }
    this._arm(this.everJoined ? OFFLINE_FAIL_MS : FIRST_CONNECT_FAIL_MS);
    this._updateState();
  }

  async _join() {
    const seq = ++this.joinSeq;
    const resume = this.resumeToken;
    // A signed-in participant's name and facility come from the account: the server ignores what we send.
    /** @type {{room: string, name?: string, facility?: string, resume?: string, record?: boolean}} */
    const payload = { room: this.room };
    if (this.name) payload.name = this.name;
    if (this.facility) payload.facility = this.facility;
    if (resume) {
      payload.resume = resume;
    } else {
      if (this.record !== null) payload.record = this.record;
      if (this.point) payload.point = this.point;
      // A fresh join creates a new participant: whatever belonged to an older one is void.
      this.peer.close();
      this.earlyOffer = null;
      this.signaling.clearQueue();
    }
    this.eventsDuringJoin = [];

    let ack;
    try {
      ack = await this.signaling.request('join', payload, JOIN_TIMEOUT_MS);
    } catch (err) {
      if (seq !== this.joinSeq || this.left) return;
      this.eventsDuringJoin = null;
      console.warn('join: no ack', err);
      // Socket still up but the server is silent: surface it. If the socket dropped, reconnect will re-join.
      if (this.signaling.connected) this._fail({ reason: 'network', code: 'timeout' });
      return;
    }
    if (seq !== this.joinSeq || this.left) return;
    const replay = this.eventsDuringJoin ?? [];
    this.eventsDuringJoin = null;

    if (!ack?.ok) {
      const code = ack?.error?.code ?? 'unknown';
      if (resume && code === 'bad-resume') {
        // Grace period expired or server restarted: join as a new participant.
        this.resumeToken = null;
        this._emit('notice', { key: 'error.bad-resume' });
        this._join();
        return;
      }
      console.warn('join rejected', ack?.error);
      this._fail({ reason: 'join', code, message: ack?.error?.message });
      return;
    }

    this.resumeToken = ack.resumeToken ?? this.resumeToken;
    if (ack.recording) this._setRecording(ack.recording);
    if (Array.isArray(ack.iceServers)) this.iceServers = ack.iceServers;
    if (ack.self) {
      this.self = ack.self;
      this.participantId = ack.self.id;
      this._applyLimits();
    }
    if (Array.isArray(ack.peers)) {
      this.peers = {};
      for (const p of ack.peers) if (p.id !== this.participantId) this.peers[p.id] = p;
    }
    for (const [event, p] of replay) this._applyPeerEvent(event, p, false);

    this.joined = true;
    this.everJoined = true;
    this.failure = null;
    clearTimeout(this.watchdog);
    this._emit('joined', { resumed: !!resume, self: this.self, peers: this.peers });

    if (!resume) {
      this.pendingRestart = false;
      this.restartTimes = [];
      this.peer.create(this.iceServers);
      this.signaling.setJoined();
      if (this.earlyOffer) this.peer.handleOffer(this.earlyOffer);
      this.earlyOffer = null;
      this._sendMediaState();
    } else {
      this.signaling.setJoined(); // flushes the answer / candidates / media-state queued while away
      const cs = this.peer.connectionState;
      // The pc may have recovered by itself while the socket was away; restart only if it is still broken.
      if ((this.pendingRestart && cs !== 'connected') || !this.peer.pc || cs === 'failed' || cs === 'closed') {
        this.restartMedia('resume', { force: true });
      }
    }
    this._updateState();
  }

  // ---- server events ----------------------------------------------------------------------------------------

  /** The room's recording state: shown to everyone, from the first second. */
  _setRecording(r) {
    const stopped = this.recording.active && !r.active;
    this.recording = { active: !!r.active, recordingId: r.recordingId ?? null, error: r.error ?? null };
    this._emit('recording', { ...this.recording, stopped });
  }

  _bindServerEvents() {
    const s = this.signaling;
    s.on('offer', (p) => {
      if (this.left) return;
      if (!this.peer.pc) {
        this.earlyOffer = p; // arrived before the join ack
        return;
      }
      this.peer.handleOffer(p);
    });
    s.on('answer', () => console.warn('unexpected answer: this client never sends offers'));
    s.on('candidate', (c) => this.peer.addRemoteCandidate(c));
    for (const event of ['peer-joined', 'peer-left', 'peer-updated']) {
      s.on(event, (p) => {
        if (this.left || !p?.id) return;
        this.eventsDuringJoin?.push([event, p]);
        this._applyPeerEvent(event, p, true);
      });
    }
    s.on('media-failed', () => this.restartMedia('server media-failed'));
    // What the relay sends us of each participant's video: layer, or paused and why (protocol.md Adaptation).
    s.on('adaptation', (a) => {
      if (!this.left) this._emit('adaptation', a);
    });
    s.on('recording-state', (r) => this._setRecording(r));
    // Everyone's link, ours included, every 2 s and on each grade change (protocol.md LinkQuality).
    s.on('link-quality', (q) => {
      if (!this.left && q?.participantId) this._emit('link-quality', q);
    });
    s.on('error', (e) => {
      console.warn('server error', e);
      // A rejected join comes twice (ack and `error`); the ack drives the banner, so no toast for it.
      if (e?.event === 'join' && this.eventsDuringJoin) return;
      this._emit('server-error', { code: e?.code ?? 'unknown', message: e?.message ?? '', event: e?.event });
    });
  }

  /**
   * @param {string} event
   * @param {any} p
   * @param {boolean} announce whether the UI should tell the user (not when replaying)
   */
  _applyPeerEvent(event, p, announce) {
    if (p.id === this.participantId) {
      if (event === 'peer-updated') {
        this.self = { ...this.self, ...p };
        this._applyLimits();
        this._emit('self-updated', { self: this.self });
      }
      return;
    }
    if (event === 'peer-left') {
      const peer = this.peers[p.id];
      if (!peer) return;
      delete this.peers[p.id];
      this._emit('peer-left', { id: p.id, peer, announce });
    } else {
      const known = p.id in this.peers;
      this.peers[p.id] = { ...this.peers[p.id], ...p };
      const kind = event === 'peer-joined' && !known ? 'peer-joined' : 'peer-updated';
      this._emit(kind, { peer: this.peers[p.id], announce });
    }
  }

  // ---- media connection -------------------------------------------------------------------------------------

  _onPcState(state) {
    clearTimeout(this.iceTimer);
    if (state === 'connected') {
      this.mediaEverConnected = true;
      if (this.failure?.reason === 'media') this.failure = null;
    } else if (state === 'disconnected') {
      this.iceTimer = setTimeout(() => this.restartMedia('ice disconnected too long'), ICE_DISCONNECTED_RESTART_MS);
    } else if (state === 'failed') {
      this.restartMedia('pc failed');
    }
    this._updateState();
  }

  /** Our site's limits as the server says: audio-only stops our video (the far end shows "audio only"). */
  _applyLimits() {
    this.peer.setAudioOnly(!!this.self?.limits?.audioOnly);
  }

  /**
   * Switch our own site to audio-only, or back (a point's cap may keep it audio-only).
   * @param {boolean} on
   */
  async setAudioOnly(on) {
    return this.signaling.request('audio-only', { on });
  }

  _sendMediaState() {
    this.signaling.send('media-state', { audioMuted: this.media.audioMuted, videoOff: this.media.videoOff },
      { coalesce: 'media-state' });
  }

  // ---- state ------------------------------------------------------------------------------------------------

  /** @param {Failure} failure */
  _fail(failure) {
    this.failure = failure;
    this._updateState();
  }

  /** After ms without being joined, show "failed" (socket.io keeps retrying; success clears it). */
  _arm(ms) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (!this.joined && !this.left) this._fail({ reason: 'network' });
    }, ms);
  }

  _clearTimers() {
    clearTimeout(this.watchdog);
    clearTimeout(this.iceTimer);
  }

  _updateState() {
    /** @type {ConnState} */
    let state;
    if (this.left) state = 'left';
    else if (this.failure) state = 'failed';
    else if (!this.joined) state = this.everJoined ? 'reconnecting' : 'connecting';
    else if (this.peer.connectionState === 'connected') state = 'connected';
    else state = this.mediaEverConnected ? 'reconnecting' : 'connecting';
    if (state === this.state && state !== 'failed') return;
    this.state = state;
    this._emit('state', { state, failure: this.failure });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
