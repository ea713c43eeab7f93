// Threadline chat: the little the page needs beyond htmx. Everything here is a convenience; the
// server checks all of it again.
(function () {
  "use strict";

  function composerOf(element) {
    return element && element.closest ? element.closest("#composer") : null;
  }

  function humanSize(bytes) {
    const units = [["GB", 1024 ** 3], ["MB", 1024 ** 2], ["KB", 1024]];
    for (const [unit, scale] of units) {
      if (bytes >= scale) {
        const value = bytes / scale;
        return (value >= 10 || Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1)) + " " + unit;
      }
    }
    return bytes + " bytes";
  }

  // What is wrong with the message box's content, as sentences; [] when it can be sent.
  function problems(form) {
    const found = [];
    const text = form.querySelector("#message").value;
    const maxChars = Number(form.dataset.maxChars);
    if (!text.trim()) {
      found.push("Write a message first.");
    } else if (text.length > maxChars) {
      found.push(
        "Your message is " + text.length.toLocaleString("en") + " characters long; the limit is " +
        maxChars.toLocaleString("en") + ". Shorten it, or put the text in a file and attach that."
      );
    }
    const input = form.querySelector("#files");
    const files = input ? Array.from(input.files) : [];
    const maxFiles = Number(form.dataset.maxFiles);
    const maxBytes = Number(form.dataset.maxBytes);
    const accepted = form.dataset.accept.split(",");
    if (files.length > maxFiles) {
      found.push("Attach at most " + maxFiles + " files at once.");
    }
    for (const file of files) {
      const dot = file.name.lastIndexOf(".");
      const suffix = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
      if (!accepted.includes(suffix)) {
        found.push(file.name + ": only PDF, text, Markdown, HTML, JSON or Word (.docx) files can be attached.");
      } else if (file.size > maxBytes) {
        found.push(file.name + " is " + humanSize(file.size) + ", larger than " + humanSize(maxBytes) + ", the limit for one file.");
      }
    }
    return found;
  }

  function showProblems(form, found) {
    const box = form.querySelector(".client-errors");
    box.replaceChildren(...found.map((text) => {
      const p = document.createElement("p");
      p.textContent = text;
      return p;
    }));
    box.hidden = found.length === 0;
  }

  function listFiles(form) {
    const list = form.querySelector(".chosen-files");
    const files = Array.from(form.querySelector("#files").files);
    list.replaceChildren(...files.map((file) => {
      const item = document.createElement("li");
      item.textContent = file.name + " (" + humanSize(file.size) + ")";
      return item;
    }));
    list.hidden = files.length === 0;
  }

  // Enter sends, Shift+Enter (or an input method composing text) makes a new line.
  document.addEventListener("keydown", (event) => {
    const form = composerOf(event.target);
    if (!form || event.target.id !== "message") return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      form.requestSubmit(form.querySelector(".send"));
    }
  });

  document.addEventListener("change", (event) => {
    const form = composerOf(event.target);
    if (form && event.target.id === "files") {
      listFiles(form);
      const found = problems(form).filter((text) => text !== "Write a message first.");
      showProblems(form, found);
    }
  });

  document.addEventListener("input", (event) => {
    const form = composerOf(event.target);
    if (form && event.target.id === "message") {
      const counter = form.querySelector(".counter");
      const max = Number(form.dataset.maxChars);
      const length = event.target.value.length;
      counter.classList.toggle("over", length > max);
      if (length > max * 0.8) {
        counter.textContent = length.toLocaleString("en") + " of " + max.toLocaleString("en") + " characters.";
      }
    }
  });

  // Refuse to upload what the server would refuse anyway (a 600 MB file, say).
  document.addEventListener("htmx:beforeRequest", (event) => {
    const form = event.detail.elt;
    if (!form || form.id !== "composer") return;
    const found = problems(form);
    showProblems(form, found);
    if (found.length) {
      event.preventDefault();
      form.querySelector("#message").focus();
    }
  });

  document.addEventListener("htmx:xhr:progress", (event) => {
    const form = event.detail.elt;
    if (!form || form.id !== "composer" || !event.detail.lengthComputable) return;
    if (!form.querySelector("#files").files.length) return;
    const list = form.querySelector(".chosen-files");
    const percent = Math.round((100 * event.detail.loaded) / event.detail.total);
    list.dataset.progress = percent < 100 ? "Uploading… " + percent + "%" : "Reading the files…";
  });

  // When the request fails outright (server down), say so: nothing else would.
  document.addEventListener("htmx:sendError", (event) => {
    const form = event.detail.elt;
    if (form && form.id === "composer") {
      showProblems(form, ["The server cannot be reached. Your message was not sent; try again in a moment."]);
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const form = event.detail.elt;
    if (form && form.id === "composer") {
      showProblems(form, ["Something went wrong on the server (" + event.detail.xhr.status + "). Your message was not sent."]);
    }
  });

  // A call waiting on the person says how long the assistant still waits (the server decides:
  // after that, the run expires and the page says so).
  function minutes(seconds) {
    const m = Math.floor(seconds / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return m + ":" + s;
  }
  function countDown() {
    for (const line of document.querySelectorAll(".expiry[data-expires]")) {
      const left = Math.round((Date.parse(line.dataset.expires) - Date.now()) / 1000);
      if (left > 0) {
        line.textContent = "Time left to answer: " + minutes(left) + ".";
      } else {
        line.textContent = "Time is up: the assistant stopped waiting.";
        line.classList.add("over");
        line.closest(".tool-call").querySelectorAll("button").forEach((button) => { button.disabled = true; });
      }
    }
  }
  setInterval(countDown, 1000);
  document.addEventListener("htmx:afterSettle", countDown);
  document.addEventListener("htmx:sseMessage", countDown);

  // Keep the newest message in view while an answer streams, unless the reader scrolled up.
  let stick = true;
  function scroller() {
    return document.getElementById("scroll");
  }
  document.addEventListener("scroll", (event) => {
    const box = scroller();
    if (event.target === box) {
      stick = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    }
  }, true);
  function follow() {
    const box = scroller();
    if (box && stick) box.scrollTop = box.scrollHeight;
  }
  document.addEventListener("DOMContentLoaded", () => {
    follow();
    const messages = document.getElementById("messages");
    if (messages) new MutationObserver(follow).observe(messages, { childList: true, subtree: true, characterData: true });
    const box = document.getElementById("message");
    if (box && !box.value) box.focus();
  });
})();
