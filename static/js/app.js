// Small progressive enhancements for staff pages. Every page works without this file.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // htmx requests carry the CSRF token in a header.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  function showRequestError(html) {
    var box = document.getElementById("request-error");
    if (!box) { return; }
    box.innerHTML = html;
    box.hidden = false;
    box.focus && box.focus();
  }

  document.addEventListener("htmx:beforeRequest", function () {
    var box = document.getElementById("request-error");
    if (box) { box.hidden = true; }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status === 422) {
      // Validation errors: swap the re-rendered form like a success.
      return;
    }
    showRequestError(xhr.responseText || "The request failed. Try again.");
  });

  // Forms re-rendered with errors (422) are swapped in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:sendError", function () {
    var box = document.getElementById("request-error");
    if (box) {
      box.textContent = "Could not reach the portal. Check your connection and try again; nothing was changed.";
      box.hidden = false;
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) { return; }
    var copy = target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source && navigator.clipboard) {
        var text = Array.prototype.map.call(source.querySelectorAll("li"), function (li) {
          return li.textContent.trim();
        }).join("\n") || source.textContent.trim();
        navigator.clipboard.writeText(text).then(function () {
          copy.textContent = "Copied";
        });
      }
    }
    if (target.closest("[data-print]")) {
      window.print();
    }
  });
})();
