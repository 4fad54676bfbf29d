// The API reference page: Swagger UI over the portal's own OpenAPI document (no CDN, no
// inline script: the CSP allows scripts from this origin only).
document.addEventListener("DOMContentLoaded", function () {
  var node = document.getElementById("swagger-ui");
  if (!node || typeof window.SwaggerUIBundle !== "function") return;
  window.SwaggerUIBundle({
    url: node.dataset.specUrl,
    domNode: node,
    deepLinking: true,
    tryItOutEnabled: false,
    validatorUrl: null,
  });
});
