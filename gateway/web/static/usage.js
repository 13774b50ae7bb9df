/* The usage page: the key's budgets and what it spent, from GET /v1/usage. */
'use strict';

(() => {
  const { api, initKeyForm } = window.BackServ;
  const $ = (id) => document.getElementById(id);

  function money(value, currency) {
    return value === null || value === undefined ? 'none' : `${value.toFixed(4)} ${currency}`;
  }

  async function load() {
    const state = $('usage-state');
    const error = $('usage-error');
    const body = $('usage-body');
    const budgets = $('usage-budgets');
    error.hidden = true;
    body.replaceChildren();
    budgets.replaceChildren();
    try {
      const report = await api('/v1/usage');
      const currency = report.currency;
      state.textContent = `Total ${money(report.total, currency)} from ${report.start} to ${report.end}.`;
      for (const [period, figures] of Object.entries(report.budgets || {})) {
        const li = document.createElement('li');
        li.textContent = `${period}: spent ${money(figures.spent, currency)} of ${money(figures.budget, currency)}`;
        budgets.append(li);
      }
      for (const line of report.data) {
        const tr = document.createElement('tr');
        for (const text of [line.day, line.model, line.provider, String(line.attempts), money(line.cost, currency)]) {
          const td = document.createElement('td');
          td.textContent = text;
          tr.append(td);
        }
        body.append(tr);
      }
    } catch (exc) {
      error.textContent = exc.message || String(exc);
      error.hidden = false;
      state.textContent = '';
    }
  }

  initKeyForm((key) => {
    if (key) { load(); return; }
    $('usage-state').textContent = 'Set a key to see what it spent.';
    $('usage-body').replaceChildren();
    $('usage-budgets').replaceChildren();
  });
})();
