/* A job's page: status live over SSE, input, attempts, what it cost, webhook deliveries,
   outputs inline, "run again" and "copy as" with this job's input. */
'use strict';

(() => {
  const B = window.BackServ;
  const $ = (id) => document.getElementById(id);
  const page = $('job-page');
  const jobId = page.dataset.jobId;
  const base = page.dataset.baseUrl;
  const showCode = window.BackServSnippets.init($('job-code'));
  let controller = null;
  let job = null;
  let lastStatus = null;

  const text = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));

  function cells(values) {
    const tr = document.createElement('tr');
    values.forEach((v, i) => {
      const td = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) td.scope = 'row';
      if (v instanceof Node) td.append(v); else td.textContent = text(v);
      tr.append(td);
    });
    return tr;
  }

  function inputValue(value) {
    const list = Array.isArray(value) ? value : [value];
    if (list.length && list.every((v) => typeof v === 'string' && /^(data:image\/|https?:\/\/)/.test(v))) {
      const box = document.createElement('div');
      box.className = 'input-images';
      list.forEach((url, i) => {
        if (url.startsWith('data:image/')) {
          const img = document.createElement('img');
          img.src = url;
          img.alt = `Input image ${i + 1}`;
          box.append(img);
        } else {
          const a = document.createElement('a');
          a.href = url;
          a.rel = 'noopener noreferrer';
          a.target = '_blank';
          a.textContent = url;
          box.append(a);
        }
      });
      return box;
    }
    const code = document.createElement('code');
    code.textContent = typeof value === 'string' ? value : JSON.stringify(value);
    return code;
  }

  /* What the job costs: the sum over its attempts ("so far" until it ends), or "unpriced"
     when a route it ran on has no price: a cost unknown, never shown as 0. */
  function usageText(usage, done) {
    if (!usage) return '—';
    if (!usage.priced) return 'unpriced';
    const cost = B.formatMoney(usage.cost, usage.currency);
    return done ? cost : `${cost} so far`;
  }

  function render(j) {
    job = j;
    $('job-body').hidden = false;
    $('job-state').textContent = '';
    const status = $('job-status');
    status.textContent = j.status;
    status.dataset.status = j.status;
    $('job-model').textContent = `${j.model} · ${j.kind}`;
    const done = B.TERMINAL.includes(j.status);
    const progress = Math.max(0, Math.min(100, Number(j.progress) || 0));
    $('job-progress').value = progress;
    $('job-progress-text').textContent = `${progress}%`;
    $('job-queue').textContent = j.queue_position ? `position ${j.queue_position} in the queue` : '';
    $('job-running').hidden = done;
    $('cancel').hidden = done;
    $('fact-model').textContent = j.model;
    $('fact-kind').textContent = j.kind;
    $('fact-provider').textContent = text(j.provider);
    $('fact-fallback').textContent = j.provider ? (j.fallback_used ? 'yes' : 'no') : '—';
    $('fact-retries').textContent = String(j.retry_count || 0);
    const seed = j.result && j.result.seed !== undefined ? j.result.seed : (j.input || {}).seed;
    $('fact-seed').textContent = text(seed);
    $('fact-created').textContent = B.formatTime(j.created_at);
    $('fact-started').textContent = B.formatTime(j.started_at);
    $('fact-completed').textContent = B.formatTime(j.completed_at);
    $('fact-latency').textContent = B.formatSeconds(B.latency(j));
    const usage = j.usage || null;
    const currency = usage ? usage.currency : '';
    $('fact-cost').textContent = usageText(usage, done);
    $('fact-estimate').textContent = usage && usage.estimate !== null
      ? B.formatMoney(usage.estimate, currency) : (usage && !usage.priced ? 'unpriced' : '—');
    $('open-playground').href = `/playground?model=${encodeURIComponent(j.model)}`;
    if (j.status !== lastStatus) {
      $('job-live').textContent = `Job ${j.status.toLowerCase()}.`;
      if (j.status === 'COMPLETED') B.renderOutputs($('job-outputs'), j);
      lastStatus = j.status;
    }
    const failure = $('job-failure');
    failure.hidden = !j.error;
    failure.textContent = j.error ? `${j.error.message || ''}${j.error.code ? ` (${j.error.code})` : ''}` : '';

    $('job-input').replaceChildren(...Object.entries(j.input || {}).map(([k, v]) => {
      const name = document.createElement('code');
      name.textContent = k;
      return cells([name, inputValue(v)]);
    }));
    $('job-attempts').replaceChildren(...(j.attempts || []).map((a) => cells([
      String(a.n), a.route, a.request_id, B.formatTime(a.started_at), B.formatTime(a.ended_at),
      a.outcome || (a.ended_at ? '' : 'running'),
      a.cost === null || a.cost === undefined ? 'unpriced' : B.formatMoney(a.cost, currency),
      a.error ? `${a.error.message || ''}${a.error.code ? ` (${a.error.code})` : ''}` : '',
    ])));
    if (!j.attempts || !j.attempts.length) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      td.colSpan = 8;
      td.textContent = 'No attempt yet.';
      tr.append(td);
      $('job-attempts').replaceChildren(tr);
    }
    showCode(base, j.model, j.input || {});
  }

  function renderWebhook(j) {
    const hook = j.webhook;
    $('webhook-none').hidden = Boolean(hook);
    $('webhook-box').hidden = !hook;
    if (!hook) return;
    $('webhook-url').textContent = hook.url;
    $('webhook-events').textContent = (hook.events || []).join(', ');
    $('job-deliveries').replaceChildren(...hook.deliveries.map((d) => cells([
      d.event, d.status, String(d.attempts),
      d.last_status_code ? `HTTP ${d.last_status_code}` : (d.last_error || ''),
      B.formatTime(d.delivered_at), d.next_attempt_at ? B.formatTime(d.next_attempt_at) : '',
    ])));
  }

  async function load() {
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    $('job-error').hidden = true;
    if (!B.getKey()) {
      $('job-state').textContent = 'Set a key to read this job.';
      return;
    }
    const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
    try {
      const first = await B.api(path, { signal });
      render(first);
      renderWebhook(first);
      if (!B.TERMINAL.includes(first.status)) {
        await B.followJob(jobId, render, signal, (t) => { $('job-transport').textContent = t; });
        if (signal.aborted) return;
        const last = await B.api(path, { signal }); /* the deliveries are read with a GET */
        render(last);
        renderWebhook(last);
      } else {
        $('job-transport').textContent = 'finished';
      }
    } catch (e) {
      if (signal.aborted) return;
      $('job-state').textContent = '';
      $('job-error').textContent = e.status === 404
        ? `No job ${jobId} for this key.` : e.message;
      $('job-error').hidden = false;
    }
  }

  $('run-again').addEventListener('click', async () => {
    if (!job) return;
    const state = $('run-state');
    $('run-again').disabled = true;
    state.textContent = 'Submitting…';
    try {
      const next = await B.api('/v1/jobs', { method: 'POST', body: { model: job.model, input: job.input } });
      location.assign(`/jobs/${encodeURIComponent(next.id)}`);
    } catch (e) {
      state.textContent = e.message;
      $('run-again').disabled = false;
    }
  });

  $('cancel').addEventListener('click', async () => {
    try {
      render(await B.api(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, { method: 'POST' }));
    } catch (e) {
      $('run-state').textContent = e.message;
    }
  });

  B.initKeyForm(() => load());
})();
