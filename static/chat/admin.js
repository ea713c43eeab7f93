// Threadline admin: a live character count, and the knowledge list refreshing itself while
// files are being read. Without JavaScript the page still works (reload to see new states).
(function () {
  "use strict";

  // As the server writes sizes (chat.uploads.human_size): 50 MB, 50.4 MB, 600 MB.
  function humanSize(bytes) {
    const units = [["GB", 1024 ** 3], ["MB", 1024 ** 2], ["KB", 1024]];
    for (const [unit, scale] of units) {
      if (bytes >= scale) {
        const value = bytes / scale;
        return (value >= 100 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, "")) + " " + unit;
      }
    }
    return bytes + " bytes";
  }

  function updateCount(box) {
    const label = document.querySelector('[data-count-for="' + box.name + '"]');
    if (!label) return;
    const limit = Number(box.dataset.limit);
    label.textContent = box.value.length.toLocaleString("en") + " / " + limit.toLocaleString("en") + " characters";
    label.classList.toggle("errornote", box.value.length > limit);
  }

  document.addEventListener("input", function (event) {
    if (event.target.dataset && event.target.dataset.limit) updateCount(event.target);
  });

  // Knowledge files over the limit are refused here, before a long upload the server would skip.
  document.addEventListener("change", function (event) {
    const input = event.target;
    if (!input.dataset || !input.dataset.maxBytes) return;
    const max = Number(input.dataset.maxBytes);
    const big = Array.from(input.files).filter(function (file) { return file.size > max; });
    input.setCustomValidity(big.map(function (file) {
      return file.name + " is " + humanSize(file.size) + ", over the " + input.dataset.maxText + " limit for one file.";
    }).join(" "));
    input.reportValidity();
  });

  // A panel with data-poll (server-rendered while a file is processing) asks for itself again.
  function poll() {
    const panel = document.querySelector("[data-poll]");
    if (!panel) return;
    fetch(panel.dataset.poll, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null) panel.outerHTML = html;
      })
      .finally(function () { setTimeout(poll, 2000); });
  }

  document.addEventListener("DOMContentLoaded", function () { setTimeout(poll, 2000); });
})();
