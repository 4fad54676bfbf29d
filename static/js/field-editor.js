// Template field editor: places the field boxes on the page images, and (on drafts) lets
// an author add fields by tapping a page, move and resize them with mouse, pen, touch or
// keyboard. Every change is posted through htmx.ajax, so the CSRF header from app.js and
// its error region apply; the server answers with a fresh #editor fragment.
// The DOM contract is templates/library/_editor.html. No inline scripts or styles (CSP).
(function () {
  "use strict";

  var TAP_SLOP = 8;          // px a finger may wander before a tap on a page becomes a scroll
  var TAP_MAX_MS = 600;      // a longer press on a page is not a tap
  var DRAG_SLOP_FINE = 2;    // px before a press on a box becomes a drag (mouse, pen)
  var DRAG_SLOP_COARSE = 5;  // px for fingers, which jitter more
  var MIN_SIZE = 8;          // pt, as the server's clamp
  var KEY_DELAY_MS = 400;    // debounce of keyboard moves before they are saved
  var DESKTOP = "(min-width: 1000px)";

  // Unsaved geometry by field id: {page, x, y, w, h} in display points. A rect stays here
  // until the server has answered for it, so a swap in the meantime does not undo it.
  var pending = {};
  var keyTimers = {};
  var queue = [];            // posts waiting for the one in flight
  var inFlight = false;
  var drag = null;           // the current press on a field box
  var tap = null;            // the current press on an empty spot of a page
  var refocusId = null;      // field box to focus again after the editor is swapped

  function editor() {
    return document.getElementById("editor");
  }

  function editable() {
    var root = editor();
    return !!root && root.getAttribute("data-editable") === "true" && typeof htmx !== "undefined";
  }

  function num(el, name) {
    var value = parseFloat(el.getAttribute("data-" + name));
    return isFinite(value) ? value : 0;
  }

  function round1(value) {
    return Math.round(value * 10) / 10;
  }

  function clamp(value, low, high) {
    return Math.min(Math.max(value, low), high);
  }

  function pageOf(box) {
    return box.closest("figure.page");
  }

  function pageSize(figure) {
    return { w: num(figure, "width") || 1, h: num(figure, "height") || 1 };
  }

  function boxById(id) {
    var root = editor();
    return root ? root.querySelector('.field-box[data-field-id="' + id + '"]') : null;
  }

  function storedRect(box) {
    return {
      page: parseInt(box.getAttribute("data-page"), 10) || 1,
      x: num(box, "x"), y: num(box, "y"), w: num(box, "w"), h: num(box, "h")
    };
  }

  function currentRect(box) {
    return pending[box.getAttribute("data-field-id")] || storedRect(box);
  }

  function saving() {
    return inFlight || queue.length > 0 || Object.keys(keyTimers).length > 0;
  }

  function hasUnsaved() {
    return saving() || Object.keys(pending).length > 0;
  }

  // ------------------------------------------------------------------ layout

  function place(box, rect) {
    var size = pageSize(pageOf(box));
    box.style.left = (rect.x / size.w) * 100 + "%";
    box.style.top = (rect.y / size.h) * 100 + "%";
    box.style.width = (rect.w / size.w) * 100 + "%";
    box.style.height = (rect.h / size.h) * 100 + "%";
  }

  // aria-busy (and the "Saving…" note next to the heading) while changes are on their way
  function markBusy() {
    var root = editor();
    if (!root) { return; }
    if (saving()) {
      root.setAttribute("aria-busy", "true");
    } else {
      root.removeAttribute("aria-busy");
    }
  }

  function layout() {
    var root = editor();
    if (!root) { return; }
    root.querySelectorAll("figure.page").forEach(function (figure) {
      var size = pageSize(figure);
      var placeholder = figure.querySelector(".page-placeholder");
      if (placeholder) { placeholder.style.aspectRatio = size.w + " / " + size.h; }
    });
    root.querySelectorAll(".field-box").forEach(function (box) {
      place(box, currentRect(box));
    });
    if (drag) {
      var box = boxById(drag.id);
      if (box) { box.classList.add("is-dragging"); }
    }
    markBusy();
  }

  // ------------------------------------------------------------------ saving

  // One post at a time, in order: htmx's own queue would drop all but the last.
  function send(url, values, done) {
    queue.push({ url: url, values: values, done: done });
    markBusy();
    pump();
  }

  function pump() {
    if (inFlight || queue.length === 0) { return; }
    var job = queue.shift();
    inFlight = true;
    var finish = function () {
      inFlight = false;
      if (job.done) { job.done(); }
      layout();  // a failed post leaves the old fragment: show where fields really are
      pump();
    };
    // The body is the source: always in the document, and never busy with the
    // editor's own polling while page images are prepared.
    htmx.ajax("POST", job.url, {
      source: document.body,
      target: "#editor",
      swap: "outerHTML",
      values: job.values
    }).then(finish, finish);
  }

  function savePlace(id) {
    var rect = pending[id];
    var box = boxById(id);
    if (!rect || !box) { delete pending[id]; markBusy(); return; }
    var prefix = box.getAttribute("data-prefix");
    var values = {};
    values[prefix + "-page"] = String(rect.page);
    values[prefix + "-x"] = String(round1(rect.x));
    values[prefix + "-y"] = String(round1(rect.y));
    values[prefix + "-w"] = String(round1(rect.w));
    values[prefix + "-h"] = String(round1(rect.h));
    send(box.getAttribute("data-place-url"), values, function () {
      if (pending[id] === rect) { delete pending[id]; }  // newer changes stay pending
    });
  }

  function addField(figure, clientX, clientY) {
    var root = editor();
    var surface = figure.querySelector("img, .page-placeholder");
    if (!root || !surface) { return; }
    var box = surface.getBoundingClientRect();
    var size = pageSize(figure);
    var palette = root.querySelector("select[data-palette]");
    var role = root.querySelector("#add-role");
    var x = ((clientX - box.left) / box.width) * size.w;
    var y = ((clientY - box.top) / box.height) * size.h;
    send(root.getAttribute("data-add-url"), {
      type: palette ? palette.value : "text",
      role: role ? role.value : "",
      page: figure.getAttribute("data-page"),
      x: String(round1(clamp(x, 0, size.w))),
      y: String(round1(clamp(y, 0, size.h)))
    });
  }

  // ------------------------------------------------------------------ selection

  function select(box, scroll) {
    var root = editor();
    if (!root) { return; }
    var id = box.getAttribute("data-field-id");
    root.querySelectorAll(".field-box.is-selected").forEach(function (other) {
      if (other !== box) { other.classList.remove("is-selected"); }
    });
    box.classList.add("is-selected");
    var details = document.getElementById("field-" + id);
    if (!details) { return; }
    details.open = true;
    if (scroll && window.matchMedia(DESKTOP).matches) {
      var panel = details.closest(".editor-panel");
      if (panel && panel.scrollHeight > panel.clientHeight) {
        // the panel scrolls on its own; its heading stays on top of it
        var heading = panel.querySelector("h3");
        var top = details.getBoundingClientRect().top - panel.getBoundingClientRect().top;
        panel.scrollTop += top - (heading ? heading.offsetHeight : 0) - 8;
      } else {
        details.scrollIntoView({ block: "nearest" });
      }
    }
  }

  // ------------------------------------------------------------------ pointer

  // The corner handle resizes. On a field barely bigger than the handle (a checkbox), the
  // part of the handle over the field moves it instead, so the field can still be dragged.
  function onHandle(box, target, event) {
    var handle = target.closest(".field-box-handle");
    if (!handle) { return false; }
    var outer = box.getBoundingClientRect();
    var knob = handle.getBoundingClientRect();
    var small = outer.width < knob.width * 3 && outer.height < knob.height * 3;
    var inside = event.clientX >= outer.left && event.clientX < outer.right &&
      event.clientY >= outer.top && event.clientY < outer.bottom;
    return !(small && inside);
  }

  function onPointerDown(event) {
    var target = event.target;
    if (!(target instanceof Element) || !event.isPrimary) { return; }
    if (event.pointerType === "mouse" && event.button !== 0) { return; }
    var box = target.closest("#editor .field-box");
    if (box) {
      if (event.pointerType !== "touch") { box.focus({ preventScroll: true }); }
      var figure = pageOf(box);
      var surface = figure && figure.querySelector("img, .page-placeholder");
      if (!surface) { return; }
      drag = {
        id: box.getAttribute("data-field-id"),
        pointer: event.pointerId,
        resize: onHandle(box, target, event),
        startX: event.clientX,
        startY: event.clientY,
        slop: event.pointerType === "touch" ? DRAG_SLOP_COARSE : DRAG_SLOP_FINE,
        scale: pageSize(figure).w / (surface.getBoundingClientRect().width || 1),
        size: pageSize(figure),
        from: currentRect(box),
        moved: false
      };
      if (editable()) {
        event.preventDefault();  // no text selection, no native drag, no emulated mouse
        try { box.setPointerCapture(event.pointerId); } catch (e) { /* detached */ }
      }
      return;
    }
    var page = target.closest("#editor figure.page");
    if (page && editable() && target.matches("img, .page-placeholder")) {
      tap = {
        pointer: event.pointerId,
        figure: page,
        x: event.clientX,
        y: event.clientY,
        at: Date.now()
      };
    }
  }

  function dragTo(event) {
    var dx = (event.clientX - drag.startX) * drag.scale;
    var dy = (event.clientY - drag.startY) * drag.scale;
    var from = drag.from;
    var size = drag.size;
    var rect = { page: from.page, x: from.x, y: from.y, w: from.w, h: from.h };
    if (drag.resize) {
      rect.w = clamp(from.w + dx, MIN_SIZE, size.w - from.x);
      rect.h = clamp(from.h + dy, MIN_SIZE, size.h - from.y);
    } else {
      rect.x = clamp(from.x + dx, 0, Math.max(0, size.w - from.w));
      rect.y = clamp(from.y + dy, 0, Math.max(0, size.h - from.h));
    }
    pending[drag.id] = rect;
    var box = boxById(drag.id);
    if (box) { place(box, rect); }
  }

  function onPointerMove(event) {
    if (tap && event.pointerId === tap.pointer) {
      if (Math.hypot(event.clientX - tap.x, event.clientY - tap.y) >= TAP_SLOP) { tap = null; }
    }
    if (!drag || event.pointerId !== drag.pointer || !editable()) { return; }
    if (!drag.moved) {
      if (Math.hypot(event.clientX - drag.startX, event.clientY - drag.startY) <= drag.slop) { return; }
      drag.moved = true;
      var box = boxById(drag.id);
      if (box) { box.classList.add("is-dragging"); }
    }
    event.preventDefault();
    dragTo(event);
  }

  function endDrag(cancelled) {
    var current = drag;
    drag = null;
    var box = boxById(current.id);
    if (box) { box.classList.remove("is-dragging"); }
    if (cancelled) {
      if (current.moved) { delete pending[current.id]; layout(); }
      return;
    }
    if (current.moved) {
      savePlace(current.id);
    } else if (box) {
      select(box, true);
    }
  }

  function onPointerUp(event) {
    if (drag && event.pointerId === drag.pointer) {
      if (drag.moved) { dragTo(event); }  // the release point is the final position
      endDrag(false);
      return;
    }
    if (tap && event.pointerId === tap.pointer) {
      var pressed = tap;
      tap = null;
      var still = Math.hypot(event.clientX - pressed.x, event.clientY - pressed.y) < TAP_SLOP;
      if (still && Date.now() - pressed.at <= TAP_MAX_MS && document.body.contains(pressed.figure)) {
        addField(pressed.figure, pressed.x, pressed.y);
      }
    }
  }

  function onPointerCancel(event) {
    if (tap && event.pointerId === tap.pointer) { tap = null; }
    if (drag && event.pointerId === drag.pointer) { endDrag(true); }
  }

  // ------------------------------------------------------------------ keyboard

  var ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

  function onKeyDown(event) {
    var target = event.target;
    if (!(target instanceof Element) || !target.matches("#editor .field-box")) { return; }
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(target, true);
      return;
    }
    var step = ARROWS[event.key];
    if (!step || !editable() || event.ctrlKey || event.metaKey) { return; }
    event.preventDefault();
    var id = target.getAttribute("data-field-id");
    var size = pageSize(pageOf(target));
    var from = currentRect(target);
    var by = event.shiftKey ? 10 : 1;
    var rect = { page: from.page, x: from.x, y: from.y, w: from.w, h: from.h };
    if (event.altKey) {
      rect.w = clamp(from.w + step[0] * by, MIN_SIZE, size.w - from.x);
      rect.h = clamp(from.h + step[1] * by, MIN_SIZE, size.h - from.y);
    } else {
      rect.x = clamp(from.x + step[0] * by, 0, Math.max(0, size.w - from.w));
      rect.y = clamp(from.y + step[1] * by, 0, Math.max(0, size.h - from.h));
    }
    pending[id] = rect;
    place(target, rect);
    clearTimeout(keyTimers[id]);
    keyTimers[id] = setTimeout(function () {
      delete keyTimers[id];
      savePlace(id);
    }, KEY_DELAY_MS);
    markBusy();
  }

  // ------------------------------------------------------------------ swaps

  function isEditorSwap(event) {
    var target = event.detail && event.detail.target;
    return !!target && target.id === "editor";
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!isEditorSwap(event)) { return; }
    var active = document.activeElement;
    var box = active instanceof Element ? active.closest(".field-box") : null;
    refocusId = box ? box.getAttribute("data-field-id") : null;
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    layout();
    if (isEditorSwap(event) && refocusId) {
      var box = boxById(refocusId);
      refocusId = null;
      if (box) { box.focus({ preventScroll: true }); }
    }
  });

  document.addEventListener("htmx:load", layout);

  // The panel's summary also selects its box on the page.
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open || !details.matches(".field-item")) { return; }
    var box = boxById(details.id.replace(/^field-/, ""));
    if (box) {
      editor().querySelectorAll(".field-box.is-selected").forEach(function (other) {
        if (other !== box) { other.classList.remove("is-selected"); }
      });
      box.classList.add("is-selected");
    }
  }, true);

  document.addEventListener("pointerdown", onPointerDown);
  document.addEventListener("pointermove", onPointerMove);
  document.addEventListener("pointerup", onPointerUp);
  document.addEventListener("pointercancel", onPointerCancel);
  document.addEventListener("keydown", onKeyDown);
  // A drag of a field box must not start the browser's own drag and drop.
  document.addEventListener("dragstart", function (event) {
    if (event.target instanceof Element && event.target.closest("#editor .field-box")) {
      event.preventDefault();
    }
  });

  window.addEventListener("beforeunload", function (event) {
    if (hasUnsaved()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", layout);
  } else {
    layout();
  }
})();
