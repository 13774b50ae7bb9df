/* The jobs page: the key's recent jobs, newest first, with "load more" and cancel. */
'use strict';

(() => {
  const { api, initKeyForm, getKey, TERMINAL, formatTime } = window.BackServ;
  const $ = (id) => document.getElementById(id);
  const body = $('jobs-body');
  const state = $('jobs-state');
  const error = $('jobs-error');
  const more = $('jobs-more');
  const statusFilter = $('jobs-status');
  const PAGE = 25;
  let lastId = null;
  let generation = 0;

  function cell(row, text, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    if (text instanceof Node) td.append(text); else td.textContent = text;
    row.append(td);
    return td;
  }

  function duration(job) {
    if (job.started_at === null || job.started_at === undefined) return '—';
    const end = job.completed_at === null || job.completed_at === undefined
      ? Date.now() / 1000 : job.completed_at;
    const s = Math.max(0, Math.round(end - job.started_at));
    const text = s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
    return job.completed_at === null || job.completed_at === undefined ? `${text} so far` : text;
  }

  function thumbnail(job) {
    const res = job.result || {};
    const file = (res.images || res.videos || [])[0];
    if (job.status !== 'COMPLETED' || !file || res.expired) return '';
    if (!(file.content_type || '').startsWith('image/')) return '';
    const img = document.createElement('img');
    img.src = file.url;
    img.alt = '';
    img.loading = 'lazy';
    img.className = 'thumb-sm';
    return img;
  }

  function row(job) {
    const tr = document.createElement('tr');
    tr.dataset.jobId = job.id;
    cell(tr, thumbnail(job), 'thumb-cell');
    const link = document.createElement('a');
    link.href = `/jobs/${encodeURIComponent(job.id)}`;
    link.className = 'job-link';
    const code = document.createElement('code');
    code.textContent = job.id;
    link.append(code);
    const when = document.createElement('span');
    when.className = 'muted small-text';
    when.textContent = formatTime(job.created_at);
    const jobCell = cell(tr, link, 'job');
    jobCell.append(document.createElement('br'), when);
    const status = cell(tr, job.status, 'status');
    status.dataset.status = job.status;
    cell(tr, job.model, 'model');
    cell(tr, job.provider || '—', 'provider');
    cell(tr, duration(job));
    cell(tr, String(job.retry_count || 0));
    cell(tr, job.fallback_used ? 'yes' : 'no');
    const err = job.error ? `${job.error.message || ''}${job.error.code ? ` (${job.error.code})` : ''}` : '';
    cell(tr, err, 'error-text');
    const actions = cell(tr, '');
    if (job.status === 'COMPLETED' && job.result && job.result.url && !job.result.expired) {
      const a = document.createElement('a');
      a.href = job.result.url;
      a.target = '_blank';
      a.rel = 'noopener';
      a.textContent = 'File';
      a.setAttribute('aria-label', `Result of job ${job.id}`);
      actions.append(a);
    } else if (!TERMINAL.includes(job.status)) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'secondary small';
      b.textContent = 'Cancel';
      b.setAttribute('aria-label', `Cancel job ${job.id}`);
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          tr.replaceWith(row(await api(`/v1/jobs/${encodeURIComponent(job.id)}/cancel`, { method: 'POST' })));
        } catch (e) {
          showError(e.message);
          b.disabled = false;
        }
      });
      actions.append(b);
    }
    return tr;
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  async function load(append) {
    const mine = ++generation;
    showError('');
    if (!getKey()) {
      body.replaceChildren();
      more.hidden = true;
      state.textContent = 'Set a key to see its jobs.';
      return;
    }
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (statusFilter.value) params.set('status', statusFilter.value);
    if (append && lastId) params.set('after', lastId);
    state.textContent = 'Loading…';
    try {
      const page = await api(`/v1/jobs?${params}`);
      if (mine !== generation) return;
      if (!append) body.replaceChildren();
      page.jobs.forEach((job) => body.append(row(job)));
      lastId = page.last_id || lastId;
      more.hidden = !page.has_more;
      const n = body.children.length;
      state.textContent = n ? `${n} job${n === 1 ? '' : 's'} shown, newest first.` : 'This key has no jobs yet.';
    } catch (e) {
      if (mine !== generation) return;
      state.textContent = 'Could not load the jobs.';
      showError(e.message);
    }
  }

  initKeyForm(() => { lastId = null; load(false); });
  $('jobs-filter').addEventListener('submit', (ev) => { ev.preventDefault(); lastId = null; load(false); });
  statusFilter.addEventListener('change', () => { lastId = null; load(false); });
  more.addEventListener('click', () => load(true));
})();
