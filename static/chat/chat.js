// Threadline chat: the little the page needs beyond htmx. Everything here is a convenience; the
// server checks all of it again. No inline script anywhere: this file is the page's behaviour.
(function () {
  "use strict";

  function composerOf(element) {
    return element && element.closest ? element.closest("#composer") : null;
  }

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
        found.push(file.name + " is " + humanSize(file.size) + ", over the " + humanSize(maxBytes) + " limit for one file.");
      }
    }
    return found;
  }

  // One box says what is wrong: new findings replace whatever it said before (the server's too).
  function showProblems(form, found) {
    const box = form.querySelector(".errors");
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

  // The message box grows with its text, up to the limit the stylesheet sets. Where CSS can
  // (field-sizing), it does: a height set here is a style attribute, which htmx copies onto the
  // box it swaps in, and the page's Content-Security-Policy refuses style attributes.
  const sizesItself = window.CSS && CSS.supports("field-sizing", "content");
  function fit(box) {
    if (sizesItself) return;
    box.style.height = "auto";
    box.style.height = box.scrollHeight + 2 + "px";
  }

  // Enter sends, Shift+Enter (or an input method composing text) makes a new line. On touch
  // screens Enter is the keyboard's new line, and the Send button sends.
  const touch = window.matchMedia("(pointer: coarse)");
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      closeDialogs(event);
      return;
    }
    const form = composerOf(event.target);
    if (!form || event.target.id !== "message" || touch.matches) return;
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
      fit(event.target);
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

  // After sending, the cursor is back in the (new) message box, ready for the next message.
  let refocus = false;
  document.addEventListener("htmx:beforeSwap", (event) => {
    refocus = Boolean(event.detail.requestConfig && composerOf(event.detail.requestConfig.elt));
  });
  document.addEventListener("htmx:afterSettle", () => {
    if (!refocus) return;
    refocus = false;
    const box = document.getElementById("message");
    if (box) box.focus({ preventScroll: true });
  });
  // A dialog whose request failed steps aside, so the problem it caused can be read.
  document.addEventListener("htmx:afterRequest", (event) => {
    const dialog = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("[popover]");
    if (dialog && dialog.matches(":popover-open")) dialog.hidePopover();
  });

  // --- Following the answer ------------------------------------------------------------------
  // The newest text stays in view while an answer grows, unless the reader scrolled up; then
  // "Jump to latest" appears. Watching the whole body keeps this working whatever htmx swaps
  // (a new chat replaces the page's body in place).
  let stick = true;
  let lastTop = 0;
  function scroller() {
    return document.getElementById("scroll");
  }
  function atBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }
  function toBottom(box) {
    box.scrollTop = box.scrollHeight;
  }
  function updateJump() {
    const box = scroller();
    const jump = document.querySelector(".jump");
    if (!box || !jump) return;
    jump.hidden = stick || atBottom(box);
  }
  document.addEventListener("scroll", (event) => {
    const box = scroller();
    if (event.target !== box) return;
    // Only the reader lets go: by scrolling up, with a wheel, a finger, a key or the scroll
    // bar. Layout changes (the message box growing, an answer settling) move it too, not them.
    if (atBottom(box)) stick = true;
    else if (box.scrollTop < lastTop && Date.now() - reaching < 1000) stick = false;
    lastTop = box.scrollTop;
    updateJump();
  }, true);
  let reaching = 0;
  function reach(event) {
    if (event.target.closest && event.target.closest("#scroll")) reaching = Date.now();
  }
  for (const name of ["wheel", "touchmove", "pointerdown"]) {
    document.addEventListener(name, reach, { capture: true, passive: true });
  }
  document.addEventListener("keydown", (event) => {
    if (["ArrowUp", "PageUp", "Home", " "].includes(event.key)) reach(event);
  }, true);
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".jump")) return;
    const box = scroller();
    stick = true;
    if (box) toBottom(box);
    updateJump();
  });
  // Sending is a wish to see the answer: follow it again.
  document.addEventListener("submit", (event) => {
    if (composerOf(event.target)) stick = true;
  }, true);
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (composerOf(event.detail.elt)) stick = true;
  });

  let pending = false;
  function changed() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const box = scroller();
      if (box && stick) toBottom(box);
      updateJump();
      addCodeButtons();
      syncTitle();
      announce(false);
    });
  }

  // --- Copying ----------------------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  }
  function addCodeButtons() {
    for (const block of document.querySelectorAll(".message .md pre:not(.math-source):not([data-copy-ready])")) {
      block.dataset.copyReady = "";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy code";
      block.prepend(button);
    }
  }
  document.addEventListener("click", (event) => {
    const message = event.target.closest("button.copy[data-copy]");
    const code = event.target.closest("button.copy-code");
    if (!message && !code) return;
    const text = message ? message.dataset.copy : code.parentElement.querySelector("code").textContent;
    copyText(text).then(() => say(message ? "Message copied." : "Code copied."));
  });

  // --- Dialogs and the drawer ---------------------------------------------------------------------
  function setDrawer(open) {
    const app = document.getElementById("app");
    const toggle = document.querySelector(".threads-toggle");
    if (!app || !toggle) return;
    app.classList.toggle("drawer-open", open);
    toggle.setAttribute("aria-expanded", String(open));
    app.querySelector(".backdrop").hidden = !open;
    if (open) {
      const search = app.querySelector(".thread-search input");
      if (search) search.focus();
    } else {
      toggle.focus();
    }
  }
  document.addEventListener("click", (event) => {
    if (event.target.closest(".threads-toggle")) {
      setDrawer(!document.getElementById("app").classList.contains("drawer-open"));
    } else if (event.target.closest(".backdrop")) {
      setDrawer(false);
    }
  });
  // Esc closes what is open: the drawer, the rename box (popovers close by themselves).
  function closeDialogs(event) {
    const app = document.getElementById("app");
    if (app && app.classList.contains("drawer-open")) {
      setDrawer(false);
      event.preventDefault();
      return;
    }
    for (const details of document.querySelectorAll("details.rename[open]")) {
      details.open = false;
      details.querySelector("summary").focus();
      event.preventDefault();
    }
  }

  // --- The tab's title follows the conversation's (a rename, a generated title) --------------
  function syncTitle() {
    const heading = document.querySelector("#conversation-header h1");
    if (!heading) return;
    const wanted = heading.textContent.trim() + " · Threadline";
    if (document.title !== wanted) document.title = wanted;
  }

  // --- Telling screen readers the answer, politely and a sentence or more at a time ------------
  const announcer = () => document.getElementById("announcer");
  let hush = null;
  function say(text) {
    const region = announcer();
    if (!region) return;
    region.textContent = text;
    // Emptied again once it has been heard: stale text in a live region can be read twice.
    clearTimeout(hush);
    hush = setTimeout(() => { region.textContent = ""; }, 2000);
  }
  let spoken = 0; // words of the growing answer already announced
  let source = null; // the id of the answer they belong to (its element is swapped as it grows)
  let lastSaid = 0;
  function words(element) {
    return element.textContent.replace(/▍/g, "").split(/\s+/).filter(Boolean);
  }
  function announce(force) {
    const growing = document.querySelector(".message.streaming .md");
    if (growing && growing.closest(".message").id !== source) {
      source = growing.closest(".message").id;
      spoken = 0;
    }
    const finished = source && document.getElementById(source);
    const element = growing || (finished && finished.querySelector(".md"));
    if (!element) return;
    const now = Date.now();
    const done = !growing;
    if (!done && !force && now - lastSaid < 1500) return;
    const all = words(element);
    let fresh = all.slice(spoken);
    if (!done) {
      // Up to the last sentence's end: half sentences are harder to follow than a short wait.
      let end = -1;
      fresh.forEach((word, index) => { if (/[.!?:;]["”’)]?$/.test(word)) end = index; });
      fresh = fresh.slice(0, end + 1);
    }
    if (fresh.length) {
      say(fresh.join(" "));
      spoken += fresh.length;
      lastSaid = now;
    }
    if (done) source = null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = scroller();
    if (box) toBottom(box);
    addCodeButtons();
    new MutationObserver(changed).observe(document.body, { childList: true, subtree: true, characterData: true });
    const message = document.getElementById("message");
    if (message) {
      fit(message);
      if (!message.value && !touch.matches) message.focus();
    }
  });
  document.addEventListener("htmx:load", () => {
    const message = document.getElementById("message");
    if (message) fit(message);
  });
})();
