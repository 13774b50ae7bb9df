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

  return { api, streamEvents, initKeyForm, getKey: currentKey, ApiError, TERMINAL, formatTime };
})();
