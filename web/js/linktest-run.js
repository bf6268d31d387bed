// One link test of a connection point from the browser, over socket.io (docs/protocol.md, "Link tests"):
// linktest-start → one offer per path → an answer per path (linktest-wire.js plays the client's part) →
// linktest-progress … → linktest-result, which the server has already stored in the point's history.

import { io } from '/static/vendor/socket.io-client-4.8.4/socket.io.esm.min.js';
import { LinkTestResponder } from './linktest-wire.js';

/** Share of the whole test each phase stands for (progress bar), in the order they run. */
const PHASES = /** @type {const} */ ([['connect', 0.05], ['ping', 0.12], ['down', 0.29], ['up', 0.29], ['loss', 0.25]]);

/** Overall fraction done, from the server's phase and its fraction of that phase. @param {string} phase @param {number} fraction */
export function overallProgress(phase, fraction) {
  let before = 0;
  for (const [name, share] of PHASES) {
    if (name === phase) return Math.min(before + share * Math.min(Math.max(fraction, 0), 1), 1);
    before += share;
  }
  return 0;
}

export class LinkTestError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * Run a test of `point` to its verdict.
 * @param {string} point connection point id
 * @param {string} token sign-in token
 * @param {(p: {phase: string, progress: number, overall: number}) => void} onProgress
 * @param {AbortSignal} [signal] aborting cancels the test on the server (its partial result is kept)
 * @returns {Promise<any>} the stored result (figures and verdict)
 */
export async function runLinkTest(point, token, onProgress, signal) {
  const socket = io({ path: '/socket.io/', transports: ['websocket'], reconnection: false, auth: { token } });
  /** @type {LinkTestResponder[]} */
  const responders = [];
  let testId = /** @type {string|null} */ (null);
  try {
    return await new Promise((resolve, reject) => {
      const fail = (code, message) => reject(new LinkTestError(code, message));
      socket.on('connect_error', (err) => fail('unavailable', err.message));
      socket.on('disconnect', () => fail('unavailable', 'the server closed the connection'));
      socket.on('linktest-progress', (data) => {
        if (data?.testId !== testId) return;
        onProgress({ phase: data.phase, progress: data.progress, overall: overallProgress(data.phase, data.progress) });
      });
      socket.on('linktest-result', (data) => {
        if (data?.testId === testId) resolve(data.result);
      });
      signal?.addEventListener('abort', () => {
        if (testId) socket.emit('linktest-cancel', { testId });
      });
      socket.on('connect', async () => {
        try {
          const ack = await socket.timeout(20000).emitWithAck('linktest-start', { point });
          if (!ack?.ok) return fail(ack?.error?.code ?? 'error', ack?.error?.message ?? 'refused');
          testId = ack.testId;
          onProgress({ phase: 'connect', progress: 0, overall: 0 });
          await Promise.all(ack.paths.map(async (path) => {
            const responder = new LinkTestResponder(path.iceServers ?? [], path.iceTransportPolicy === 'relay' ? 'relay' : 'all');
            responders.push(responder);
            const sdp = await responder.answer(path.sdp);
            const reply = await socket.timeout(10000).emitWithAck('linktest-answer', { testId, path: path.path, sdp });
            if (!reply?.ok) throw new LinkTestError(reply?.error?.code ?? 'error', reply?.error?.message ?? 'refused');
          }));
        } catch (error) {
          fail(error.code ?? 'error', error.message);
        }
      });
    });
  } finally {
    for (const responder of responders) responder.close();
    socket.disconnect();
  }
}
