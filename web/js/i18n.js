// All user-visible strings, Vietnamese first (the users' language), English as the alternative.
// Markup opts in with data-i18n="key" (text) and data-i18n-attr="attr:key;attr:key" (attributes).

/** @typedef {'vi'|'en'} Lang */

const STORAGE_KEY = 'hoichan.lang';

/** @type {Record<Lang, Record<string, string>>} */
export const dictionaries = {
  vi: {
    'app.name': 'Hoichan',
    'app.title': 'Hội chẩn từ xa',
    'app.tagline': 'Kết nối bác sĩ tuyến dưới với chuyên gia tuyến trên qua video.',
    'lang.toggle': 'EN',
    'lang.toggleTitle': 'Switch to English',

    'recording.on': 'Đang ghi hình',
    'form.record': 'Ghi hình buổi hội chẩn (nếu bạn mở phòng)',
    'recording.failed': 'Đã dừng ghi hình: {reason}. Cuộc gọi vẫn tiếp tục.',
    'form.room': 'Mã phòng',
    'form.roomHint': 'Chữ cái không dấu, chữ số, dấu - hoặc _ (tối đa 64 ký tự).',
    'form.roomGenerate': 'Tạo mã mới',
    'form.roomPlaceholder': 'VD: cap-cuu-lai-chau',
    'form.name': 'Họ tên',
    'form.namePlaceholder': 'VD: BS. Nguyễn Văn An',
    'form.facility': 'Cơ sở y tế',
    'form.facilityPlaceholder': 'VD: Bệnh viện Đa khoa tỉnh Lai Châu',
    'form.optional': '(không bắt buộc)',
    'form.submit': 'Vào phòng hội chẩn',
    'form.remember': 'Họ tên và cơ sở y tế được lưu trên máy này cho lần sau.',
    'form.errorRoom': 'Mã phòng không hợp lệ: chỉ dùng chữ cái không dấu, chữ số, - hoặc _.',
    'form.errorRoomEmpty': 'Vui lòng nhập mã phòng (hoặc bấm “Tạo mã mới”).',
    'form.errorName': 'Vui lòng nhập họ tên (tối đa 80 ký tự).',
    'form.errorFacility': 'Tên cơ sở y tế tối đa 120 ký tự.',

    'auth.signIn': 'Đăng nhập',
    'home.lobby': 'Sảnh hội chẩn',
    'home.points': 'Điểm cầu',
    'auth.signOut': 'Đăng xuất',
    'auth.signedInAs': 'Đã đăng nhập: {name}',
    'auth.joinAs': 'Bạn vào phòng với tên {name} ({facility}).',
    'auth.requiredTitle': 'Cần đăng nhập',
    'auth.required': 'Phòng hội chẩn chỉ dành cho tài khoản đã đăng nhập.',
    'auth.expired': 'Phiên đăng nhập đã hết hạn hoặc không còn hiệu lực. Vui lòng đăng nhập lại.',
    'role.doctor': 'Bác sĩ',
    'role.technician': 'Kỹ thuật viên',
    'role.admin': 'Quản trị',
    'role.guest': 'Khách',

    'login.title': 'Đăng nhập',
    'login.username': 'Tên đăng nhập',
    'login.password': 'Mật khẩu',
    'login.submit': 'Đăng nhập',
    'login.missing': 'Vui lòng nhập tên đăng nhập và mật khẩu.',
    'login.wrong': 'Sai tên đăng nhập hoặc mật khẩu.',
    'login.throttled': 'Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {seconds} giây.',
    'login.failed': 'Không đăng nhập được: máy chủ không phản hồi.',

    'join.title': 'Nhập thông tin để vào phòng',

    'room.label': 'Phòng',
    'room.copyLink': 'Sao chép liên kết',
    'room.linkCopied': 'Đã sao chép liên kết phòng.',
    'room.copyFailed': 'Không sao chép được. Liên kết phòng: {url}',
    'room.you': 'Bạn',
    'room.waiting': 'Đang chờ người khác vào phòng…',
    'room.waitingHint': 'Gửi liên kết phòng cho đồng nghiệp để bắt đầu hội chẩn.',
    'room.invalid': 'Địa chỉ phòng không hợp lệ.',
    'room.backHome': 'Về trang chủ',
    'room.participants': 'Người tham gia',

    'state.connecting': 'Đang kết nối…',
    'state.connected': 'Đã kết nối',
    'state.reconnecting': 'Đang kết nối lại…',
    'state.failed': 'Mất kết nối',
    'state.left': 'Đã rời phòng',
    'action.retry': 'Thử lại',

    'failed.network': 'Không liên lạc được với máy chủ, đang tự thử lại.',
    'failed.media': 'Không thiết lập được đường truyền hình và tiếng.',
    'failed.serverDisconnect': 'Máy chủ đã ngắt kết nối (phòng có thể đang mở ở thẻ khác).',
    'failed.join': 'Không vào được phòng: {message}',

    'control.mute': 'Tắt tiếng',
    'control.unmute': 'Bật tiếng',
    'control.cameraOff': 'Tắt camera',
    'control.cameraOn': 'Bật camera',
    'control.leave': 'Rời phòng',
    'control.noMic': 'Không có micrô',
    'control.noCamera': 'Không có camera',

    'tile.cameraOff': 'Camera đang tắt',
    'tile.waitingVideo': 'Đang nhận hình…',
    'tile.micMuted': 'Đã tắt tiếng',
    'tile.videoPausedWeak': 'Tạm dừng video: đường truyền yếu',
    'tile.videoPausedCap': 'Tạm dừng video: vượt giới hạn băng thông',
    'tile.videoPausedAudioOnly': 'Chỉ âm thanh: không nhận video',
    'tile.audioOnly': 'Chỉ âm thanh',
    'adapt.audioOnly': 'Chỉ âm thanh',
    'adapt.capped': 'Giới hạn {caps}',
    'adapt.layer': 'Lớp video {layer}/{layers}',
    'adapt.pausedWeak': 'tạm dừng video: đường truyền yếu',
    'adapt.pausedCap': 'tạm dừng video: giới hạn băng thông',
    'control.audioOnly': 'Chỉ âm thanh',
    'control.audioOnlyOff': 'Bật lại video',
    'quality.excellent': 'Rất tốt',
    'quality.good': 'Tốt',
    'quality.poor': 'Kém',
    'quality.lost': 'Mất kết nối',
    'quality.label': 'Đường truyền: {grade}',
    'quality.mos': 'Điểm MOS',
    'quality.rtt': 'Độ trễ khứ hồi',
    'quality.jitter': 'Độ dao động (jitter)',
    'quality.lossUp': 'Mất gói chiều gửi',
    'quality.lossDown': 'Mất gói chiều nhận',
    'quality.send': 'Tốc độ gửi',
    'quality.recv': 'Tốc độ nhận',
    'quality.remb': 'Băng thông ước tính (gửi / nhận)',
    'quality.candidate': 'Kết nối ICE',

    'media.noCamera': 'Không tìm thấy camera. Bạn vẫn xem và nghe được mọi người; người khác chỉ nghe thấy bạn.',
    'media.noMic': 'Không tìm thấy micrô. Người khác sẽ không nghe thấy bạn.',
    'media.none': 'Không dùng được camera và micrô. Bạn vẫn vào phòng để xem và nghe (chỉ nhận).',
    'media.denied': 'Trình duyệt đang chặn camera/micrô: bạn chỉ xem và nghe. Hãy cấp quyền rồi tải lại trang.',
    'media.cameraLost': 'Camera đã ngắt kết nối.',
    'media.micLost': 'Micrô đã ngắt kết nối.',

    'audio.unlock': 'Bấm để bật âm thanh',

    'peer.joined': '{name} đã vào phòng.',
    'peer.left': '{name} đã rời phòng.',

    'left.title': 'Bạn đã rời phòng',
    'left.rejoin': 'Vào lại phòng',
    'left.home': 'Về trang chủ',

    'toast.close': 'Đóng',

    'shared.title': 'Tài liệu chia sẻ',
    'shared.hide': 'Ẩn tài liệu chia sẻ',
    'shared.shareImage': 'Chia sẻ ảnh',
    'shared.uploading': 'Đang gửi ảnh…',
    'shared.uploadFailed': 'Không chia sẻ được ảnh: {reason}',
    'shared.error.payload-too-large': 'ảnh quá lớn',
    'shared.error.unsupported-type': 'chỉ nhận ảnh JPEG hoặc PNG',
    'shared.error.invalid-image': 'tệp ảnh bị hỏng hoặc không đọc được',
    'shared.error.forbidden': 'bạn không còn trong phòng',
    'shared.error.unauthorized': 'cần đăng nhập lại',
    'shared.signInToView': 'Đăng nhập để xem ảnh được chia sẻ.',
    'shared.toolPoint': 'Chỉ',
    'shared.toolDraw': 'Vẽ',
    'shared.toolHint': 'Chỉ: di chuột để mọi người thấy, bấm để ghim. Vẽ: kéo để khoanh vùng.',
    'shared.by': '{name}, {time}',
    'shared.image': 'Ảnh chia sẻ',
    'shared.imageN': 'Ảnh {n}',
    'vitals.button': 'Sinh hiệu',
    'vitals.title': 'Chỉ số sinh tồn',
    'vitals.heartRate': 'Mạch',
    'vitals.bloodPressure': 'Huyết áp',
    'vitals.systolic': 'Huyết áp tâm thu',
    'vitals.diastolic': 'Huyết áp tâm trương',
    'vitals.spo2': 'SpO₂',
    'vitals.temperature': 'Nhiệt độ',
    'vitals.respiratoryRate': 'Nhịp thở',
    'vitals.send': 'Gửi cho cả phòng',
    'vitals.cancel': 'Huỷ',
    'vitals.empty': 'Nhập ít nhất một chỉ số.',
    'vitals.notANumber': 'Chỉ nhập số.',
    'unit.perMin': 'lần/phút',
    'schedule.opened': 'Phiên hội chẩn theo lịch đã mở: {title}',
    'schedule.join': 'Vào phòng',

    'error.invalid-payload': 'Dữ liệu gửi lên không hợp lệ.',
    'error.payload-too-large': 'Dữ liệu gửi lên quá lớn.',
    'error.unknown-event': 'Máy chủ không nhận ra yêu cầu.',
    'error.not-joined': 'Bạn chưa ở trong phòng.',
    'error.room-full': 'Phòng đã đủ người.',
    'error.negotiation-pending': 'Đang thiết lập kết nối, vui lòng đợi.',
    'error.invalid-sdp': 'Thông số kết nối hình/tiếng không hợp lệ.',
    'error.bad-resume': 'Phiên cũ đã hết hạn, đang vào lại phòng.',
    'error.unauthorized': 'Cần đăng nhập.',
    'error.forbidden': 'Bạn không có quyền làm việc này.',
    'error.internal': 'Máy chủ gặp lỗi.',
    'error.timeout': 'Máy chủ không phản hồi.',
    'error.unknown': 'Đã xảy ra lỗi.',
    'error.rate-limited': 'Thao tác quá nhanh, vui lòng chậm lại.',
    'error.not-found': 'Không tìm thấy.',
    'error.service-degraded': 'Hệ thống đang gặp sự cố, chưa vào được phòng. Cuộc gọi đang diễn ra không bị ảnh hưởng. Vui lòng thử lại sau ít phút.',
    'error.media-timeout': 'Máy chủ hình/tiếng không phản hồi. Vui lòng thử lại.',
    'error.media-failed': 'Kết nối hình/tiếng bị gián đoạn, đang kết nối lại.',
  },
  en: {
    'app.name': 'Hoichan',
    'app.title': 'Remote consultation',
    'app.tagline': 'Video consultations between district doctors and central-hospital specialists.',
    'lang.toggle': 'VI',
    'lang.toggleTitle': 'Chuyển sang tiếng Việt',

    'recording.on': 'Recording',
    'form.record': 'Record this consultation (if you open the room)',
    'recording.failed': 'Recording stopped: {reason}. The call goes on.',
    'form.room': 'Room ID',
    'form.roomHint': 'Letters, digits, - or _ (up to 64 characters).',
    'form.roomGenerate': 'New ID',
    'form.roomPlaceholder': 'e.g. emergency-lai-chau',
    'form.name': 'Full name',
    'form.namePlaceholder': 'e.g. Dr. Nguyen Van An',
    'form.facility': 'Facility',
    'form.facilityPlaceholder': 'e.g. Lai Chau Provincial General Hospital',
    'form.optional': '(optional)',
    'form.submit': 'Join consultation room',
    'form.remember': 'Your name and facility are remembered on this computer.',
    'form.errorRoom': 'Invalid room ID: use only letters, digits, - or _.',
    'form.errorRoomEmpty': 'Please enter a room ID (or press “New ID”).',
    'form.errorName': 'Please enter your name (up to 80 characters).',
    'form.errorFacility': 'Facility name is limited to 120 characters.',

    'auth.signIn': 'Sign in',
    'home.lobby': 'Consultation lobby',
    'home.points': 'Connection points',
    'auth.signOut': 'Sign out',
    'auth.signedInAs': 'Signed in as {name}',
    'auth.joinAs': 'You will join as {name} ({facility}).',
    'auth.requiredTitle': 'Sign-in required',
    'auth.required': 'Consultation rooms are for signed-in accounts only.',
    'auth.expired': 'Your sign-in has expired or is no longer valid. Please sign in again.',
    'role.doctor': 'Doctor',
    'role.technician': 'Technician',
    'role.admin': 'Administrator',
    'role.guest': 'Guest',

    'login.title': 'Sign in',
    'login.username': 'Username',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.missing': 'Please enter your username and password.',
    'login.wrong': 'Wrong username or password.',
    'login.throttled': 'Too many failed attempts. Please try again in {seconds} seconds.',
    'login.failed': 'Could not sign in: the server did not answer.',

    'join.title': 'Enter your details to join',

    'room.label': 'Room',
    'room.copyLink': 'Copy link',
    'room.linkCopied': 'Room link copied.',
    'room.copyFailed': 'Could not copy. Room link: {url}',
    'room.you': 'You',
    'room.waiting': 'Waiting for others to join…',
    'room.waitingHint': 'Send the room link to your colleague to start the consultation.',
    'room.invalid': 'This room address is not valid.',
    'room.backHome': 'Back to start page',
    'room.participants': 'Participants',

    'state.connecting': 'Connecting…',
    'state.connected': 'Connected',
    'state.reconnecting': 'Reconnecting…',
    'state.failed': 'Connection lost',
    'state.left': 'You left the room',
    'action.retry': 'Retry',

    'failed.network': 'Cannot reach the server; still trying.',
    'failed.media': 'Could not establish the audio/video link.',
    'failed.serverDisconnect': 'The server closed the connection (the room may be open in another tab).',
    'failed.join': 'Could not join the room: {message}',

    'control.mute': 'Mute',
    'control.unmute': 'Unmute',
    'control.cameraOff': 'Camera off',
    'control.cameraOn': 'Camera on',
    'control.leave': 'Leave',
    'control.noMic': 'No microphone',
    'control.noCamera': 'No camera',

    'tile.cameraOff': 'Camera is off',
    'tile.waitingVideo': 'Receiving video…',
    'tile.micMuted': 'Muted',
    'tile.videoPausedWeak': 'Video paused: weak link',
    'tile.videoPausedCap': 'Video paused: over the bandwidth cap',
    'tile.videoPausedAudioOnly': 'Audio only: no video received',
    'tile.audioOnly': 'Audio only',
    'adapt.audioOnly': 'Audio only',
    'adapt.capped': 'Capped at {caps}',
    'adapt.layer': 'Video layer {layer}/{layers}',
    'adapt.pausedWeak': 'video paused: weak link',
    'adapt.pausedCap': 'video paused: bandwidth cap',
    'control.audioOnly': 'Audio only',
    'control.audioOnlyOff': 'Video back on',
    'quality.excellent': 'Excellent',
    'quality.good': 'Good',
    'quality.poor': 'Poor',
    'quality.lost': 'Lost',
    'quality.label': 'Connection: {grade}',
    'quality.mos': 'MOS',
    'quality.rtt': 'Round-trip time',
    'quality.jitter': 'Jitter',
    'quality.lossUp': 'Loss, sending',
    'quality.lossDown': 'Loss, receiving',
    'quality.send': 'Sending',
    'quality.recv': 'Receiving',
    'quality.remb': 'Estimated bandwidth (send / receive)',
    'quality.candidate': 'ICE connection',

    'media.noCamera': 'No camera found. You can still see and hear everyone; others can only hear you.',
    'media.noMic': 'No microphone found. Others will not hear you.',
    'media.none': 'Camera and microphone are unavailable. You joined to watch and listen only.',
    'media.denied': 'The browser is blocking camera/microphone: watch-and-listen only. Allow access, then reload.',
    'media.cameraLost': 'The camera was disconnected.',
    'media.micLost': 'The microphone was disconnected.',

    'audio.unlock': 'Click to enable sound',

    'peer.joined': '{name} joined.',
    'peer.left': '{name} left.',

    'left.title': 'You left the room',
    'left.rejoin': 'Rejoin room',
    'left.home': 'Back to start page',

    'toast.close': 'Close',

    'shared.title': 'Shared items',
    'shared.hide': 'Hide shared items',
    'shared.shareImage': 'Share image',
    'shared.uploading': 'Sending image…',
    'shared.uploadFailed': 'Could not share the image: {reason}',
    'shared.error.payload-too-large': 'the image is too large',
    'shared.error.unsupported-type': 'only JPEG or PNG images are accepted',
    'shared.error.invalid-image': 'the image file is damaged or unreadable',
    'shared.error.forbidden': 'you are no longer in the room',
    'shared.error.unauthorized': 'please sign in again',
    'shared.signInToView': 'Sign in to see shared images.',
    'shared.toolPoint': 'Point',
    'shared.toolDraw': 'Draw',
    'shared.toolHint': 'Point: move over the image for everyone to see, click to pin. Draw: drag to mark an area.',
    'shared.by': '{name}, {time}',
    'shared.image': 'Shared image',
    'shared.imageN': 'Image {n}',
    'vitals.button': 'Vitals',
    'vitals.title': 'Vital signs',
    'vitals.heartRate': 'Heart rate',
    'vitals.bloodPressure': 'Blood pressure',
    'vitals.systolic': 'Systolic pressure',
    'vitals.diastolic': 'Diastolic pressure',
    'vitals.spo2': 'SpO₂',
    'vitals.temperature': 'Temperature',
    'vitals.respiratoryRate': 'Respiratory rate',
    'vitals.send': 'Send to the room',
    'vitals.cancel': 'Cancel',
    'vitals.empty': 'Enter at least one sign.',
    'vitals.notANumber': 'Numbers only.',
    'unit.perMin': '/min',
    'schedule.opened': 'A scheduled consultation has opened: {title}',
    'schedule.join': 'Join',

    'error.invalid-payload': 'The server rejected a malformed request.',
    'error.payload-too-large': 'The request was too large.',
    'error.unknown-event': 'The server did not recognise a request.',
    'error.not-joined': 'You are not in the room.',
    'error.room-full': 'The room is full.',
    'error.negotiation-pending': 'Connection setup in progress, please wait.',
    'error.invalid-sdp': 'Invalid audio/video connection parameters.',
    'error.bad-resume': 'The previous session expired; joining again.',
    'error.unauthorized': 'Sign-in required.',
    'error.forbidden': 'You are not allowed to do this.',
    'error.internal': 'Server error.',
    'error.timeout': 'The server did not answer.',
    'error.unknown': 'Something went wrong.',
    'error.rate-limited': 'Too fast, please slow down.',
    'error.not-found': 'Not found.',
    'error.service-degraded': 'The service is degraded: you cannot join right now. Calls in progress are not affected. Please try again in a few minutes.',
    'error.media-timeout': 'The media server did not answer. Please try again.',
    'error.media-failed': 'The audio/video connection was interrupted; reconnecting.',
  },
};

/** @returns {Lang} */
function initialLang() {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (stored === 'vi' || stored === 'en') return stored;
  } catch { /* storage disabled: fall back to the default */ }
  return 'vi';
}

/** @type {Lang} */
let current = initialLang();

/** @returns {Lang} */
export function getLang() {
  return current;
}

/**
 * Look up a string; `{name}` placeholders are filled from params. Unknown keys fall back to English, then the key,
 * so a missing translation is visible but never breaks the page.
 * @param {string} key
 * @param {Record<string, string|number>} [params]
 */
export function t(key, params) {
  const text = dictionaries[current][key] ?? dictionaries.en[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** Text for a server error code (protocol.md error codes), falling back to the server's own message. */
export function errorText(code, message) {
  const key = `error.${code}`;
  if (key in dictionaries[current]) return t(key);
  return message || t('error.unknown');
}

/** Re-render every opted-in element under root and set <html lang>. */
export function applyI18n(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(/** @type {HTMLElement} */ (el).dataset.i18n);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of /** @type {HTMLElement} */ (el).dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':').map((s) => s.trim());
      if (attr && key) el.setAttribute(attr, t(key));
    }
  }
}

/** @param {Lang} lang */
export function setLang(lang) {
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch { /* not persisted, still switched for this page */ }
  applyI18n();
  // Parts rendered from state (banner, buttons, tiles) listen for this and re-render.
  document.dispatchEvent(new CustomEvent('hoichan:lang', { detail: { lang } }));
}

/** Wire the EN/VI toggle button (it shows the language you would switch to). */
export function initLangToggle(button) {
  button.dataset.i18n = 'lang.toggle';
  button.dataset.i18nAttr = 'title:lang.toggleTitle;aria-label:lang.toggleTitle';
  button.addEventListener('click', () => setLang(current === 'vi' ? 'en' : 'vi'));
  applyI18n();
}
