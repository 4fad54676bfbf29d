// Signer's document page (templates/signing/document.html): drawn signatures, adopting a
// signature, field markers on the page images, a "next field" guide for small screens,
// conditional fields and double-tap protection. The page works without this file (a typed signature); the server
// checks everything again. No inline scripts or styles (CSP): boxes are placed through the
// CSSOM in percentages of their page, as static/js/field-editor.js does.
(function () {
  "use strict";

  var PEN = "#0b1f4d";        // dark blue ink
  var REDUCED = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)");

  var form = document.getElementById("sign-form");
  var pad = null;             // SignaturePad, once the drawing area is set up
  var padWidth = 0;           // CSS width the strokes were drawn at
  var restored = "";          // a drawing sent back by the server (a 422), until cleared
  var adopted = false;        // the signer pressed "Adopt this signature" (a typed name is
                              // only a suggestion until then: nothing looks signed)

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function $$(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  function num(el, name) {
    var value = parseFloat(el.getAttribute("data-" + name));
    return isFinite(value) ? value : 0;
  }

  function clean(text) {
    return String(text || "").replace(/\s+/g, " ").trim();
  }

  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, function (all, key) {
      return key in values ? values[key] : all;
    });
  }

  function behavior() {
    return REDUCED && REDUCED.matches ? "auto" : "smooth";
  }

  // ------------------------------------------------------------------ field values

  // A field's current value as the server reads it: checkbox "true" or "", the chosen
  // radio, else the text with its spaces collapsed. By id, so read-only (prefilled)
  // inputs without a name count too.
  function valueOf(key) {
    var el = document.getElementById("f-" + key);
    if (!el) { return ""; }
    if (el.tagName === "FIELDSET") {
      var chosen = $("input:checked", el);
      return chosen ? chosen.value : "";
    }
    if (el.type === "checkbox") { return el.checked ? "true" : ""; }
    if (el.type === "file") { return el.files && el.files.length ? el.files[0].name : ""; }
    return clean(el.value);
  }

  function adoption() {
    var chosen = form && $('input[name="adoption"]:checked', form);
    return chosen ? chosen.value : "typed";
  }

  // Whether there is a signature to adopt: a drawing, or a name of two characters or more.
  function adoptable() {
    if (adoption() === "drawn") {
      return !!pad && (!pad.isEmpty() || !!restored);
    }
    var typed = document.getElementById("typed_name");
    return !!typed && clean(typed.value).length >= 2;
  }

  function signed() {
    return adopted && adoptable();
  }

  // ------------------------------------------------------------------ conditional fields

  function shown(box) {
    var current = valueOf(box.getAttribute("data-show-when"));
    var list = box.getAttribute("data-show-in");
    if (list !== null) {
      try { return JSON.parse(list).map(String).indexOf(current) >= 0; } catch (e) { return true; }
    }
    return current === (box.getAttribute("data-show-value") || "");
  }

  function applyConditions() {
    // twice, so that a field shown by another conditional field settles
    for (var round = 0; round < 2; round++) {
      $$(".field[data-show-when]").forEach(function (box) {
        box.hidden = !shown(box);
      });
    }
  }

  function fieldBox(key) {
    return form ? $('.field[data-field="' + key + '"]', form) : null;
  }

  function visible(key) {
    var box = fieldBox(key);
    return !box || !box.hidden;
  }

  // ------------------------------------------------------------------ markers on the pages

  function layoutPages() {
    var pages = $(".doc-pages");
    if (pages) { pages.classList.add("is-laid-out"); }  // markers show once placed
    $$(".doc-pages figure.page").forEach(function (figure) {
      var w = num(figure, "width") || 1;
      var h = num(figure, "height") || 1;
      var placeholder = $(".page-placeholder", figure);
      if (placeholder) { placeholder.style.aspectRatio = w + " / " + h; }
      $$(".field-marker", figure).forEach(function (marker) {
        marker.style.left = (num(marker, "x") / w) * 100 + "%";
        marker.style.top = (num(marker, "y") / h) * 100 + "%";
        marker.style.width = (num(marker, "w") / w) * 100 + "%";
        marker.style.height = (num(marker, "h") / h) * 100 + "%";
      });
    });
  }

  function isSignature(type) {
    return type === "signature" || type === "initials";
  }

  function filled(key, type) {
    if (isSignature(type)) { return signed(); }
    return valueOf(key) !== "";
  }

  // ------------------------------------------------------------------ the guide

  var guide = document.getElementById("guide");
  var guideButton = guide && $(".guide-next", guide);
  var guideStatus = guide && $(".guide-status", guide);
  var cursor = -1;            // the step last taken to
  var showing = -1;           // the step whose marker is on screen, waiting for a second tap
  var given = null;           // steps already complete when the page opened (prefilled values):
                              // not the signer's to do, so not counted while they stay complete

  // Where a field shows in the document: a box on a page image, or a field in the reading
  // view's text (templates/signing/_reading.html).
  var PLACES = ".field-marker, .reading-field[data-key]";

  function labelOf(key, marker) {
    var label = marker && $(".reading-field-label, .visually-hidden", marker);
    return clean(label ? label.textContent : key);
  }

  // Required things still to do, in reading order: fields on the pages (page, then top,
  // then left), required fields without a box, then the agree box.
  function steps() {
    var list = [];
    var seen = {};
    $$(PLACES).forEach(function (marker, index) {
      var key = marker.getAttribute("data-key");
      var type = marker.getAttribute("data-type");
      var required = marker.classList.contains("reading-field")
        ? !marker.classList.contains("is-optional") && !marker.classList.contains("is-auto")
        : marker.getAttribute("data-required") === "true";
      if (seen[key] || type === "date_signed" || !required) {
        return;
      }
      var input = document.getElementById("f-" + key);
      if (input && input.readOnly) { return; }
      if (!isSignature(type) && !input) { return; }
      if (!visible(key)) { return; }
      seen[key] = true;
      var figure = marker.closest("figure.page");
      list.push({
        key: key, type: type, marker: marker, label: labelOf(key, marker),
        // on a page: page, top, left; in the reading view: the order of the text
        order: figure ? [num(figure, "page"), num(marker, "y"), num(marker, "x")] : [0, index, 0]
      });
    });
    list.sort(function (a, b) {
      for (var i = 0; i < 3; i++) {
        if (a.order[i] !== b.order[i]) { return a.order[i] - b.order[i]; }
      }
      return 0;
    });
    if (form) {
      $$('.field[data-field][data-required="true"]', form).forEach(function (box) {
        var key = box.getAttribute("data-field");
        var input = document.getElementById("f-" + key);
        if (seen[key] || box.hidden || !input || input.readOnly) { return; }
        seen[key] = true;
        list.push({ key: key, type: "", marker: null, label: key });
      });
    }
    var agree = document.getElementById("agree");
    if (agree) { list.push({ key: "agree", type: "agree", marker: null, label: "" }); }
    return list;
  }

  function done(step) {
    if (step.type === "agree") { return document.getElementById("agree").checked; }
    return filled(step.key, step.type);
  }

  function upcoming(list) {
    var i;
    for (i = cursor + 1; i < list.length; i++) { if (!done(list[i])) { return i; } }
    for (i = 0; i < list.length && i <= cursor; i++) { if (!done(list[i])) { return i; } }
    return -1;
  }

  function updateMarkers() {
    $$(".field-marker").forEach(function (marker) {
      var key = marker.getAttribute("data-key");
      var type = marker.getAttribute("data-type");
      marker.hidden = !visible(key);
      marker.classList.toggle("is-auto", type === "date_signed");
      marker.classList.toggle("is-optional", marker.getAttribute("data-required") !== "true");
      marker.classList.toggle("is-done", type !== "date_signed" && filled(key, type));
    });
  }

  // The steps the count is about: all but those given complete (while they stay so).
  function counted(list) {
    return list.filter(function (step) { return !(given && given[step.key] && done(step)); });
  }

  function updateGuide() {
    if (!guide || !guideButton) { return; }
    var list = steps();
    if (given === null) {
      given = {};
      list.forEach(function (step) { if (done(step)) { given[step.key] = true; } });
    }
    var next = upcoming(list);
    var mine = counted(list);
    var finished = mine.filter(done).length;
    var meter = $(".guide-meter", guide);
    if (meter) {
      meter.style.width = (mine.length ? (finished / mine.length) * 100 : 100) + "%";
    }
    if (guideStatus) {
      var progress = fill(guideStatus.getAttribute("data-progress"), { done: finished, m: mine.length });
      if (guideStatus.textContent !== progress) { guideStatus.textContent = progress; }
    }
    $$(".is-current").forEach(function (m) {
      if (showing < 0 || !list[showing] || list[showing].marker !== m) { m.classList.remove("is-current"); }
    });
    if (next < 0) {
      showing = -1;
      guideButton.textContent = guide.getAttribute("data-finish");
      guide.classList.add("is-ready");
      return;
    }
    guide.classList.remove("is-ready");
    if (showing === next && list[next].marker) {
      guideButton.textContent = fill(guide.getAttribute("data-fill"), { label: list[next].label });
    } else {
      showing = -1;
      // "n of m": the next of the signer's own steps, counted as they finish them
      guideButton.textContent = fill(guide.getAttribute("data-next"), {
        n: Math.min(finished + 1, mine.length), m: mine.length
      });
    }
  }

  function update() {
    applyConditions();
    updateMarkers();
    updateGuide();
  }

  // Scroll ``box`` into the middle of the screen and focus ``target`` without a second jump.
  function bring(box, target) {
    if (!box) { return; }
    box.scrollIntoView({ behavior: behavior(), block: "center" });
    if (target) {
      if (!target.matches("input, select, textarea, button, a[href]") && !target.hasAttribute("tabindex")) {
        target.setAttribute("tabindex", "-1");
      }
      target.focus({ preventScroll: true });
    }
  }

  // The form control where a step is filled in.
  function goToInput(step) {
    if (step.type === "agree") {
      var agree = document.getElementById("agree");
      bring(agree.closest(".field"), agree);
    } else if (isSignature(step.type)) {
      var adopt = $(".adopt");
      var control = adoption() === "drawn"
        ? $('input[name="adoption"][value="drawn"]', adopt)
        : document.getElementById("typed_name");
      if (adoption() !== "drawn" && adoptable() && adoptButton && !adopted) {
        control = adoptButton;  // the name is there: what is left is to adopt it
      }
      bring(adopt, control);
    } else {
      var input = document.getElementById("f-" + step.key);
      if (input && input.tagName === "FIELDSET") {
        input = $("input:checked", input) || $("input", input);
      }
      bring(fieldBox(step.key) || input, input);
    }
  }

  function next() {
    var list = steps();
    var index = upcoming(list);
    if (index < 0) {
      var button = form && $("button[type=submit]", form);
      bring(button, button);
      return;
    }
    var step = list[index];
    if (step.marker && showing !== index) {
      // first the place on the page, then (next tap) the input
      showing = index;
      step.marker.classList.add("is-current");
      bring(step.marker, null);
    } else {
      showing = -1;
      cursor = index;
      goToInput(step);
    }
    updateGuide();
  }

  function setUpGuide() {
    if (!guide || !form || $("#document").getAttribute("data-guided") !== "true") { return; }
    guide.hidden = false;
    document.documentElement.classList.add("has-guide");
    guideButton.addEventListener("click", next);
  }

  // A tap on a box on the page goes to where it is filled in.
  document.addEventListener("click", function (event) {
    var marker = event.target instanceof Element && event.target.closest(PLACES);
    if (!marker || !form) { return; }
    var key = marker.getAttribute("data-key");
    var type = marker.getAttribute("data-type");
    if (type === "date_signed") { return; }  // the link goes to the signing section
    event.preventDefault();
    var list = steps();
    for (var i = 0; i < list.length; i++) {
      if (list[i].key === key) { cursor = i; }
    }
    showing = -1;
    goToInput({ key: key, type: type });
    updateGuide();
  });

  // ------------------------------------------------------------------ drawn signature

  function setUpPad() {
    var canvas = document.getElementById("signature-pad");
    var choice = $(".draw-choice");
    if (!canvas || !choice || typeof window.SignaturePad !== "function" || !canvas.getContext) {
      return;
    }
    var drawing = document.getElementById("drawing");
    restored = drawing && drawing.value.indexOf("data:image/png;base64,") === 0 ? drawing.value : "";
    pad = new window.SignaturePad(canvas, {
      penColor: PEN, minWidth: 0.8, maxWidth: 2.6, velocityFilterWeight: 0.6
    });
    pad.addEventListener("endStroke", function () { unadopt(); update(); });

    function fit() {
      var width = canvas.offsetWidth;
      var height = canvas.offsetHeight;
      if (!width || !height) { return; }  // hidden
      var ratio = Math.max(window.devicePixelRatio || 1, 1);
      var w = Math.round(width * ratio);
      var h = Math.round(height * ratio);
      if (canvas.width === w && canvas.height === h) { return; }
      // keep the strokes, scaled to the new size (the box keeps its 3:1 shape)
      var k = padWidth ? width / padWidth : 1;
      var data = pad.toData().map(function (group) {
        var copy = {};
        Object.keys(group).forEach(function (name) { copy[name] = group[name]; });
        copy.points = group.points.map(function (p) {
          return { x: p.x * k, y: p.y * k, pressure: p.pressure, time: p.time };
        });
        return copy;
      });
      canvas.width = w;
      canvas.height = h;
      canvas.getContext("2d").scale(ratio, ratio);
      pad.clear();
      if (restored) {
        pad.fromDataURL(restored, { ratio: ratio, width: width, height: height }).catch(function () {
          restored = "";
          update();
        });
      }
      if (data.length) { pad.fromData(data, { clear: false }); }
      padWidth = width;
    }

    if (typeof ResizeObserver === "function") {
      new ResizeObserver(function () { fit(); }).observe(canvas);
    }
    window.addEventListener("resize", fit);

    var typed = $(".typed-signature");
    var drawn = $(".drawn-signature");
    function showChoice() {
      var draw = adoption() === "drawn";
      if (typed) { typed.hidden = draw; }
      if (drawn) { drawn.hidden = !draw; }
      if (draw) { fit(); }
    }
    $$('input[name="adoption"]').forEach(function (radio) {
      radio.addEventListener("change", function () { unadopt(); });
    });
    choice.hidden = false;
    $$('input[name="adoption"]').forEach(function (radio) {
      radio.addEventListener("change", showChoice);
    });
    showChoice();

    var clear = $("[data-clear-signature]");
    if (clear) {
      clear.addEventListener("click", function () {
        restored = "";
        pad.clear();
        unadopt();
        update();
      });
    }
  }

  // The drawing goes into the form as a PNG; an empty pad sends nothing, so the server
  // asks for a signature in its own words.
  function fillDrawing() {
    var drawing = document.getElementById("drawing");
    if (!drawing) { return; }
    if (adoption() !== "drawn" || !pad) {
      drawing.value = "";
    } else if (!pad.isEmpty()) {
      drawing.value = pad.toDataURL("image/png");
    } else {
      drawing.value = restored;
    }
  }

  // ------------------------------------------------------------------ adopting the signature

  var adoptButton = $("[data-adopt]");
  var adoptStatus = document.getElementById("adopt-status");

  function say(key) {
    if (adoptStatus) { adoptStatus.textContent = key ? adoptStatus.getAttribute("data-" + key) : ""; }
  }

  function showAdopted() {
    if (!adoptButton) { return; }
    if (!adoptButton.hasAttribute("data-label")) {
      adoptButton.setAttribute("data-label", adoptButton.textContent);
    }
    adoptButton.setAttribute("aria-pressed", adopted ? "true" : "false");
    adoptButton.textContent = adopted
      ? adoptButton.getAttribute("data-adopted-label")
      : adoptButton.getAttribute("data-label");
    var section = $(".adopt");
    if (section) {
      section.classList.toggle("is-adopted", adopted);
      // static/js/reader.js shows the signature in the document once this says so
      section.setAttribute("data-adopted", adopted ? "true" : "false");
    }
  }

  // The signature changed (another name, a stroke, cleared, the other way of signing):
  // it is to adopt again.
  function unadopt() {
    if (!adopted) { return; }
    adopted = false;
    say("changed");
    showAdopted();
  }

  function setUpAdopt() {
    var section = $(".adopt");
    if (!section || !adoptButton) { return; }
    adoptButton.closest(".adopt-action").hidden = false;
    // sent back with other problems: it was adopted when it was sent
    adopted = section.getAttribute("data-adopted") === "true" && adoptable();
    showAdopted();
    adoptButton.addEventListener("click", function () {
      if (adopted) {
        adopted = false;
        say("");
      } else if (adoptable()) {
        adopted = true;
        say("adopted");
      } else {
        say(adoption() === "drawn" ? "drawn-first" : "typed-first");
      }
      showAdopted();
      update();
    });
    var typed = document.getElementById("typed_name");
    if (typed) { typed.addEventListener("input", unadopt); }
  }

  // ------------------------------------------------------------------ one submit only

  document.addEventListener("submit", function (event) {
    var target = event.target;
    if (target === form) { fillDrawing(); }
    var once = $("button[data-once]", target);
    if (!once) { return; }
    if (target.getAttribute("data-submitted") === "true") {
      event.preventDefault();
      return;
    }
    target.setAttribute("data-submitted", "true");
    // after the browser has taken the form's values
    window.setTimeout(function () {
      once.setAttribute("data-label", once.textContent);
      once.textContent = once.getAttribute("data-once") || "Signing…";
      once.disabled = true;
      once.setAttribute("aria-busy", "true");
    }, 0);
  });

  // Back to this page from the browser's cache: the form may be sent again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    $$("form[data-submitted]").forEach(function (f) {
      f.removeAttribute("data-submitted");
      var once = $("button[data-once]", f);
      if (once && once.hasAttribute("data-label")) {
        once.textContent = once.getAttribute("data-label");
        once.disabled = false;
        once.removeAttribute("aria-busy");
      }
    });
  });

  // ------------------------------------------------------------------ start

  layoutPages();
  setUpPad();
  setUpAdopt();
  setUpGuide();
  if (form) {
    form.addEventListener("input", update);
    form.addEventListener("change", update);
  }
  update();
})();
