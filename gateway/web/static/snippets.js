/* "Copy as curl / Python / OpenAI SDK / JavaScript" with a job's own input (job page,
   playground, side by side). The code shown abbreviates inline images; the code copied is whole. */
'use strict';

window.BackServSnippets = (() => {
  const LANGS = { curl: 'curl', python: 'Python', openai: 'OpenAI SDK', javascript: 'JavaScript' };

  const py = (v) => {
    if (v === null || v === undefined) return 'None';
    if (v === true) return 'True';
    if (v === false) return 'False';
    if (typeof v === 'number') return String(v);
    if (typeof v === 'string') return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map(py).join(', ')}]`;
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${py(x)}`).join(', ')}}`;
  };

  function build(base, model, input) {
    const api = `${base.replace(/\/$/, '')}/v1`;
    const body = { model, input };
    const json = JSON.stringify(body);
    return {
      curl: [
        'KEY=bsk_...   # your API key',
        `curl -s ${api}/jobs -H "Authorization: Bearer $KEY" \\`,
        '     -H "Content-Type: application/json" \\',
        `     -d '${json.replace(/'/g, "'\\''")}'`,
        '# then wait for it: curl -s "' + api + '/jobs/JOB_ID?wait=30" -H "Authorization: Bearer $KEY"',
      ].join('\n'),
      python: [
        'import time', '', 'import requests', '',
        'API_KEY = "bsk_..."',
        `BASE_URL = ${py(api)}`,
        'headers = {"Authorization": f"Bearer {API_KEY}"}', '',
        `job = requests.post(f"{BASE_URL}/jobs", headers=headers, json=${py(body)}).json()`,
        'while job["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):',
        '    job = requests.get(f"{BASE_URL}/jobs/{job[\'id\']}?wait=30", headers=headers).json()',
        'print(job["status"], (job.get("result") or {}).get("url"), job.get("error"))',
      ].join('\n'),
      openai: [
        'from openai import OpenAI', '',
        `client = OpenAI(base_url=${py(api)}, api_key="bsk_...")`, '',
        `job = client.post("/jobs", body=${py(body)}, cast_to=object)`,
        'while job["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):',
        '    job = client.get(f"/jobs/{job[\'id\']}?wait=30", cast_to=object)',
        'print(job["status"], (job.get("result") or {}).get("url"), job.get("error"))',
      ].join('\n'),
      javascript: [
        "const KEY = 'bsk_...';",
        `const BASE_URL = ${JSON.stringify(api)};`,
        "const headers = { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' };",
        '',
        `let job = await (await fetch(\`\${BASE_URL}/jobs\`, { method: 'POST', headers, body: JSON.stringify(${JSON.stringify(body, null, 2)}) })).json();`,
        "while (!['COMPLETED', 'FAILED', 'CANCELLED'].includes(job.status)) {",
        '  job = await (await fetch(`${BASE_URL}/jobs/${job.id}?wait=30`, { headers })).json();',
        '}',
        'console.log(job.status, job.result && job.result.url, job.error);',
      ].join('\n'),
    };
  }

  const shorten = (text) => text.replace(/data:([a-z]+\/[a-z0-9.+-]+);base64,[A-Za-z0-9+/=]{64,}/gi,
    (m, type) => `data:${type};base64,…(${m.length} characters)`);

  /* wire a snippets box (templates/_snippets.html); returns show(base, model, input) */
  function init(box) {
    const code = box.querySelector('code');
    const status = box.querySelector('.copy-status');
    const buttons = Array.from(box.querySelectorAll('button[data-lang]'));
    let texts = null;
    let lang = 'curl';
    const paint = () => {
      buttons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.lang === lang)));
      code.textContent = texts ? shorten(texts[lang]) : '';
      code.className = `language-${lang === 'curl' ? 'bash' : lang}`;
    };
    buttons.forEach((b) => b.addEventListener('click', () => { lang = b.dataset.lang; paint(); }));
    box.querySelector('button.copy').addEventListener('click', async () => {
      if (!texts) return;
      try {
        await window.BackServ.copyText(texts[lang]);
        status.textContent = `Copied the ${LANGS[lang]} code.`;
      } catch (e) {
        status.textContent = 'Copying is not allowed here: select the code and press Ctrl+C.';
      }
    });
    return (base, model, input) => {
      texts = build(base, model, input);
      box.hidden = false;
      paint();
      return texts;
    };
  }

  return { build, init, LANGS };
})();
