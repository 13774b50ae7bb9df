/* The playground: submit a job from the model's form, follow it live, show the result. */
'use strict';

(() => {
  const { api, streamEvents, initKeyForm, getKey, ApiError, TERMINAL } = window.BackServ;
  const form = document.getElementById('job-form');
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const submit = $('submit');
  const formError = $('form-error');
  const panel = $('job');
  const cancel = $('cancel');
  const jobError = $('job-error');
  const result = $('job-result');
  const live = $('job-live');

  let current = null; /* { id, status, controller } */

  initKeyForm(() => { formError.hidden = true; });

  class FieldError extends Error {
    constructor(el, message) { super(message); this.el = el; }
  }

  function collect() {
    const json = form.querySelector('[data-input-json]');
    if (json) {
      let value;
      try { value = JSON.parse(json.value || '{}'); } catch (e) {
        throw new FieldError(json, `The input is not valid JSON: ${e.message}`);
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new FieldError(json, 'The input must be a JSON object.');
      }
      return value;
    }
    const input = {};
    for (const el of form.querySelectorAll('[data-param]')) {
      const name = el.dataset.param;
      const type = el.dataset.type;
      if (type === 'boolean') { input[name] = el.checked; continue; }
      if (el.validity && el.validity.badInput) throw new FieldError(el, `'${name}' must be a number.`);
      const raw = el.value.trim();
      if (raw === '') continue;
      if (type === 'integer' || type === 'number') {
        const n = Number(raw);
        if (!Number.isFinite(n) || (type === 'integer' && !Number.isInteger(n))) {
          throw new FieldError(el, `'${name}' must be ${type === 'integer' ? 'a whole number' : 'a number'}.`);
        }
        input[name] = n;
      } else if (type === 'array') {
        input[name] = raw.split('\n').map((s) => s.trim()).filter(Boolean);
      } else if (type === 'json') {
        try { input[name] = JSON.parse(raw); } catch (e) {
          throw new FieldError(el, `'${name}' is not valid JSON.`);
        }
      } else {
        input[name] = el.value;
      }
    }
    return input;
  }

  function clearInvalid() {
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    formError.hidden = true;
    formError.textContent = '';
  }

  function showFormError(message, el) {
    formError.textContent = message;
    formError.hidden = false;
    if (el) { el.setAttribute('aria-invalid', 'true'); el.focus(); }
  }

  function fieldFor(param) {
    if (!param) return null;
    const name = param.replace(/^input\./, '').split('.')[0];
    return form.querySelector(`[data-param="${CSS.escape(name)}"]`) || form.querySelector('[data-input-json]');
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearInvalid();
    if (!getKey()) {
      showFormError('Paste your API key above first.', $('api-key'));
      return;
    }
    let input;
    try { input = collect(); } catch (e) {
      showFormError(e.message, e.el);
      return;
    }
    submit.disabled = true;
    try {
      const job = await api('/v1/jobs', { method: 'POST', body: { model: form.dataset.model, input } });
      follow(job);
    } catch (e) {
      showFormError(e.message, e instanceof ApiError ? fieldFor(e.param) : null);
    } finally {
      submit.disabled = false;
    }
  });

  cancel.addEventListener('click', async () => {
    if (!current) return;
    cancel.disabled = true;
    try {
      render(await api(`/v1/jobs/${encodeURIComponent(current.id)}/cancel`, { method: 'POST' }));
    } catch (e) {
      jobError.textContent = e.message;
      jobError.hidden = false;
      cancel.disabled = current && TERMINAL.includes(current.status);
    }
  });

  function follow(job) {
    if (current) current.controller.abort();
    current = { id: job.id, status: null, controller: new AbortController() };
    $('job-details').hidden = false;
    $('job-empty').hidden = true;
    jobError.hidden = true;
    result.replaceChildren();
    render(job);
    watch(current);
    panel.scrollIntoView({ block: 'nearest' });
  }

  /* SSE read with fetch; on any failure but a client error, long-polling takes over */
  async function watch(state) {
    const path = `/v1/jobs/${encodeURIComponent(state.id)}`;
    const { signal } = state.controller;
    if (TERMINAL.includes(state.status)) return;
    try {
      $('job-transport').textContent = 'live (Server-Sent Events)';
      await streamEvents(`${path}/events`, (name, job) => { if (state === current) render(job); }, signal);
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) {
        jobError.textContent = e.message;
        jobError.hidden = false;
        return;
      }
    }
    if (signal.aborted || TERMINAL.includes(state.status)) return;
    $('job-transport').textContent = 'polling';
    while (!signal.aborted && !TERMINAL.includes(state.status)) {
      try {
        const job = await api(`${path}?wait=20`, { signal });
        if (state === current) render(job);
      } catch (e) {
        if (signal.aborted) return;
        jobError.textContent = `${e.message} Retrying…`;
        jobError.hidden = false;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  function render(job) {
    const changed = current.status !== job.status;
    current.status = job.status;
    $('job-id').textContent = job.id;
    const status = $('job-status');
    status.textContent = job.status;
    status.dataset.status = job.status;
    $('job-queue').textContent = job.queue_position === null || job.queue_position === undefined
      ? '—' : String(job.queue_position);
    const progress = Math.max(0, Math.min(100, Number(job.progress) || 0));
    $('job-progress').value = progress;
    $('job-progress-text').textContent = `${progress}%`;
    $('job-provider').textContent = job.provider || '—';
    const done = TERMINAL.includes(job.status);
    cancel.disabled = done;
    if (changed) {
      const where = job.queue_position ? `, position ${job.queue_position} in the queue` : '';
      live.textContent = `Job ${job.status.toLowerCase()}${where}.`;
    }
    if (job.status === 'FAILED' && job.error) {
      jobError.textContent = `Failed: ${job.error.message || job.error.code || 'unknown error'}`;
      jobError.hidden = false;
    }
    if (job.status === 'COMPLETED' && changed) showResult(job);
  }

  function showResult(job) {
    const res = job.result || {};
    const files = res.images || res.videos || [];
    result.replaceChildren();
    if (res.expired) {
      const p = document.createElement('p');
      p.textContent = 'The result files have expired.';
      result.append(p);
      return;
    }
    files.forEach((file, i) => {
      const figure = document.createElement('figure');
      const type = file.content_type || '';
      let media;
      if (type.startsWith('video/')) {
        media = document.createElement('video');
        media.controls = true;
        media.preload = 'metadata';
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
      const link = document.createElement('a');
      link.href = file.url;
      link.target = '_blank';
      link.rel = 'noopener';
      link.textContent = `Open result ${i + 1}`;
      const size = file.width && file.height ? ` ${file.width}×${file.height}` : '';
      caption.append(link, ` (${type}${size})`);
      figure.append(caption);
      result.append(figure);
    });
  }
})();
