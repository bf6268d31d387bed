// The connection-state banner and the `data-state` attribute on <body> (tests and CSS key on it).

import { icons } from './icons.js';
import { t, errorText } from './i18n.js';

/** @typedef {import('./session.js').ConnState} ConnState */
/** @typedef {import('./session.js').Failure} Failure */

export class Banner {
  /**
   * @param {HTMLElement} el  contains .banner-text, .banner-detail and .banner-retry
   * @param {() => void} onRetry
   */
  constructor(el, onRetry) {
    this.el = el;
    this.text = /** @type {HTMLElement} */ (el.querySelector('.banner-text'));
    this.detail = /** @type {HTMLElement} */ (el.querySelector('.banner-detail'));
    this.retry = /** @type {HTMLButtonElement} */ (el.querySelector('.banner-retry'));
    this.retry.innerHTML = `${icons.retry}<span></span>`;
    this.retry.addEventListener('click', onRetry);
    /** @type {ConnState} */
    this.state = 'connecting';
    /** @type {Failure|null} */
    this.failure = null;
    document.addEventListener('hoichan:lang', () => this.render());
    this.render();
  }

  /** @param {ConnState} state @param {Failure|null} [failure] */
  set(state, failure = null) {
    this.state = state;
    this.failure = failure;
    this.render();
  }

  render() {
    const { state, failure } = this;
    document.body.dataset.state = state;
    this.el.dataset.state = state;
    this.text.textContent = t(`state.${state}`);
    let detail = '';
    if (state === 'failed' && failure) {
      if (failure.reason === 'join') detail = t('failed.join', { message: errorText(failure.code, failure.message) });
      else if (failure.reason === 'auth') detail = t('auth.requiredTitle');
      else if (failure.reason === 'media') detail = t('failed.media');
      else if (failure.code === 'server-disconnect') detail = t('failed.serverDisconnect');
      else detail = failure.code === 'timeout' ? errorText('timeout') : t('failed.network');
    }
    this.detail.textContent = detail;
    this.detail.hidden = !detail;
    this.retry.hidden = state !== 'failed' || failure?.reason === 'auth'; // retrying cannot sign anyone in
    /** @type {HTMLElement} */ (this.retry.querySelector('span')).textContent = t('action.retry');
  }
}
