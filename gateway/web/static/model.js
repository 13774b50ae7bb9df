/* Copy buttons of the examples. */
'use strict';

(() => {
  const status = document.getElementById('copy-status');

  async function copy(text) {
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

  for (const button of document.querySelectorAll('button[data-copy]')) {
    button.addEventListener('click', async () => {
      const code = document.getElementById(button.dataset.copy);
      try {
        await copy(code.textContent);
        button.textContent = 'Copied';
        status.textContent = 'Copied to the clipboard.';
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(code);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        status.textContent = 'Copying is not allowed here: the code is selected, press Ctrl+C.';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 2000);
    });
  }
})();
