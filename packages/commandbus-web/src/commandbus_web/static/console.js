// commandbus console: the only script besides htmx (served from the package; CSP 'self').
(function () {
  "use strict";
  function picks() { return document.querySelectorAll("input.pick"); }
  function setAll(checked) { picks().forEach(function (box) { box.checked = checked; }); }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement)) { return; }
    if (target.id === "select-page" || target.id === "select-all") {
      setAll(target.checked);
      if (target.id === "select-all") {
        var page = document.getElementById("select-page");
        if (page) { page.checked = target.checked; }
      }
    } else if (target.classList.contains("pick") && !target.checked) {
      var all = document.getElementById("select-all");
      if (all) { all.checked = false; }
    }
  });
})();
