// crashfleet web UI: small progressive enhancements; every page works without this file.
// No inline script anywhere (the Content-Security-Policy forbids it), no eval, no innerHTML.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // The kernel log: one button expands or collapses every folded run of lines.
  var log = document.querySelector("#log .log");
  if (log && log.querySelector("details")) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "toggle";
    button.textContent = "expand whole log";
    button.addEventListener("click", function () {
      var all = log.querySelectorAll("details");
      var open = button.dataset.open !== "1";
      all.forEach(function (d) { d.open = open; });
      button.dataset.open = open ? "1" : "0";
      button.textContent = open ? "collapse log" : "expand whole log";
    });
    log.parentNode.insertBefore(button, log);
  }
  // Triage: choosing "fixed" focuses the kernel field.
  var form = document.querySelector("form.triage-form");
  if (form) {
    form.addEventListener("change", function (ev) {
      if (ev.target.name === "state" && ev.target.value === "fixed") {
        form.querySelector("input[name=fixed_in]").focus();
      }
    });
  }
});
