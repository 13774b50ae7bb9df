/* Copy buttons of the examples (the copy itself: BackServ.copyText, common.js). */
'use strict';

(() => {
  const status = document.getElementById('copy-status');

  for (const button of document.querySelectorAll('button[data-copy]')) {
    button.addEventListener('click', async () => {
      const code = document.getElementById(button.dataset.copy);
      try {
        await window.BackServ.copyText(code.textContent);
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
