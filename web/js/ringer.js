// The lobby's audible ring: a two-tone chime repeated every 2 s while a call rings, made with WebAudio (no sound
// file to fetch). Browsers start audio only after a user gesture: `unlock()` from any click; until then `blocked`.

export class Ringer {
  constructor() {
    /** @type {AudioContext|null} */
    this.ctx = null;
    /** @type {number|null} */
    this.timer = null;
  }

  /** Whether the page may play sound yet (false until a click or key press on the page). */
  get blocked() {
    return !this.ctx || this.ctx.state !== 'running';
  }

  get ringing() {
    return this.timer !== null;
  }

  /** Call from a user gesture: creates or resumes the audio context. */
  unlock() {
    if (!this.ctx) this.ctx = new AudioContext();
    if (this.ctx.state !== 'running') this.ctx.resume().catch(() => {});
  }

  start() {
    if (this.timer !== null) return;
    this.chime();
    this.timer = window.setInterval(() => this.chime(), 2000);
  }

  stop() {
    if (this.timer === null) return;
    window.clearInterval(this.timer);
    this.timer = null;
  }

  chime() {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== 'running') return;
    [[880, 0], [660, 0.25], [880, 0.5], [660, 0.75]].forEach(([freq, at]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      const start = ctx.currentTime + at;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.22);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + 0.24);
    });
  }
}
