/* Shared by the pages: the API key (this tab's sessionStorage only) and calls to the API. */
'use strict';

window.BackServ = (() => {
  const STORAGE = 'backserv.apiKey';
  const listeners = [];

  function getKey() {
    try { return sessionStorage.getItem(STORAGE) || ''; } catch (e) { return ''; }
  }

  function setKey(key) {
    try {
      if (key) sessionStorage.setItem(STORAGE, key); else sessionStorage.removeItem(STORAGE);
    } catch (e) { /* storage disabled: the key lives until the page is left */ }
    memoryKey = key;
    listeners.forEach((fn) => fn(key));
  }

  let memoryKey = getKey();
  const currentKey = () => getKey() || memoryKey;

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || `The gateway answered ${status}.`);
      this.status = status;
      this.param = err.param || null;
      this.code = err.code || null;
    }
  }

  function headers(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra || {});
    const key = currentKey();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  /* fetch a JSON API path; resolves with the body, rejects with an ApiError */
  async function api(path, options) {
    const opts = options || {};
    const init = { method: opts.method || 'GET', headers: headers(), cache: 'no-store', signal: opts.signal };
    if (opts.body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    const resp = await fetch(path, init);
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) throw new ApiError(resp.status, body);
    return body;
  }

  /* Read a job's Server-Sent Events with fetch (EventSource cannot send the key).
     Calls onEvent(name, job) per event; resolves when the stream ends. */
  async function streamEvents(path, onEvent, signal) {
    const resp = await fetch(path, {
      headers: headers({ Accept: 'text/event-stream' }), cache: 'no-store', signal,
    });
    if (!resp.ok || !resp.body) {
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      throw new ApiError(resp.status, body);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') name = val;
          else if (field === 'data') data.push(val);
        }
        if (data.length) onEvent(name, JSON.parse(data.join('\n')));
      }
    }
  }

  const TERMINAL = ['COMPLETED', 'FAILED', 'CANCELLED'];

  function maskKey(key) {
    return key.length > 8 ? `${key.slice(0, 6)}…` : '…';
  }

  /* wire the key form of a page; onChange(key) runs now and whenever the key changes */
  function initKeyForm(onChange) {
    const form = document.getElementById('key-form');
    const input = document.getElementById('api-key');
    const state = document.getElementById('key-state');
    const forget = document.getElementById('key-forget');
    const show = (key) => {
      state.textContent = key
        ? `Using key ${maskKey(key)} (kept in this tab only, sent only as the Authorization header).`
        : 'No key set.';
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      input.value = '';
      setKey(key);
    });
    forget.addEventListener('click', () => { input.value = ''; setKey(''); });
    listeners.push(show);
    if (onChange) listeners.push(onChange);
    show(currentKey());
    if (onChange) onChange(currentKey());
  }

  function formatTime(epoch) {
    if (epoch === null || epoch === undefined) return '—';
    return new Date(epoch * 1000).toLocaleString();
  }

  /* "0.8 s", "12 s", "3 min 5 s" */
  function formatSeconds(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return '—';
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    const m = Math.floor(Math.round(s) / 60);
    const r = Math.round(s) % 60;
    return r ? `${m} min ${r} s` : `${m} min`;
  }

  /* An amount of money as the API gives it (a number of the currency, exact to a
     millionth): "0.08 USD", "0.026214 USD"; never rounded to 0. */
  function formatMoney(value, currency) {
    if (value === null || value === undefined || !Number.isFinite(value)) return '—';
    const digits = value.toFixed(6).replace(/0+$/, '');
    const [whole, part = ''] = digits.split('.');
    return `${whole}.${part.padEnd(2, '0')} ${currency}`;
  }

  /* submission to result (or to now), in seconds; null before it ends unless running */
  function latency(job) {
    const end = job.completed_at === null || job.completed_at === undefined ? null : job.completed_at;
    return end === null ? null : Math.max(0, end - job.created_at);
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    if (!ok) throw new Error('copy refused');
  }

  /* the files of a finished job, inline: images, a video player, and a download link each */
  function renderOutputs(container, job, compact) {
    const res = job.result || {};
    const files = res.images || res.videos || [];
    container.replaceChildren();
    if (res.expired) {
      const p = document.createElement('p');
      p.textContent = 'The result files have expired.';
      container.append(p);
      return;
    }
    files.forEach((file, i) => {
      const figure = document.createElement('figure');
      const type = file.content_type || '';
      let media = null;
      if (type.startsWith('video/')) {
        media = document.createElement('video');
        media.controls = true;
        media.preload = 'metadata';
        media.setAttribute('aria-label', `Result ${i + 1} of job ${job.id}`);
      } else if (type.startsWith('image/')) {
        media = document.createElement('img');
        media.alt = `Result ${i + 1} of ${files.length} of job ${job.id}`;
        media.decoding = 'async';
      }
      if (media) {
        media.src = file.url;
        if (file.width) media.width = file.width;
        if (file.height) media.height = file.height;
        figure.append(media);
      }
      const caption = document.createElement('figcaption');
      const open = document.createElement('a');
      open.href = file.url;
      open.target = '_blank';
      open.rel = 'noopener';
      open.textContent = compact ? 'Open' : `Open result ${i + 1}`;
      open.setAttribute('aria-label', `Open result ${i + 1} of job ${job.id}`);
      const save = document.createElement('a');
      save.href = file.url;
      save.download = '';
      save.textContent = 'Download';
      save.setAttribute('aria-label', `Download result ${i + 1} of job ${job.id}`);
      const size = file.width && file.height ? ` ${file.width}×${file.height}` : '';
      caption.append(open, ' · ', save, compact ? '' : ` (${type}${size})`);
      figure.append(caption);
      container.append(figure);
    });
  }

  /* Follow a job until it ends: SSE read with fetch, long-polling when the stream fails.
     onJob(job) per change; onTransport(text); resolves with the last job seen. */
  async function followJob(id, onJob, signal, onTransport) {
    const path = `/v1/jobs/${encodeURIComponent(id)}`;
    const say = onTransport || (() => {});
    let last = null;
    const seen = (job) => { last = job; onJob(job); };
    try {
      say('live (Server-Sent Events)');
      await streamEvents(`${path}/events`, (name, job) => seen(job), signal);
    } catch (e) {
      if (signal && signal.aborted) return last;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) throw e;
    }
    if ((signal && signal.aborted) || (last && TERMINAL.includes(last.status))) return last;
    say('polling');
    while (!(signal && signal.aborted) && !(last && TERMINAL.includes(last.status))) {
      try {
        seen(await api(`${path}?wait=20`, { signal }));
      } catch (e) {
        if (signal && signal.aborted) return last;
        if (e instanceof ApiError && e.status === 404) throw e;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    return last;
  }

  return {
    api, streamEvents, followJob, initKeyForm, getKey: currentKey, ApiError, TERMINAL,
    formatTime, formatSeconds, formatMoney, latency, copyText, renderOutputs,
  };
})();
