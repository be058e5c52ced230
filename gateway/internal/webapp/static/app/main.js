// The page: wires the forms, the session, the uploads and the job list.
// It sets <html data-ready="1"> once usable and data-session="in"/"out"
// once it knows whether the cookie restored a session (the browser tests
// and the first-load benchmark wait for these).
import * as i18n from './i18n.js';
import * as session from './session.js';
import * as jobs from './jobs.js';
import * as uploads from './uploads.js';

const $ = (id) => document.getElementById(id);
const root = document.documentElement;
const message = $('message');
const announcer = $('announcer');

function say(text) {
  // Cleared first so the same text twice is announced twice.
  announcer.textContent = '';
  setTimeout(() => { announcer.textContent = text; }, 50);
}

function describe(err) {
  if (err?.status === 401 && err.code === 'unauthorized') return i18n.t('badLogin');
  if (err?.status === 429) return i18n.t('tooMany');
  return i18n.t('error', { msg: err?.message || String(err) });
}

function fail(err) {
  message.textContent = describe(err);
  message.hidden = false;
}

function clearMessage() { message.hidden = true; message.textContent = ''; }

function render(user) {
  const inside = !!user;
  $('signed-out').hidden = inside;
  $('signed-in').hidden = !inside;
  for (const id of ['logout', 'logout-all', 'user-email']) $(id).hidden = !inside;
  $('user-email').textContent = user?.email || '';
  $('unverified').hidden = !inside || user.emailVerified;
  $('drop-zone').hidden = inside && !user.emailVerified;
  root.dataset.session = inside ? 'in' : 'out';
}

let wasIn = false;
session.onChange((user) => {
  render(user);
  if (user && !wasIn) { jobs.start(); say(i18n.t('loggedIn', { email: user.email })); }
  if (!user && wasIn) { jobs.stop(); $('uploads').replaceChildren(); say(i18n.t('loggedOut')); }
  wasIn = !!user;
});

function credentials(form) {
  const data = new FormData(form);
  const email = String(data.get('email') || '').trim();
  const password = String(data.get('password') || '');
  if (!email || !password) throw new Error(i18n.t('needFields'));
  return { email, password };
}

async function busy(form, f) {
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  clearMessage();
  try { await f(); } catch (err) { fail(err); } finally { button.disabled = false; }
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  busy(form, async () => {
    const { email, password } = credentials(form);
    await session.login(email, password);
    form.reset();
    $('verify-result').hidden = true;
  });
});

$('signup-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  busy(form, async () => {
    const { email, password } = credentials(form);
    await session.signup(email, password);
    form.reset();
    $('signup-done').hidden = false;
    say(i18n.t('checkEmail'));
    $('login-email').value = email;
  });
});

$('logout').addEventListener('click', () => session.logout(false).catch(fail));
$('logout-all').addEventListener('click', () => session.logout(true).catch(fail));
$('resend').addEventListener('click', async () => {
  clearMessage();
  try { await session.api('/api/v1/users/verify/resend', { method: 'POST' }); say(i18n.t('resent')); } catch (err) { fail(err); }
});

const lang = $('lang');
lang.addEventListener('change', () => i18n.set(lang.value, true));
i18n.onChange((l) => { lang.value = l; });

const input = $('file-input');
input.addEventListener('change', () => { uploads.add([...input.files]); input.value = ''; });
const zone = $('drop-zone');
zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
zone.addEventListener('dragleave', () => zone.classList.remove('over'));
zone.addEventListener('drop', (ev) => {
  ev.preventDefault();
  zone.classList.remove('over');
  if (ev.dataTransfer?.files?.length) uploads.add([...ev.dataTransfer.files]);
});

jobs.init($('jobs'), $('jobs-empty'), say, fail);
uploads.init($('uploads'), say, fail);
i18n.set(i18n.pick());
render(null);
root.dataset.session = '';
// Time to interactive: from the navigation's start (performance's origin).
root.dataset.readyMs = String(Math.round(performance.now()));
root.dataset.ready = '1';

// The verification link lands here (/verify?token=…, the edge sends a
// browser's visit of the API link to the page): confirm it, then drop the
// token from the address bar and history.
async function verifyFromLink() {
  const params = new URLSearchParams(location.search);
  if (location.pathname !== '/verify' || !params.has('token')) return;
  const note = $('verify-result');
  history.replaceState(null, '', '/');
  try {
    await session.verify(params.get('token'));
    note.dataset.i18n = 'verified';
  } catch {
    note.dataset.i18n = 'verifyFailed';
  }
  note.textContent = i18n.t(note.dataset.i18n);
  note.hidden = false;
  say(note.textContent);
}

verifyFromLink()
  .then(() => session.refresh())
  .catch((err) => { render(null); fail(err); });
