// The document area of the signer's page (templates/signing/_reading.html and _pages.html):
// each field shown in the document -- a box on a page image, or a field in the reading
// view's text -- shows what was entered in the form below as it is typed: the text, date,
// choice or file name; a ticked box as "Ticked"; a signature as "Signed" only once it has
// been adopted (the signing flow marks the signature section "is-adopted", static/js/signing.js).
// Conditional fields hide with their input. The page works without this file: the boxes
// and the reading view's fields are links to the inputs, the server fills in what it knows.
(function () {
  "use strict";

  var area = document.getElementById("document");
  var form = document.getElementById("sign-form");
  if (!area || !form) { return; }

  function $$(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  function clean(text) {
    return String(text || "").replace(/\s+/g, " ").trim();
  }

  function text(name) {
    return area.getAttribute("data-" + name) || "";
  }

  // What the form holds for a field, as a person reads it ("" when nothing yet).
  function shownValue(key, type) {
    if (type === "signature" || type === "initials") {
      return form.querySelector(".adopt.is-adopted") ? text("signed") : "";
    }
    var el = document.getElementById("f-" + key);
    if (!el) { return ""; }
    if (el.tagName === "FIELDSET") {
      var chosen = el.querySelector("input:checked");
      return chosen ? clean(chosen.value) : "";
    }
    if (el.type === "checkbox") { return el.checked ? text("ticked") : ""; }
    if (el.type === "file") { return el.files && el.files.length ? clean(el.files[0].name) : ""; }
    if (el.tagName === "SELECT") {
      var option = el.options[el.selectedIndex];
      return option && option.value ? clean(option.textContent) : "";
    }
    return clean(el.value);
  }

  function hiddenInForm(key) {
    var box = form.querySelector('.field[data-field="' + key + '"]');
    return !!box && box.hidden;
  }

  function update() {
    $$(".reading-field[data-key]", area).forEach(function (chip) {
      var key = chip.getAttribute("data-key");
      var type = chip.getAttribute("data-type");
      var slot = chip.querySelector(".reading-field-value");
      chip.hidden = hiddenInForm(key);
      if (!slot || !slot.hasAttribute("data-empty")) { return; }  // filled in on signing
      var value = shownValue(key, type);
      slot.textContent = value || slot.getAttribute("data-empty");
      chip.classList.toggle("is-done", value !== "");
    });
    $$(".field-marker[data-key]", area).forEach(function (marker) {
      var slot = marker.querySelector(".marker-value");
      if (!slot) { return; }
      var value = marker.getAttribute("data-type") === "date_signed"
        ? "" : shownValue(marker.getAttribute("data-key"), marker.getAttribute("data-type"));
      slot.textContent = value;
      marker.classList.toggle("has-value", value !== "");
    });
  }

  // After the signing flow's own listeners (on the form) have applied its conditions.
  document.addEventListener("input", update);
  document.addEventListener("change", update);
  if (typeof MutationObserver === "function") {
    new MutationObserver(update).observe(form, {
      subtree: true, attributes: true, attributeFilter: ["class", "hidden"]
    });
  }
  update();
})();
