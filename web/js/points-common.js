// What the dashboard and a point's page share: DOM building, the API call with the tab's sign-in, verdict badges
// and number formats.

import { getToken } from './auth.js';
import { getLang, t } from './i18n.js';

/** @param {string} tag @param {Record<string, any>} [props] `dataset` too @param {...(Node|string)} children */
export function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET a JSON API path with the tab's token; ApiError with the server's code otherwise. @param {string} path */
export async function api(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${getToken()}` } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body?.error?.code ?? 'unknown', body?.error?.message ?? res.statusText);
  return body;
}

export const locale = () => (getLang() === 'vi' ? 'vi-VN' : 'en-GB');

/** @param {number} unixSeconds */
export const when = (unixSeconds) => new Date(unixSeconds * 1000).toLocaleString(locale(), { dateStyle: 'short', timeStyle: 'short' });

/** @param {number|null|undefined} v @param {string} unit @param {number} [digits] */
export function figure(v, unit, digits = 0) {
  return v == null ? '—' : `${v.toLocaleString(locale(), { maximumFractionDigits: digits })} ${unit}`;
}

/** Loss as a percentage (the API gives a fraction). @param {number|null|undefined} v */
export const percent = (v) => (v == null ? '—' : `${(v * 100).toLocaleString(locale(), { maximumFractionDigits: 1 })} %`);

/** Best first, as signaling/linktests/verdict.py ranks them. */
export const VERDICT_TIERS = ['720p', '360p', '180p', 'audio', 'none'];

/** A verdict tier as a coloured badge. @param {string} tier */
export function verdictBadge(tier) {
  return el('span', { className: `badge verdict verdict-${tier}`, textContent: t(`verdict.${tier}`) });
}

/** A verdict's words in the page's language. @param {{vi: string, en: string}} words */
export const words = (words) => (getLang() === 'vi' ? words.vi : words.en);
