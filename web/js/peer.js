// The one RTCPeerConnection to the media server and its negotiation. The server is the offerer (protocol.md): we
// answer, publish our mic/camera on the slots it offers for them, and map its forwarding slots to participants.

/**
 * @typedef {{participantId: string, kind: 'audio'|'video'}} TrackSlot
 * @typedef {Record<string, TrackSlot>} TrackMap  keyed by transceiver mid
 * @typedef {{audio: MediaStreamTrack|null, video: MediaStreamTrack|null}} ParticipantTracks
 * @typedef {Map<string, ParticipantTracks>} RemoteMedia  keyed by participant id
 * @typedef {(event: string, payload: object, opts?: {coalesce?: string}) => void} SendFn
 */

const RECEIVING = new Set(['recvonly', 'sendrecv']);

/** @param {string|undefined} sdp */
function iceUfrag(sdp) {
  return sdp ? /^a=ice-ufrag:(\S+)/m.exec(sdp)?.[1] ?? null : null;
}

export class PeerSession extends EventTarget {
  /**
   * @param {{localMedia: import('./media.js').LocalMedia, send: SendFn}} opts
   */
  constructor({ localMedia, send }) {
    super();
    this.localMedia = localMedia;
    this.send = send;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** Slot map from the latest offer. @type {TrackMap} */
    this.tracks = {};
    /** Mids we publish on, kept stable across renegotiations. */
    this.publishMids = { audio: null, video: null };
    /** Audio-only site: our video slot stays negotiated but sends nothing. */
    this.audioOnly = false;
    /** Negotiation steps run one at a time, in arrival order. */
    this._chain = Promise.resolve();
    /**
     * ICE ufrags of server peer connections we have replaced. Offers carry no generation id, so an offer the
     * server sent for its old pc just before handling our `restart-media` would otherwise land on the new pc;
     * the server's fresh pc always has a fresh ufrag.
     * @type {Set<string>}
     */
    this.staleUfrags = new Set();
  }

  /**
   * Replace the peer connection with a fresh one (first join, or media restart). The old one is closed; its late
   * events are ignored because every handler checks it is still the current pc.
   * @param {RTCIceServer[]} [iceServers]
   */
  create(iceServers = this.iceServers) {
    const old = iceUfrag(this.pc?.remoteDescription?.sdp);
    if (old) this.staleUfrags.add(old);
    this.close();
    this.iceServers = iceServers;
    this.tracks = {};
    this.publishMids = { audio: null, video: null };
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;

    pc.addEventListener('icecandidate', (e) => {
      if (pc !== this.pc) return;
      if (e.candidate && e.candidate.candidate) {
        this.send('candidate', {
          candidate: e.candidate.candidate,
          sdpMid: e.candidate.sdpMid,
          sdpMLineIndex: e.candidate.sdpMLineIndex,
        });
      } else {
        // End of candidates. With BUNDLE one transport carries every m-line, so tag it with the first one.
        const first = pc.getTransceivers().find((t) => t.mid !== null);
        this.send('candidate', { candidate: '', sdpMid: first?.mid ?? '0', sdpMLineIndex: 0 });
      }
    });
    pc.addEventListener('track', (e) => {
      if (pc !== this.pc) return;
      if (!(e.transceiver.mid in this.tracks)) return; // our own publishing slot: nothing to show
      this._emitRemote();
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc !== this.pc) return;
      this.dispatchEvent(new CustomEvent('connectionstatechange', { detail: { state: pc.connectionState } }));
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc === this.pc) console.debug('ICE', pc.iceConnectionState);
    });
    this._emitRemote();
    return pc;
  }

  close() {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
  }

  get connectionState() {
    return this.pc ? this.pc.connectionState : 'new';
  }

  /**
   * Server offer: apply it, publish local media on our slots, answer.
   * @param {{sdp: string, tracks?: TrackMap}} offer
   */
  handleOffer(offer) {
    return this._enqueue(async () => {
      // Our slots need the tracks attached before answering, so wait for getUserMedia to settle.
      await this.localMedia.ready;
      const pc = this.pc;
      if (!pc) return;
      const ufrag = iceUfrag(offer.sdp);
      if (ufrag && this.staleUfrags.has(ufrag)) {
        console.info('ignoring an offer for a replaced peer connection');
        return;
      }
      // Set before applying: `track` events fire inside setRemoteDescription and look the mid up here.
      this.tracks = offer.tracks ?? {};
      await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
      if (pc !== this.pc) return;
      await this._attachLocal(pc);
      const answer = await pc.createAnswer();
      if (pc !== this.pc) return;
      await pc.setLocalDescription(answer);
      if (pc !== this.pc) return;
      this.send('answer', { sdp: pc.localDescription.sdp });
      this._emitRemote();
    });
  }

  /** Not in protocol.md's server→client list (aiortc puts its candidates in the SDP); accepted if it ever comes. */
  addRemoteCandidate(c) {
    return this._enqueue(async () => {
      const pc = this.pc;
      if (!pc || !pc.remoteDescription) return;
      await pc.addIceCandidate(c?.candidate ? c : null);
    });
  }

  /**
   * The server offers one recvonly audio and one recvonly video m-line for what we publish: those are the
   * transceivers whose mid is not in `tracks`. Put our tracks there and turn them sendonly.
   * @param {RTCPeerConnection} pc
   */
  async _attachLocal(pc) {
    for (const kind of /** @type {const} */ (['audio', 'video'])) {
      const slots = pc.getTransceivers().filter((t) =>
        t.mid !== null && t.direction !== 'stopped' && !(t.mid in this.tracks) && t.receiver.track.kind === kind);
      const slot = slots.find((t) => t.mid === this.publishMids[kind]) ?? slots[0];
      if (!slot) continue;
      this.publishMids[kind] = slot.mid;
      const track = this.localMedia.hasLive(kind) ? this.localMedia.track(kind) : null;
      const sent = kind === 'video' && this.audioOnly ? null : track;
      if (slot.sender.track !== sent) await slot.sender.replaceTrack(sent);
      // Nothing to send (no device): say so rather than leaving an empty sendonly slot.
      slot.direction = track ? 'sendonly' : 'inactive';
    }
  }

  /**
   * Audio-only (the server says our site is): stop sending video, no renegotiation (replaceTrack), or send it again.
   * @param {boolean} on
   */
  setAudioOnly(on) {
    if (on === this.audioOnly) return;
    this.audioOnly = on;
    const pc = this.pc;
    if (pc) this._enqueue(() => this._attachLocal(pc));
  }

  /** Current participant → tracks mapping, rebuilt from scratch from the latest slot map. @returns {RemoteMedia} */
  remoteMedia() {
    /** @type {RemoteMedia} */
    const media = new Map();
    const pc = this.pc;
    if (!pc) return media;
    for (const t of pc.getTransceivers()) {
      const slot = t.mid !== null ? this.tracks[t.mid] : undefined;
      if (!slot) continue;
      // currentDirection is null until the first answer is applied; after that, skip slots the server idled.
      if (t.currentDirection && !RECEIVING.has(t.currentDirection)) continue;
      const entry = media.get(slot.participantId) ?? { audio: null, video: null };
      entry[slot.kind] = t.receiver.track;
      media.set(slot.participantId, entry);
    }
    return media;
  }

  _emitRemote() {
    this.dispatchEvent(new CustomEvent('remote-media', { detail: { media: this.remoteMedia() } }));
  }

  /** @param {() => Promise<void>} step */
  _enqueue(step) {
    const run = this._chain.then(step);
    this._chain = run.catch((error) => {
      console.error('negotiation failed', error);
      this.dispatchEvent(new CustomEvent('negotiation-error', { detail: { error } }));
    });
    return this._chain;
  }
}
