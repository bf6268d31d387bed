// Join parameters: validation (same limits as the server's `join` payload, protocol.md) and the profile this
// browser remembers between consultations.

export const ROOM_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const NAME_MAX = 80;
export const FACILITY_MAX = 120;

const PROFILE_KEY = 'hoichan.profile';

/** @typedef {{name: string, facility: string, room?: string}} Profile */

/** @param {string} room */
export function isValidRoomId(room) {
  return ROOM_ID_RE.test(room);
}

/** @param {string} name */
export function isValidName(name) {
  return name.length >= 1 && name.length <= NAME_MAX;
}

/** @param {string} facility */
export function isValidFacility(facility) {
  return facility.length <= FACILITY_MAX;
}

/** Room id from `/room/<id>` (tolerates a trailing slash); null when the path is not a room URL. */
export function roomIdFromPath(pathname = location.pathname) {
  const m = /^\/room\/([^/]+)\/?$/.exec(pathname);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

/** URL of a room page; name/facility are omitted when empty so the link can be shared as is. */
export function roomUrl(room, name = '', facility = '', record = false) {
  const q = new URLSearchParams();
  if (name) q.set('name', name);
  if (facility) q.set('facility', facility);
  if (record) q.set('record', '1');
  const qs = q.toString();
  return `/room/${encodeURIComponent(room)}${qs ? `?${qs}` : ''}`;
}

/** A readable random room id (no ambiguous characters) for starting an ad-hoc consultation. */
export function randomRoomId() {
  const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  const chars = Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
  return `${chars.slice(0, 3)}-${chars.slice(3, 6)}-${chars.slice(6)}`;
}

/** @returns {Profile} */
export function loadProfile() {
  try {
    const raw = JSON.parse(localStorage.getItem(PROFILE_KEY) || '{}');
    return {
      name: typeof raw.name === 'string' ? raw.name : '',
      facility: typeof raw.facility === 'string' ? raw.facility : '',
      room: typeof raw.room === 'string' ? raw.room : '',
    };
  } catch {
    return { name: '', facility: '', room: '' };
  }
}

/** @param {Partial<Profile>} update */
export function saveProfile(update) {
  try {
    localStorage.setItem(PROFILE_KEY, JSON.stringify({ ...loadProfile(), ...update }));
  } catch { /* private mode etc.: remembering is a convenience only */ }
}
