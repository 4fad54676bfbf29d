// The send form: a merge field and the recipient detail it names (customer.name and the
// customer's name, customer.email and their email...) are typed once. Typing in one fills
// the other as long as the other has not been typed in itself; once both have been typed in,
// each keeps its own value (a representative may sign for the customer). Without this
// script the server fills whichever of the two is left blank.
(function () {
  "use strict";

  var inputs = document.querySelectorAll("input[data-mirror]");
  Array.prototype.forEach.call(inputs, function (input) {
    input.addEventListener("input", function () {
      input.setAttribute("data-typed", "yes");
      var partner = document.getElementById(input.getAttribute("data-mirror") || "");
      if (partner && (partner.value === "" || partner.getAttribute("data-typed") !== "yes")) {
        partner.value = input.value;
      }
    });
  });
})();

// The document language is asked only when the signers' languages differ (or one was
// chosen); without this script it is always shown.
(function () {
  "use strict";

  var field = document.getElementById("document-language");
  if (!field) {
    return;
  }
  var choice = document.getElementById("document_language");
  var selects = document.querySelectorAll("select[id^='r-'][id$='-locale']");
  function update() {
    var seen = {};
    var count = 0;
    Array.prototype.forEach.call(selects, function (select) {
      if (!seen[select.value]) {
        seen[select.value] = true;
        count += 1;
      }
    });
    field.hidden = count < 2 && choice.value === "";
  }
  Array.prototype.forEach.call(selects, function (select) {
    select.addEventListener("change", update);
  });
  update();
})();
