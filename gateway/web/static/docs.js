/* /docs: Swagger UI (vendored, static/vendor/swagger-ui/) over this gateway's /openapi.json. */
'use strict';

(() => {
  const host = document.getElementById('swagger');
  if (!window.SwaggerUIBundle) {
    host.textContent = 'The reference renderer did not load; the document is at /openapi.json.';
    return;
  }
  window.SwaggerUIBundle({
    url: '/openapi.json',
    domNode: host,
    deepLinking: true,
    docExpansion: 'list',
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
  });
})();
