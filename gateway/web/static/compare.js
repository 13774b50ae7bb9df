/* Side by side: one prompt, two to four models, run at once as ordinary jobs; each column
   follows its job live and shows its output, latency and price. */
'use strict';

(() => {
  const B = window.BackServ;
  const $ = (id) => document.getElementById(id);
  const form = $('compare-form');
  const error = $('compare-error');
  const results = $('compare-results');
  let controller = null;

  B.initKeyForm(() => { error.hidden = true; });

  const boxes = () => Array.from(form.querySelectorAll('.model-choices input[type="checkbox"]'));

  function fail(message, el) {
    error.textContent = message;
    error.hidden = false;
    if (el) el.focus();
  }

  function fact(dl, name, value, cls) {
    const div = document.createElement('div');
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.className = cls;
    dd.textContent = value;
    div.append(dt, dd);
    dl.append(div);
    return dd;
  }

  function column(model, price) {
    const col = document.createElement('article');
    col.className = 'panel compare-col';
    col.dataset.model = model;
    const h = document.createElement('h3');
    h.textContent = model;
    const status = document.createElement('p');
    status.className = 'status';
    status.textContent = 'Submitting…';
    const out = document.createElement('div');
    out.className = 'result';
    const dl = document.createElement('dl');
    dl.className = 'facts';
    const cells = {
      latency: fact(dl, 'Latency', '—', 'latency'),
      provider: fact(dl, 'Provider', '—', 'provider'),
      price: fact(dl, 'Price', price || 'unpriced', 'price'),
      job: fact(dl, 'Job', '—', 'job'),
    };
    col.append(h, status, out, dl);
    return { col, status, out, cells };
  }

  async function run(model, input, view, signal) {
    const started = performance.now();
    let job;
    try {
      job = await B.api('/v1/jobs', { method: 'POST', body: { model, input }, signal });
    } catch (e) {
      view.status.textContent = `Not submitted: ${e.message}`;
      view.status.dataset.status = 'FAILED';
      return;
    }
    const link = document.createElement('a');
    link.href = `/jobs/${encodeURIComponent(job.id)}`;
    link.textContent = job.id;
    view.cells.job.replaceChildren(link);
    let shown = null;
    const paint = (j) => {
      view.status.textContent = j.status + (j.status === 'PROCESSING' ? ` ${j.progress || 0}%` : '');
      view.status.dataset.status = j.status;
      view.cells.provider.textContent = j.provider || '—';
      if (B.TERMINAL.includes(j.status) && shown !== j.status) {
        shown = j.status;
        view.cells.latency.textContent = B.formatSeconds((performance.now() - started) / 1000);
        if (j.status === 'COMPLETED') B.renderOutputs(view.out, j, true);
        else if (j.error) view.out.textContent = j.error.message || j.error.code;
      }
    };
    paint(job);
    try {
      await B.followJob(job.id, paint, signal);
    } catch (e) {
      if (!signal.aborted) view.status.textContent = e.message;
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const prompt = $('compare-prompt').value.trim();
    const chosen = boxes().filter((b) => b.checked);
    if (!B.getKey()) return fail('Paste your API key above first.', $('api-key'));
    if (!prompt) return fail('Write a prompt first.', $('compare-prompt'));
    if (chosen.length < 2 || chosen.length > 4) return fail('Choose two to four models.', chosen[0] || boxes()[0]);
    const seedText = $('compare-seed').value.trim();
    const input = { prompt };
    if (seedText) {
      const seed = Number(seedText);
      if (!Number.isInteger(seed) || seed < 0) return fail('The seed must be a whole number, 0 or more.', $('compare-seed'));
      input.seed = seed;
    }
    if (controller) controller.abort();
    controller = new AbortController();
    results.replaceChildren();
    results.dataset.columns = String(chosen.length);
    const views = chosen.map((b) => {
      const view = column(b.value, b.dataset.price);
      results.append(view.col);
      return [b.value, view];
    });
    const params = new URLSearchParams();
    chosen.forEach((b) => params.append('model', b.value));
    history.replaceState(null, '', `?${params}`);
    await Promise.all(views.map(([model, view]) => run(model, input, view, controller.signal)));
  });
})();
