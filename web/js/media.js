// The local camera and microphone: acquisition with graceful fallback, and mute / camera-off as track.enabled
// (no renegotiation: the sender keeps its slot, the far end gets silence / black frames plus `peer-updated`).

/**
 * Why some local media is missing, for the notice shown to the user.
 * @typedef {'none'|'noCamera'|'noMic'|'noDevices'|'denied'} MediaProblem
 */

const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    /** @type {MediaStream} */
    this.stream = new MediaStream();
    /** @type {MediaStreamTrack|null} */
    this.audioTrack = null;
    /** @type {MediaStreamTrack|null} */
    this.videoTrack = null;
    this.audioMuted = false;
    this.videoOff = false;
    /** @type {MediaProblem} */
    this.problem = 'none';
    /** Resolves once acquisition finished (successfully or not): negotiation waits for it. */
    this.ready = new Promise((resolve) => { this._resolveReady = resolve; });
  }

  /**
   * Ask for camera + mic; if that fails try each alone, so a laptop without a camera still sends audio.
   * Never throws: a doctor with no devices still joins to watch and listen.
   */
  async acquire() {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.problem = 'noDevices';
      return this._done();
    }
    let denied = false;
    const attempts = [
      { audio: AUDIO_CONSTRAINTS, video: VIDEO_CONSTRAINTS },
      { audio: AUDIO_CONSTRAINTS, video: false },
      { audio: false, video: VIDEO_CONSTRAINTS },
    ];
    for (const constraints of attempts) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        for (const track of stream.getTracks()) this._adopt(track);
        break;
      } catch (err) {
        if (err?.name === 'NotAllowedError' || err?.name === 'SecurityError') denied = true;
        console.warn('getUserMedia failed', constraints, err);
      }
    }
    if (!this.audioTrack && !this.videoTrack) this.problem = denied ? 'denied' : 'noDevices';
    else if (!this.videoTrack) this.problem = denied ? 'denied' : 'noCamera';
    else if (!this.audioTrack) this.problem = denied ? 'denied' : 'noMic';
    return this._done();
  }

  _done() {
    // Missing devices are reported to the room the same way as muted / camera off.
    if (!this.audioTrack) this.audioMuted = true;
    if (!this.videoTrack) this.videoOff = true;
    this._resolveReady();
    this._changed();
    return this;
  }

  /** @param {MediaStreamTrack} track */
  _adopt(track) {
    const kind = /** @type {'audio'|'video'} */ (track.kind);
    if (kind === 'audio' && this.audioTrack) return track.stop();
    if (kind === 'video' && this.videoTrack) return track.stop();
    if (kind === 'audio') this.audioTrack = track;
    else this.videoTrack = track;
    this.stream.addTrack(track);
    // Unplugged device: report it as muted / off and tell the user.
    track.addEventListener('ended', () => {
      if (kind === 'audio') this.audioMuted = true;
      else this.videoOff = true;
      this.dispatchEvent(new CustomEvent('device-lost', { detail: { kind } }));
      this._changed();
    });
  }

  /** @param {'audio'|'video'} kind */
  track(kind) {
    return kind === 'audio' ? this.audioTrack : this.videoTrack;
  }

  hasLive(kind) {
    const track = this.track(kind);
    return !!track && track.readyState === 'live';
  }

  /** @param {boolean} muted */
  setAudioMuted(muted) {
    if (!this.hasLive('audio')) return;
    this.audioMuted = muted;
    this.audioTrack.enabled = !muted;
    this._changed();
  }

  /** @param {boolean} off */
  setVideoOff(off) {
    if (!this.hasLive('video')) return;
    this.videoOff = off;
    this.videoTrack.enabled = !off;
    this._changed();
  }

  stop() {
    for (const track of this.stream.getTracks()) track.stop();
  }

  _changed() {
    this.dispatchEvent(new CustomEvent('change', {
      detail: { audioMuted: this.audioMuted, videoOff: this.videoOff },
    }));
  }
}
