// Small enhancements of the console's pages; every action also works without them.
(function () {
  "use strict";

  // Review page: 1..9 choose a candidate, s = same person, d = not the same person, n = skip.
  function reviewKeys() {
    var actions = document.getElementById("review-actions");
    if (!actions) return;
    var candidates = Array.prototype.slice.call(document.querySelectorAll("section.candidate"));
    var chosen = 0;
    function choose(i) {
      if (i < 0 || i >= candidates.length) return;
      candidates[chosen].classList.remove("chosen");
      chosen = i;
      candidates[chosen].classList.add("chosen");
      candidates[chosen].scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      var target = event.target;
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
      var button = null;
      if (/^[1-9]$/.test(event.key)) { choose(Number(event.key) - 1); event.preventDefault(); return; }
      if (event.key === "s" && candidates.length) button = candidates[chosen].querySelector("button.same");
      if (event.key === "d") button = actions.querySelector("button.different");
      if (event.key === "n") button = actions.querySelector("button.skip");
      if (button) { event.preventDefault(); button.click(); }
    });
  }

  // Long work (training): poll its progress and update the bar without reloading.
  function pollProgress() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-progress-url]"), function (row) {
      var bar = row.querySelector("progress");
      var status = row.querySelector(".status");
      var message = row.querySelector(".message");
      function tick() {
        fetch(row.getAttribute("data-progress-url"), { credentials: "same-origin" })
          .then(function (response) { return response.json(); })
          .then(function (run) {
            bar.value = run.progress;
            status.textContent = run.status;
            message.textContent = run.message;
            if (run.status === "queued" || run.status === "running") setTimeout(tick, 1000);
            else row.removeAttribute("data-progress-url");
          })
          .catch(function () { setTimeout(tick, 3000); });
      }
      tick();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { reviewKeys(); pollProgress(); });
})();
