// The page's strings in English and Chinese (zh-CN), the choice from
// navigator.languages unless the reader picked one (remembered in
// localStorage under "audiomill.lang"), and <html lang> kept in step.
const strings = {
  en: {
    language: 'Language', logout: 'Log out', logoutAll: 'Log out everywhere',
    welcome: 'Turn your videos into MP3s', loginTitle: 'Log in', email: 'Email', password: 'Password',
    login: 'Log in', signupTitle: 'Create an account', signup: 'Sign up',
    noReset: 'Forgotten passwords cannot be reset yet.',
    checkEmail: 'Check your email for the link that verifies your address, then log in.',
    unverified: 'Verify your email address to upload: open the link we emailed you, then log in again.',
    resend: 'Send the link again', resent: 'A new link is on its way.',
    uploadTitle: 'Upload videos', chooseFiles: 'Choose videos, or drop them here',
    jobsTitle: 'Your conversions', noJobs: 'No conversions yet.',
    cancel: 'Cancel', delete: 'Delete', download: 'Download MP3',
    queued: 'Queued', converting: 'Converting', done: 'Done', failed: 'Failed',
    uploading: 'Uploading', uploaded: 'Uploaded', cancelled: 'Cancelled', uploadFailed: 'Upload failed',
    eta: '{t} left', speed: '{s}/s',
    verified: 'Your address is verified. Log in to upload.', verifyFailed: 'This link is not valid any more: log in and ask for a new one.',
    loggedIn: 'Logged in as {email}.', loggedOut: 'Logged out.', statusOf: '{name}: {status}',
    badLogin: 'Wrong email or password.', tooMany: 'Too many attempts; try again in a moment.',
    error: 'Something went wrong: {msg}', needFields: 'Enter an email address and a password.',
  },
  zh: {
    language: '语言', logout: '退出登录', logoutAll: '在所有设备上退出',
    welcome: '把视频转换成 MP3', loginTitle: '登录', email: '电子邮箱', password: '密码',
    login: '登录', signupTitle: '创建账户', signup: '注册',
    noReset: '暂不支持重置忘记的密码。',
    checkEmail: '请查收邮件，打开验证邮箱地址的链接，然后登录。',
    unverified: '验证邮箱后才能上传：打开我们发给您的链接，然后重新登录。',
    resend: '重新发送链接', resent: '新的链接已发送。',
    uploadTitle: '上传视频', chooseFiles: '选择视频，或拖放到这里',
    jobsTitle: '您的转换', noJobs: '还没有转换。',
    cancel: '取消', delete: '删除', download: '下载 MP3',
    queued: '排队中', converting: '转换中', done: '已完成', failed: '失败',
    uploading: '上传中', uploaded: '已上传', cancelled: '已取消', uploadFailed: '上传失败',
    eta: '剩余 {t}', speed: '{s}/秒',
    verified: '您的邮箱已验证。请登录后上传。', verifyFailed: '此链接已失效：请登录并申请新的链接。',
    loggedIn: '已登录：{email}。', loggedOut: '已退出登录。', statusOf: '{name}：{status}',
    badLogin: '邮箱或密码错误。', tooMany: '尝试次数过多，请稍后再试。',
    error: '出错了：{msg}', needFields: '请输入邮箱地址和密码。',
  },
};

const KEY = 'audiomill.lang';
let current = 'en';
const listeners = [];

/** pick returns the remembered language, else the first of navigator.languages we have. */
export function pick() {
  let saved = null;
  try { saved = localStorage.getItem(KEY); } catch { /* storage disabled */ }
  if (saved && strings[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().split('-')[0];
    if (strings[base]) return base;
  }
  return 'en';
}

/** lang is the language in use. */
export function lang() { return current; }

/** t returns the string key in the current language, {name}s replaced from vars. */
export function t(key, vars = {}) {
  const s = strings[current][key] ?? strings.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : ''));
}

/** apply sets the text of every [data-i18n] element under root. */
export function apply(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

/** set switches the language (remember: keep it in localStorage). */
export function set(l, remember = false) {
  if (!strings[l]) return;
  current = l;
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
  if (remember) { try { localStorage.setItem(KEY, l); } catch { /* storage disabled */ } }
  apply();
  for (const f of listeners) f(l);
}

/** onChange calls f after every switch. */
export function onChange(f) { listeners.push(f); }
