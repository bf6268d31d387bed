// Thin wrapper around the socket.io client: connection lifecycle, acked requests, and an outbound queue that only
// drains while we are joined. Knows the transport, not the meaning of protocol events.

import { io } from '/static/vendor/socket.io-client-4.8.4/socket.io.esm.min.js';

/**
 * @typedef {object} SignalingHandlers
 * @property {() => void} [onConnect]                 every (re)connection of the socket
 * @property {(reason: string) => void} [onDisconnect]
 * @property {(err: Error) => void} [onConnectError]
 */

export class Signaling {
  /**
   * @param {SignalingHandlers} [handlers]
   * @param {string|null} [token] sign-in token, sent on every (re)connection; none = join as a guest
   */
  constructor(handlers = {}, token = null) {
    this.handlers = handlers;
    // Same origin, path fixed by protocol.md. socket.io retries forever with backoff, which is what a consultation
    // wants; the session decides when to *tell* the user it is failing.
    this.socket = io({
      path: '/socket.io/',
      autoConnect: false,
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      randomizationFactor: 0.3,
      timeout: 10000,
      auth: token ? { token } : {},
    });
    /** Joined = the server knows this socket as a participant; only then may queued messages go out. */
    this.joined = false;
    /** @type {{event: string, payload: object, coalesce?: string}[]} */
    this.queue = [];

    this.socket.on('connect', () => this.handlers.onConnect?.());
    // Note: after a server-side disconnect ('io server disconnect') socket.io does not reconnect by itself;
    // the session decides (reconnectNow on retry).
    this.socket.on('disconnect', (reason) => {
      this.joined = false;
      this.handlers.onDisconnect?.(reason);
    });
    this.socket.on('connect_error', (err) => this.handlers.onConnectError?.(err));
  }

  get connected() {
    return this.socket.connected;
  }

  connect() {
    this.socket.connect();
  }

  /** Drop the current transport and connect again now (user pressed "retry"). */
  reconnectNow() {
    if (this.socket.connected) this.socket.disconnect();
    this.socket.connect();
  }

  close() {
    this.joined = false;
    this.queue = [];
    this.socket.disconnect();
  }

  /**
   * Subscribe to a server event.
   * @param {string} event
   * @param {(payload: any) => void} fn
   */
  on(event, fn) {
    this.socket.on(event, fn);
  }

  /**
   * Emit with an acknowledgement; rejects on timeout (also when the socket drops before the ack arrives).
   * @param {string} event
   * @param {object} payload
   * @param {number} [timeoutMs]
   */
  request(event, payload, timeoutMs = 10000) {
    return this.socket.timeout(timeoutMs).emitWithAck(event, payload);
  }

  /**
   * Send now if joined, else queue until the next successful (re)join. socket.io's own buffer would flush before
   * our resume `join` and the server would answer `not-joined`, hence our own queue.
   * @param {string} event
   * @param {object} payload
   * @param {{coalesce?: string}} [opts] messages with the same coalesce key replace each other while queued
   */
  send(event, payload, opts = {}) {
    if (this.joined && this.socket.connected) {
      this.socket.emit(event, payload);
      return;
    }
    if (opts.coalesce) this.queue = this.queue.filter((m) => m.coalesce !== opts.coalesce);
    this.queue.push({ event, payload, coalesce: opts.coalesce });
  }

  /** Mark the socket as joined and flush what was queued meanwhile. */
  setJoined() {
    this.joined = true;
    const pending = this.queue;
    this.queue = [];
    for (const m of pending) this.socket.emit(m.event, m.payload);
  }

  /** Forget queued messages (they belonged to a peer connection or participant that no longer exists). */
  clearQueue(predicate = () => true) {
    this.queue = this.queue.filter((m) => !predicate(m));
  }
}
