/* The playground: pick a model (its form swaps in, no reload), upload or drop images, run a
   job and follow it live; the result shows its files, seed, times, provider and fallback. */
'use strict';

(() => {
  const B = window.BackServ;
  const form = document.getElementById('job-form');
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const root = document.querySelector('.playground');
  const base = root.dataset.baseUrl;
  const submit = $('submit');
  const formError = $('form-error');
  const cancel = $('cancel');
  const jobError = $('job-error');
  const result = $('job-result');
  const live = $('job-live');
  const select = $('model-select');
  const showCode = window.BackServSnippets.init($('form-code'));
  const MAX_UPLOAD = 20 * 1024 * 1024;

  let current = null; /* { id, status, controller } */
  const uploads = new Map(); /* field id -> [{ name, url }] */

  B.initKeyForm(() => { formError.hidden = true; });
  $('model-load').hidden = true;

  /* -- model switch ------------------------------------------------------------------- */
  function useModel(id, push) {
    const tpl = document.getElementById(`form-${id}`);
    if (!tpl) return;
    form.dataset.model = id;
    form.dataset.kind = tpl.dataset.kind;
    uploads.clear();
    $('job-fields').replaceChildren(tpl.content.cloneNode(true));
    const desc = $('model-description');
    const link = document.createElement('a');
    link.href = `/models/${id}`;
    link.textContent = 'Model page';
    desc.replaceChildren(`${tpl.dataset.description} `, link);
    clearInvalid();
    wireUploads();
    $('form-code').hidden = true;
    if (push) history.replaceState(null, '', `?model=${encodeURIComponent(id)}`);
  }
  select.addEventListener('change', () => useModel(select.value, true));
  $('model-form').addEventListener('submit', (ev) => { ev.preventDefault(); useModel(select.value, true); });

  /* -- uploads: file picker and drag-and-drop, sent as data: URLs ------------------------ */
  const readFile = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });

  async function addFiles(fieldId, files) {
    const field = $(fieldId);
    const many = field.dataset.type === 'array';
    const list = many ? (uploads.get(fieldId) || []) : [];
    for (const file of Array.from(files).slice(0, many ? 16 : 1)) {
      if (!/^image\/(png|jpeg|webp|gif)$/.test(file.type)) {
        showFormError(`${file.name} is not a PNG, JPEG, WebP or GIF image.`, field);
        continue;
      }
      if (file.size > MAX_UPLOAD) {
        showFormError(`${file.name} is larger than ${MAX_UPLOAD / 1024 / 1024} MB.`, field);
        continue;
      }
      list.push({ name: file.name, url: await readFile(file) });
    }
    uploads.set(fieldId, list);
    paintPreviews(fieldId);
  }

  function paintPreviews(fieldId) {
    const field = $(fieldId);
    const list = uploads.get(fieldId) || [];
    const box = $(`${fieldId}-previews`);
    box.replaceChildren(...list.map((item, i) => {
      const li = document.createElement('li');
      const img = document.createElement('img');
      img.src = item.url;
      img.alt = `Uploaded ${item.name}`;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'secondary small';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', `Remove ${item.name}`);
      remove.addEventListener('click', () => { list.splice(i, 1); paintPreviews(fieldId); });
      li.append(img, remove);
      return li;
    }));
    if (field.dataset.type !== 'array') {
      field.disabled = list.length > 0;
      if (list.length) field.value = '';
    }
  }

  function wireUploads() {
    for (const input of form.querySelectorAll('input[data-upload-for]')) {
      const fieldId = input.dataset.uploadFor;
      input.addEventListener('change', () => { addFiles(fieldId, input.files); input.value = ''; });
      const zone = input.closest('.drop');
      zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
      zone.addEventListener('dragleave', () => zone.classList.remove('over'));
      zone.addEventListener('drop', (ev) => {
        ev.preventDefault();
        zone.classList.remove('over');
        if (ev.dataTransfer && ev.dataTransfer.files.length) addFiles(fieldId, ev.dataTransfer.files);
      });
    }
  }
  wireUploads();

  /* -- the input ------------------------------------------------------------------------ */
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
      const uploaded = (uploads.get(el.id) || []).map((u) => u.url);
      if (type === 'boolean') { input[name] = el.checked; continue; }
      if (el.validity && el.validity.badInput) throw new FieldError(el, `'${name}' must be a number.`);
      const raw = el.value.trim();
      if (type === 'array') {
        const items = raw.split('\n').map((s) => s.trim()).filter(Boolean).concat(uploaded);
        if (items.length) input[name] = items;
        continue;
      }
      if (uploaded.length) { input[name] = uploaded[0]; continue; }
      if (raw === '') continue;
      if (type === 'integer' || type === 'number') {
        const n = Number(raw);
        if (!Number.isFinite(n) || (type === 'integer' && !Number.isInteger(n))) {
          throw new FieldError(el, `'${name}' must be ${type === 'integer' ? 'a whole number' : 'a number'}.`);
        }
        input[name] = n;
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

  $('show-code').addEventListener('click', () => {
    clearInvalid();
    try { showCode(base, form.dataset.model, collect()); } catch (e) { showFormError(e.message, e.el); }
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearInvalid();
    if (!B.getKey()) {
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
      const job = await B.api('/v1/jobs', { method: 'POST', body: { model: form.dataset.model, input } });
      follow(job);
    } catch (e) {
      showFormError(e.message, e instanceof B.ApiError ? fieldFor(e.param) : null);
    } finally {
      submit.disabled = false;
    }
  });

  /* -- the job -------------------------------------------------------------------------- */
  cancel.addEventListener('click', async () => {
    if (!current) return;
    cancel.disabled = true;
    try {
      render(await B.api(`/v1/jobs/${encodeURIComponent(current.id)}/cancel`, { method: 'POST' }));
    } catch (e) {
      jobError.textContent = e.message;
      jobError.hidden = false;
      cancel.disabled = current && B.TERMINAL.includes(current.status);
    }
  });

  function follow(job) {
    if (current) current.controller.abort();
    const state = { id: job.id, status: null, controller: new AbortController() };
    current = state;
    $('job-details').hidden = false;
    $('job-empty').hidden = true;
    jobError.hidden = true;
    result.replaceChildren();
    render(job);
    if (!B.TERMINAL.includes(job.status)) {
      B.followJob(job.id, (j) => { if (state === current) render(j); }, state.controller.signal,
        (t) => { if (state === current) $('job-transport').textContent = t; })
        .catch((e) => { jobError.textContent = e.message; jobError.hidden = false; });
    }
    $('job').scrollIntoView({ block: 'nearest' });
  }

  function render(job) {
    const changed = current.status !== job.status;
    current.status = job.status;
    $('job-id').textContent = job.id;
    $('job-link').href = `/jobs/${encodeURIComponent(job.id)}`;
    const status = $('job-status');
    status.textContent = job.status;
    status.dataset.status = job.status;
    $('job-queue').textContent = job.queue_position === null || job.queue_position === undefined
      ? '—' : String(job.queue_position);
    const progress = Math.max(0, Math.min(100, Number(job.progress) || 0));
    $('job-progress').value = progress;
    $('job-progress-text').textContent = `${progress}%`;
    $('job-provider').textContent = job.provider || '—';
    $('job-fallback').textContent = job.provider ? (job.fallback_used ? 'yes' : 'no') : '—';
    const seed = (job.result && job.result.seed !== undefined) ? job.result.seed : (job.input || {}).seed;
    $('job-seed').textContent = seed === undefined || seed === null ? '—' : String(seed);
    const done = B.TERMINAL.includes(job.status);
    if (job.started_at !== null && job.completed_at !== null && job.completed_at !== undefined) {
      $('job-duration').textContent = B.formatSeconds(job.completed_at - job.started_at);
    }
    $('job-latency').textContent = B.formatSeconds(B.latency(job));
    cancel.disabled = done;
    cancel.hidden = done;
    if (changed) {
      const where = job.queue_position ? `, position ${job.queue_position} in the queue` : '';
      live.textContent = `Job ${job.status.toLowerCase()}${where}.`;
    }
    if (job.status === 'FAILED' && job.error) {
      jobError.textContent = `Failed: ${job.error.message || job.error.code || 'unknown error'}`;
      jobError.hidden = false;
    }
    if (job.status === 'COMPLETED' && changed) B.renderOutputs(result, job);
  }
})();
