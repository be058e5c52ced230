// The job list, live: GET /api/v1/jobs/events (text/event-stream, read with
// fetch and a stream parser, since EventSource cannot send the bearer
// token); on "hello" the list is loaded, then events applied, the newest
// updated_at of each job winning. While the stream is unavailable the list
// is polled instead.
import { api, bearer } from './session.js';
import { t, onChange as onLang } from './i18n.js';

const jobs = new Map(); // id → job view
const links = new Map(); // id → {url, expires}
let list, empty, announce, showError;
let abort = null;
let lastId = '';
let pollTimer = null;

/** init binds the list to its elements; say(text) announces, fail(err) shows an error. */
export function init(ul, emptyNote, say, fail) {
  list = ul; empty = emptyNote; announce = say; showError = fail;
  onLang(() => { for (const j of jobs.values()) render(j, false); });
}

/** start opens the stream (after login). */
export function start() { stop(); abort = new AbortController(); stream(abort.signal); }

/** stop closes the stream and empties the list (after logout). */
export function stop() {
  abort?.abort(); abort = null; clearTimeout(pollTimer); lastId = '';
  jobs.clear(); links.clear(); if (list) { list.replaceChildren(); delete list.dataset.loaded; } updateEmpty();
}

async function load() {
  const page = await api('/api/v1/jobs?limit=100');
  const seen = new Set();
  for (const j of page.jobs) { seen.add(j.id); apply(j, false); }
  for (const id of [...jobs.keys()]) if (!seen.has(id)) remove(id);
  updateEmpty();
  list.dataset.loaded = '1'; // the list shows the server's jobs (tests wait for it)
}

async function stream(signal) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${await bearer()}` };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const resp = await fetch('/api/v1/jobs/events', { headers, signal, cache: 'no-store' });
      if (!resp.ok || !(resp.headers.get('Content-Type') || '').startsWith('text/event-stream')) throw new Error(`stream: HTTP ${resp.status}`);
      clearTimeout(pollTimer);
      delay = 1000;
      await read(resp.body, signal);
    } catch (err) {
      if (signal.aborted) return;
      if (err?.status === 401) return;
      // The stream is away (or not offered): poll until it is back.
      await load().catch((e) => { if (e?.status !== 401) showError(e); });
    }
    await new Promise((r) => { pollTimer = setTimeout(r, delay); });
    delay = Math.min(delay * 2, 15000);
  }
}

// read parses the event stream (https://html.spec.whatwg.org/#parsing-an-event-stream).
async function read(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', event = '', data = [], id = null;
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (id !== null) lastId = id;
        if (data.length) await dispatch(event || 'message', data.join('\n'));
        event = ''; data = []; id = null;
        continue;
      }
      if (line.startsWith(':')) continue; // a comment (": ping")
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let v = colon < 0 ? '' : line.slice(colon + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (field === 'event') event = v;
      else if (field === 'data') data.push(v);
      else if (field === 'id' && !v.includes('\0')) id = v;
    }
  }
}

async function dispatch(event, data) {
  const msg = JSON.parse(data);
  switch (event) {
    case 'hello': case 'reset': await load(); break;
    case 'job': apply(msg, true); break;
    case 'deleted': remove(msg.id); break;
    default: break;
  }
}

function apply(j, live) {
  const old = jobs.get(j.id);
  if (old && old.updated_at > j.updated_at) return;
  jobs.set(j.id, j);
  render(j, live && old && old.status !== j.status);
}

function remove(id) {
  jobs.delete(id); links.delete(id);
  list.querySelector(`li.job[data-job-id="${CSS.escape(id)}"]`)?.remove();
  updateEmpty();
}

function updateEmpty() { if (empty) empty.hidden = jobs.size > 0; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render(j, announceChange) {
  let li = list.querySelector(`li.job[data-job-id="${CSS.escape(j.id)}"]`);
  if (!li) {
    li = el('li', 'job');
    li.dataset.jobId = j.id;
    li.append(el('span', 'name job-name'), el('span', 'job-status'), el('progress', 'job-progress'), el('span', 'job-reason'));
    const del = el('button', 'job-delete');
    del.type = 'button';
    del.addEventListener('click', () => removeJob(j.id, del));
    li.append(del);
    // Newest first, as the API lists them.
    const after = [...list.children].find((c) => (jobs.get(c.dataset.jobId)?.created_at || '') < j.created_at);
    list.insertBefore(li, after || null);
  }
  li.dataset.status = j.status;
  li.querySelector('.job-name').textContent = j.video?.name || j.id;
  li.querySelector('.job-status').textContent = j.status === 'converting' && j.progress != null
    ? `${t('converting')} ${j.progress}%` : t(j.status);
  const bar = li.querySelector('.job-progress');
  bar.hidden = j.status !== 'converting';
  bar.max = 100;
  bar.value = j.progress || 0;
  bar.setAttribute('aria-label', `${j.video?.name || ''} ${j.progress || 0}%`);
  const reason = li.querySelector('.job-reason');
  reason.hidden = j.status !== 'failed';
  reason.textContent = j.reason || '';
  const del = li.querySelector('.job-delete');
  del.textContent = t('delete');
  del.setAttribute('aria-label', `${t('delete')} ${j.video?.name || ''}`);
  if (j.status === 'done') showAudio(li, j);
  updateEmpty();
  if (announceChange) announce(t('statusOf', { name: j.video?.name || j.id, status: t(j.status) }));
}

// showAudio adds the download link and the player, both on a signed link
// (POST /api/v1/jobs/{id}/link): no bearer token can go in an href or src.
async function showAudio(li, j) {
  let a = li.querySelector('a.job-download');
  if (a) { a.textContent = t('download'); return; }
  a = el('a', 'job-download', t('download'));
  a.setAttribute('download', '');
  const audio = el('audio');
  audio.controls = true;
  audio.preload = 'none';
  audio.setAttribute('aria-label', j.video?.name || j.id);
  li.insertBefore(a, li.querySelector('.job-delete'));
  li.insertBefore(audio, li.querySelector('.job-delete'));
  try {
    const link = await signedLink(j.id);
    a.href = link.url;
    audio.src = link.url;
  } catch (err) { showError(err); }
  // A link past its expiry is swapped for a fresh one before it is followed.
  a.addEventListener('click', async (ev) => {
    const l = links.get(j.id);
    if (l && l.expires - Date.now() > 30000) return;
    ev.preventDefault();
    try { const fresh = await signedLink(j.id, true); a.href = fresh.url; a.click(); } catch (err) { showError(err); }
  });
  audio.addEventListener('error', async () => {
    const l = links.get(j.id);
    if (l && l.expires - Date.now() > 30000) return;
    try { audio.src = (await signedLink(j.id, true)).url; } catch (err) { showError(err); }
  });
}

async function signedLink(id, fresh = false) {
  const have = links.get(id);
  if (have && !fresh && have.expires - Date.now() > 30000) return have;
  const body = await api(`/api/v1/jobs/${encodeURIComponent(id)}/link`, { method: 'POST' });
  const l = { url: body.url, expires: Date.parse(body.expires_at) };
  links.set(id, l);
  return l;
}

async function removeJob(id, button) {
  button.disabled = true;
  try {
    await api(`/api/v1/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
    const name = jobs.get(id)?.video?.name || id;
    remove(id);
    announce(t('statusOf', { name, status: t('delete') }));
  } catch (err) { button.disabled = false; showError(err); }
}
