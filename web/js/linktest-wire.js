// The browser's part of a link test on one path, speaking media/linktest_wire.py: two negotiated data channels,
// `control` (id 0, JSON) and `probe` (id 1, unordered, no retransmission, binary probes
// `kind(1) seq(4) nonce(8) time(8)` big-endian, then padding). The browser echoes PINGs, proves with receipts
// which probes arrived (XOR of their nonces, and when the receipt was written: `t`, ms of performance.now()) and
// sends DATA upstream at the rate the server asks for (each carrying that rate in its nonce field). It measures
// nothing: the server does, so a page can only ever report fewer probes than it received, never more.

const PING = 1;
const PONG = 2;
const DATA = 3;
const HEADER_SIZE = 21;
const DATA_SIZE = 1100;
const OVERHEAD_BYTES = 65;
const RECEIPT_INTERVAL_MS = 200;
const BACKLOG_SECONDS = 0.05;
const BURST_SECONDS = 0.1;
const TICK_MS = 10;

/** DATA message size for a rate, as media/linktest.py's data_size. @param {number} kbps */
export function dataSize(kbps) {
  return Math.floor(Math.min(Math.max((kbps * 125) / 40 - OVERHEAD_BYTES, 250), DATA_SIZE));
}

/** The most the pacer sends at once, as media/linktest.py's burst_bytes. @param {number} kbps */
export function burstBytes(kbps) {
  return Math.max(kbps * 125 * BURST_SECONDS, 2 * (dataSize(kbps) + OVERHEAD_BYTES));
}

/** Sorted sequence numbers as inclusive runs: [1, 2, 3, 7] → [[1, 3], [7, 7]]. @param {number[]} seqs */
export function runsOf(seqs) {
  const runs = [];
  for (const seq of [...new Set(seqs)].sort((a, b) => a - b)) {
    const last = runs[runs.length - 1];
    if (last && seq === last[1] + 1) last[1] = seq;
    else runs.push([seq, seq]);
  }
  return runs;
}

/** The server probes received since the last receipt, and the receipt that proves them. */
export class ReceiptBook {
  constructor() {
    /** @type {Set<number>} */
    this.seqs = new Set();
    this.x = 0n;
  }

  /** @param {number} seq @param {bigint} nonce */
  add(seq, nonce) {
    if (this.seqs.has(seq)) return;
    this.seqs.add(seq);
    this.x ^= nonce;
  }

  /**
   * JSON receipt for everything since the last one, written at `atMs` of the page's monotonic clock (sent even when
   * empty: the server times the flow of probes by the receipts, so they keep a steady beat).
   * @param {number} atMs
   */
  take(atMs) {
    const receipt = JSON.stringify({
      type: 'receipt', t: Math.round(atMs * 10) / 10, runs: runsOf([...this.seqs]), x: this.x.toString(16).padStart(16, '0'),
    });
    this.seqs = new Set();
    this.x = 0n;
    return receipt;
  }
}

/** One path of a test: an RTCPeerConnection that answers the server's offer and plays the client's part. */
export class LinkTestResponder {
  /**
   * @param {RTCIceServer[]} iceServers
   * @param {'all'|'relay'} policy relay: force the path through the TURN server
   */
  constructor(iceServers, policy) {
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: policy });
    this.control = this.pc.createDataChannel('control', { negotiated: true, id: 0 });
    this.probe = this.pc.createDataChannel('probe', { negotiated: true, id: 1, ordered: false, maxRetransmits: 0 });
    this.probe.binaryType = 'arraybuffer';
    this.receipts = new ReceiptBook();
    this.rate = 0;
    this.size = 0; // bytes per DATA the server asked for (0: dataSize of the rate)
    this.ended = false;
    this.timers = /** @type {number[]} */ ([]);
    this.control.addEventListener('message', (e) => this.onControl(e.data));
    this.probe.addEventListener('message', (e) => this.onProbe(e.data));
    this.control.addEventListener('open', () => this.timers.push(setInterval(() => this.sendReceipt(), RECEIPT_INTERVAL_MS)));
    this.probe.addEventListener('open', () => this.startPacer());
  }

  /**
   * The full answer SDP (the server takes no trickled candidates): waits for gathering, at most `gatherMs`.
   * @param {string} offer @param {number} [gatherMs]
   */
  async answer(offer, gatherMs = 5000) {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer });
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    if (this.pc.iceGatheringState !== 'complete') {
      await new Promise((resolve) => {
        const done = () => { if (this.pc.iceGatheringState === 'complete') resolve(undefined); };
        this.pc.addEventListener('icegatheringstatechange', done);
        setTimeout(resolve, gatherMs);
      });
    }
    return /** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp;
  }

  /** @param {any} data */
  onProbe(data) {
    if (!(data instanceof ArrayBuffer) || data.byteLength < HEADER_SIZE) return;
    const view = new DataView(data);
    const kind = view.getUint8(0);
    if (kind !== PING && kind !== DATA) return;
    this.receipts.add(view.getUint32(1), view.getBigUint64(5));
    if (kind === PING && this.probe.readyState === 'open') {
      const pong = new Uint8Array(data.slice(0, HEADER_SIZE));
      pong[0] = PONG;
      this.probe.send(pong);
    }
  }

  /** @param {any} data */
  onControl(data) {
    let message;
    try { message = JSON.parse(data); } catch { return; }
    if (message?.type === 'send' && typeof message.kbps === 'number') {
      this.rate = Math.max(message.kbps, 0);
      this.size = Number.isInteger(message.size) ? Math.min(Math.max(message.size, HEADER_SIZE), DATA_SIZE) : 0;
    } else if (message?.type === 'end') { this.rate = 0; this.ended = true; }
  }

  sendReceipt() {
    if (this.control.readyState === 'open') this.control.send(this.receipts.take(performance.now()));
  }

  /** DATA upstream at the asked rate, paced every 10 ms, with little queued locally (as the server does). */
  startPacer() {
    let seq = 0;
    let rate = 0;
    let creditAt = performance.now();
    let sent = 0;
    this.timers.push(setInterval(() => {
      if (this.probe.readyState !== 'open') return;
      const now = performance.now();
      if (this.rate !== rate) { rate = this.rate; creditAt = now; sent = 0; }
      if (rate <= 0) return;
      const size = this.size || dataSize(rate);
      let budget = ((now - creditAt) / 1000) * rate * 125 - sent;
      const burst = burstBytes(rate);
      if (budget > burst) { sent += budget - burst; budget = burst; } // after a stall: no catching up in one burst
      const backlogLimit = Math.max(rate * 125 * BACKLOG_SECONDS, 4 * DATA_SIZE);
      while (budget >= size + OVERHEAD_BYTES && this.probe.bufferedAmount < backlogLimit) {
        const packet = new DataView(new ArrayBuffer(size));
        packet.setUint8(0, DATA);
        packet.setUint32(1, seq);
        packet.setBigUint64(5, BigInt(Math.round(rate))); // the rate it is sent at: the server times its steps by it
        packet.setFloat64(13, now / 1000);
        seq = (seq + 1) >>> 0;
        this.probe.send(packet.buffer);
        sent += size + OVERHEAD_BYTES;
        budget -= size + OVERHEAD_BYTES;
      }
    }, TICK_MS));
  }

  close() {
    for (const timer of this.timers) clearInterval(timer);
    this.pc.close();
  }
}
