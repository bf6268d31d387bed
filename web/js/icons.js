// Inline SVG icons (drawn for Hoichan; stroke = currentColor so CSS controls colour). Inline because the page
// must work with no network beyond our own server, and a handful of icons do not justify a sprite file.

const svg = (body) =>
  `<svg class="icon" viewBox="0 0 24 24" width="24" height="24" fill="none" stroke="currentColor" ` +
  `stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">${body}</svg>`;

const micBody = '<rect x="9" y="2.5" width="6" height="11" rx="3"/><path d="M5.5 10.5a6.5 6.5 0 0 0 13 0"/>' +
  '<path d="M12 17v4M8.5 21h7"/>';
const camBody = '<rect x="2.5" y="6" width="13" height="12" rx="2"/><path d="M15.5 10.5 21.5 7v10l-6-3.5z"/>';
const slash = '<path d="M3 3l18 18"/>';

export const icons = {
  mic: svg(micBody),
  micOff: svg(micBody + slash),
  camera: svg(camBody),
  cameraOff: svg(camBody + slash),
  // Handset lying down: the usual "end call" sign.
  leave: svg('<path d="M2.5 15.6c0-1 .3-1.9 1-2.6C6 10.6 9 9.5 12 9.5s6 1.1 8.5 3.5c.7.7 1 1.6 1 2.6v1.1' +
    'c0 .8-.7 1.4-1.5 1.3l-3.2-.5c-.7-.1-1.2-.7-1.2-1.4v-2a9.7 9.7 0 0 0-7.2 0v2c0 .7-.5 1.3-1.2 1.4l-3.2.5' +
    'c-.8.1-1.5-.5-1.5-1.3z" fill="currentColor" stroke="none"/>'),
  link: svg('<path d="M10 14a4 4 0 0 0 5.7 0l3.5-3.5a4 4 0 0 0-5.7-5.7L12 6.3"/>' +
    '<path d="M14 10a4 4 0 0 0-5.7 0l-3.5 3.5a4 4 0 0 0 5.7 5.7l1.5-1.5"/>'),
  retry: svg('<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>'),
  speaker: svg('<path d="M4 9.5h4l5-4v13l-5-4H4z"/><path d="M16.5 9a4 4 0 0 1 0 6M19 6.5a7.5 7.5 0 0 1 0 11"/>'),
  close: svg('<path d="M6 6l12 12M18 6 6 18"/>'),
  image: svg('<rect x="3" y="4" width="18" height="16" rx="2"/><circle cx="8.5" cy="9.5" r="1.8"/>' +
    '<path d="M21 16l-5.5-5.5L5 20"/>'),
  // A pulse line: heart rate, pressure, saturation, temperature, breathing.
  vitals: svg('<path d="M2.5 12h4l2.5-6 4 12 2.5-6h6"/>'),
  folder: svg('<path d="M3 6.5A1.5 1.5 0 0 1 4.5 5H9l2 2.5h8.5A1.5 1.5 0 0 1 21 9v9.5a1.5 1.5 0 0 1-1.5 1.5h-15' +
    'A1.5 1.5 0 0 1 3 18.5z"/>'),
  warning: svg('<path d="M12 3 2 20h20z"/><path d="M12 10v4.5M12 17.5v.01"/>'),
};
