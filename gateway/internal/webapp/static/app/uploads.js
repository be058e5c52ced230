// Uploads: tus-js-client (vendor/tus.min.js, loaded on first use) against
// the gateway's tus endpoint /api/v1/uploads, 8 MiB chunks, retried, and
// resumed after a closed tab (tus-js-client keeps only the upload URLs, by
// file fingerprint, in localStorage). Each file gets a row: progress bar,
// bytes, speed, time left, cancel.
import { bearer } from './session.js';
import { t } from './i18n.js';

let tusLoaded = null;
let list, announce, showError;

/** init binds the list; say(text) announces, fail(err) shows an error. */
export function init(ul, say, fail) { list = ul; announce = say; showError = fail; }

function loadTus() {
  if (window.tus) return Promise.resolve(window.tus);
  if (!tusLoaded) {
    tusLoaded = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = new URL('./vendor/tus.min.js', import.meta.url).href;
      s.onload = () => resolve(window.tus);
      s.onerror = () => { tusLoaded = null; reject(new Error('tus-js-client did not load')); };
      document.head.append(s);
    });
  }
  return tusLoaded;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** bytes formats a byte count. */
export function bytes(n) {
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function duration(s) {
  if (!Number.isFinite(s)) return '–';
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}` : `${s}s`;
}

/** add uploads each file. */
export async function add(files) {
  let tus;
  try { tus = await loadTus(); } catch (err) { showError(err); return; }
  for (const file of files) start(tus, file);
}

function start(tus, file) {
  const li = el('li', 'upload');
  li.dataset.name = file.name;
  const bar = el('progress');
  bar.max = file.size || 1;
  bar.value = 0;
  bar.setAttribute('aria-label', file.name);
  const stats = el('span', 'stats');
  const sent = el('span', 'upload-bytes', `0 / ${bytes(file.size)}`);
  const speed = el('span', 'upload-speed', '');
  const eta = el('span', 'upload-eta', '');
  const state = el('span', 'upload-state', t('uploading'));
  stats.append(sent, speed, eta, state);
  const cancel = el('button', 'cancel', t('cancel'));
  cancel.type = 'button';
  cancel.setAttribute('aria-label', `${t('cancel')} ${file.name}`);
  li.append(el('span', 'name', file.name), cancel, bar, stats);
  list.append(li);

  const began = performance.now();
  let startBytes = null;
  const upload = new tus.Upload(file, {
    endpoint: '/api/v1/uploads',
    chunkSize: 8 * 1024 * 1024,
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    // The token is read for every request: a long upload outlives one.
    onBeforeRequest: async (req) => { req.setHeader('Authorization', `Bearer ${await bearer()}`); },
    onProgress: (done, total) => {
      if (startBytes === null) startBytes = done;
      bar.max = total; bar.value = done;
      const secs = (performance.now() - began) / 1000;
      const rate = secs > 0 ? (done - startBytes) / secs : 0;
      sent.textContent = `${bytes(done)} / ${bytes(total)} (${Math.floor((done / total) * 100)}%)`;
      speed.textContent = t('speed', { s: bytes(rate) });
      eta.textContent = t('eta', { t: rate > 0 ? duration((total - done) / rate) : '–' });
    },
    onAfterResponse: (req, res) => {
      const id = res.getHeader('Audiomill-Job-Id');
      if (id) li.dataset.jobId = id;
    },
    onSuccess: () => {
      state.textContent = t('uploaded');
      cancel.remove();
      announce(t('statusOf', { name: file.name, status: t('uploaded') }));
    },
    onError: (err) => {
      state.textContent = t('uploadFailed');
      showError(err);
      announce(t('statusOf', { name: file.name, status: t('uploadFailed') }));
    },
  });
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try { await upload.abort(true); } catch { /* the server may have it already */ }
    state.textContent = t('cancelled');
    announce(t('statusOf', { name: file.name, status: t('cancelled') }));
    li.remove();
  });
  upload.findPreviousUploads().then((previous) => {
    if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  });
}
