/* The catalog's filters, live: search, kind, provider and "available now" narrow the grid as
   you type, with no reload; the URL keeps them, so a filtered catalog can be linked. */
'use strict';

(() => {
  const form = document.getElementById('catalog-filter');
  const q = document.getElementById('filter-q');
  const kind = document.getElementById('filter-kind');
  const provider = document.getElementById('filter-provider');
  const available = document.getElementById('filter-available');
  const count = document.getElementById('catalog-count');
  const empty = document.getElementById('catalog-empty');
  const groups = Array.from(document.querySelectorAll('.model-group'));
  const items = Array.from(document.querySelectorAll('.models > li'));

  function apply() {
    const words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const li of items) {
      const ok = (!kind.value || li.dataset.kind === kind.value)
        && (!provider.value || li.dataset.providers.split(' ').includes(provider.value))
        && (!available.checked || li.dataset.available === 'yes')
        && words.every((w) => li.dataset.text.includes(w));
      li.hidden = !ok;
      if (ok) shown += 1;
    }
    for (const group of groups) group.hidden = !group.querySelector('.models > li:not([hidden])');
    count.textContent = `Showing ${shown} of ${items.length} models.`;
    empty.hidden = shown > 0;
    const params = new URLSearchParams();
    if (q.value.trim()) params.set('q', q.value.trim());
    if (kind.value) params.set('kind', kind.value);
    if (provider.value) params.set('provider', provider.value);
    if (available.checked) params.set('available', '1');
    const query = params.toString();
    history.replaceState(null, '', query ? `?${query}` : location.pathname);
  }

  form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(); });
  q.addEventListener('input', apply);
  kind.addEventListener('change', apply);
  provider.addEventListener('change', apply);
  available.addEventListener('change', apply);
})();
