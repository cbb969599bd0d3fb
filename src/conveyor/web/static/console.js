// Conveyor console: live updates (EventSource), local times, small conveniences.
// Hand-written, no build step. Every page works without it; this only adds liveness.
"use strict";
(function () {
  const pad = (n, w) => String(n).padStart(w || 2, "0");

  function localize(root) {
    root.querySelectorAll("[data-ts]").forEach((el) => {
      const d = new Date(parseFloat(el.dataset.ts) * 1000);
      const fmt = el.dataset.fmt || "full";
      let text;
      if (fmt === "clock") {
        text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
      } else if (fmt === "time") {
        text = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      } else if (fmt === "weekday") {
        text = d.toLocaleDateString(undefined, { weekday: "short" }) + ` ${pad(d.getHours())}:${pad(d.getMinutes())}`;
      } else if (fmt === "day") {
        text = d.toLocaleDateString(undefined, { month: "short", day: "2-digit" });
      } else {
        text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
          `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneName(d)}`;
      }
      if (el.tagName.toLowerCase() === "title") {
        el.textContent = el.textContent.replace(/^[^:]*\d\d:\d\d UTC|^\w{3} \d\d UTC/, text);
      } else {
        if (!el.title) el.title = el.textContent;
        el.textContent = text;
        if (fmt === "full") {
          const rel = document.createElement("small");
          rel.className = "rel";
          rel.dataset.relTs = el.dataset.ts;
          rel.textContent = relative(d);
          el.append(" ", rel);
        }
      }
    });
  }

  // The browser's zone as people read it ("UTC", "CET", "GMT+1").
  function zoneName(d) {
    const part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(d).find((p) => p.type === "timeZoneName");
    return part ? part.value : "";
  }

  // "3 minutes ago", "in 2 hours", "yesterday".
  function relative(d) {
    const seconds = (d.getTime() - Date.now()) / 1000;
    const steps = [["second", 60], ["minute", 60], ["hour", 24], ["day", 30], ["month", 12], ["year", Infinity]];
    let value = seconds;
    for (const [unit, size] of steps) {
      if (Math.abs(value) < size) {
        return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(Math.round(value), unit);
      }
      value /= size;
    }
    return "";
  }

  function refreshRelative() {
    document.querySelectorAll("[data-rel-ts]").forEach((el) => {
      el.textContent = relative(new Date(parseFloat(el.dataset.relTs) * 1000));
    });
  }

  function applyUpdate(data) {
    Object.entries(data.counters || {}).forEach(([name, value]) => {
      document.querySelectorAll(`[data-counter="${name}"]`).forEach((el) => { el.textContent = value; });
    });
    Object.entries(data.regions || {}).forEach(([name, html]) => {
      document.querySelectorAll(`[data-region="${name}"]`).forEach((el) => {
        el.innerHTML = html;
        localize(el);
      });
    });
  }

  function setBadge(badge, state) {
    if (!badge) return;
    badge.hidden = state === "hidden";
    badge.classList.toggle("offline", state === "offline");
    badge.textContent = state === "offline" ? "reconnecting" : badge.dataset.label || "live";
  }

  // A stream that reconnects: EventSource retries network errors by itself; when the
  // server answers with an error (a proxy during a restart), it gives up, so we retry.
  function stream(url, handlers, badge) {
    let source = null;
    let stopped = false;
    const open = () => {
      source = new EventSource(url, { withCredentials: true });
      source.onopen = () => setBadge(badge, "live");
      source.onerror = () => {
        if (stopped) return;
        setBadge(badge, "offline");
        if (source.readyState === EventSource.CLOSED) setTimeout(() => { if (!stopped) open(); }, 3000);
      };
      Object.entries(handlers).forEach(([name, fn]) => {
        source.addEventListener(name, (event) => fn(JSON.parse(event.data), event, stop));
      });
    };
    const stop = () => { stopped = true; if (source) source.close(); };
    open();
    window.addEventListener("pagehide", stop);
    return stop;
  }

  async function refreshRegions(selectors) {
    const response = await fetch(location.href, { headers: { "X-Conveyor-Console": "1" } });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    selectors.forEach((selector) => {
      const fresh = doc.querySelector(selector);
      const current = document.querySelector(selector);
      if (fresh && current) {
        current.replaceWith(fresh);
        localize(fresh);
      }
    });
  }

  function liveRegions() {
    const holder = document.querySelector("[data-stream]");
    if (!holder) return;
    const badge = document.querySelector("[data-live-badge]");
    stream(holder.dataset.stream, { update: applyUpdate }, badge);
  }

  function logTail() {
    const logs = document.getElementById("logs");
    if (!logs) return;
    const wrap = document.querySelector("[data-wrap-toggle]");
    if (wrap) {
      wrap.checked = localStorage.getItem("conveyor.wrap") === "1";
      logs.classList.toggle("wrap", wrap.checked);
      wrap.addEventListener("change", () => {
        logs.classList.toggle("wrap", wrap.checked);
        localStorage.setItem("conveyor.wrap", wrap.checked ? "1" : "0");
      });
    }
    const copy = document.querySelector("[data-copy-logs]");
    if (copy) copy.addEventListener("click", () => copyText(logText(logs), copy));
    const url = logs.dataset.logStream;
    if (!url) return;
    const badge = document.querySelector("[data-tail-badge]");
    badge.dataset.label = "following";
    const empty = document.querySelector("[data-logs-empty]");
    stream(url, {
      lines: (data) => {
        const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 40;
        const fresh = document.createElement("template");
        fresh.innerHTML = data.html;
        localize(fresh.content);
        logs.appendChild(fresh.content);
        if (empty) empty.hidden = true;
        if (atBottom) logs.scrollTop = logs.scrollHeight;
      },
      end: (data, event, stop) => {
        stop();
        setBadge(badge, "hidden");
        if (empty && !logs.children.length) empty.textContent = "No log line.";
        refreshRegions(["[data-region=run]", "[data-run-status]", ".page-head .actions"]);
      },
    }, badge);
  }

  function logText(logs) {
    return Array.from(logs.querySelectorAll(".log-line")).map((line) => line.textContent).join("\n");
  }

  function copyText(text, button) {
    const done = () => {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else {
      fallbackCopy(text, done);
    }
  }

  function fallbackCopy(text, done) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } finally { area.remove(); }
  }

  function confirmations() {
    document.addEventListener("submit", (event) => {
      const source = event.submitter && event.submitter.dataset.confirm
        ? event.submitter : event.target;
      const question = source.dataset ? source.dataset.confirm : null;
      if (question && !window.confirm(question)) event.preventDefault();
    });
  }

  function bulkSelection() {
    const form = document.querySelector("[data-bulk-form]");
    if (!form) return;
    const all = form.querySelector("[data-select-all]");
    const boxes = () => Array.from(form.querySelectorAll("input[name=keys]"));
    const update = () => {
      const count = boxes().filter((box) => box.checked).length;
      const label = form.querySelector("[data-selected-count]");
      if (label) label.textContent = `${count} selected`;
      form.querySelectorAll("[data-bulk-button]").forEach((b) => { b.disabled = count === 0; });
      if (all) all.checked = count > 0 && count === boxes().length;
    };
    if (all) all.addEventListener("change", () => { boxes().forEach((b) => { b.checked = all.checked; }); update(); });
    form.addEventListener("change", (event) => { if (event.target.name === "keys") update(); });
    update();
  }

  function enqueueForm() {
    const search = document.querySelector("[data-job-search]");
    if (search) {
      search.addEventListener("input", () => {
        const needle = search.value.trim().toLowerCase();
        document.querySelectorAll("[data-job-list] li").forEach((item) => {
          item.hidden = needle !== "" && !item.dataset.jobText.includes(needle);
        });
      });
    }
    const form = document.querySelector("[data-enqueue-form]");
    if (!form) return;
    const panels = form.querySelectorAll("[data-mode-panel]");
    const raw = form.querySelector("textarea[name=args]");
    const params = () => Array.from(form.querySelectorAll("[data-param]"));
    const input = (param) => param.querySelector("input, select, textarea");
    const parseObject = (text) => {
      try {
        const value = JSON.parse(text || "{}");
        return value && typeof value === "object" && !Array.isArray(value) ? value : null;
      } catch (error) {
        return null;
      }
    };
    // What a field holds, typed as the server reads it (undefined: left empty).
    const fieldValue = (param) => {
      const text = input(param).value;
      const kind = param.dataset.kind;
      if (text === "" || (kind !== "str" && text.trim() === "")) return undefined;
      if (kind === "str") return text;
      if (kind === "bool") return text === "true";
      if (kind === "int" || kind === "float") {
        const number = Number(text);
        return Number.isNaN(number) ? text : number;
      }
      try { return JSON.parse(text); } catch (error) { return text; }
    };
    // Switching Form -> Raw JSON carries what was typed over, and back again.
    const formToRaw = () => {
      const args = parseObject(raw.value);
      if (args === null) return; // keep raw text that is not an object as it is
      params().forEach((param) => {
        const value = fieldValue(param);
        if (value !== undefined) args[param.dataset.param] = value;
        else if ("required" in param.dataset) args[param.dataset.param] = null;
        else if (param.dataset.default) args[param.dataset.param] = JSON.parse(param.dataset.default);
      });
      raw.value = JSON.stringify(args, null, 2);
    };
    const rawToForm = () => {
      const args = parseObject(raw.value);
      if (args === null) return;
      params().forEach((param) => {
        const name = param.dataset.param;
        if (!(name in args)) return;
        const value = args[name];
        const field = input(param);
        if (value === null) field.value = "";
        else if (param.dataset.kind === "str" && typeof value === "string") field.value = value;
        else if (param.dataset.kind === "bool") field.value = value ? "true" : "false";
        else field.value = JSON.stringify(value);
      });
    };
    let shown = null;
    const showMode = () => {
      const mode = (form.querySelector("[data-mode]:checked") || {}).value || "form";
      if (raw && shown === "form" && mode === "json") formToRaw();
      if (raw && shown === "json" && mode === "form") rawToForm();
      shown = mode;
      panels.forEach((panel) => {
        panel.hidden = panel.dataset.modePanel !== mode;
        panel.querySelectorAll("input, select, textarea").forEach((field) => { field.disabled = panel.hidden; });
      });
    };
    form.querySelectorAll("[data-mode]").forEach((radio) => radio.addEventListener("change", showMode));
    showMode();
    const at = form.querySelector("[data-scheduled-at]");
    if (at) at.addEventListener("input", () => { form.querySelector("input[name=when][value=at]").checked = true; });
    form.addEventListener("submit", () => {
      const offset = form.querySelector("[data-tz-offset]");
      const when = at && at.value ? new Date(at.value) : new Date();
      if (offset) offset.value = String(when.getTimezoneOffset());
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localize(document);
    setInterval(refreshRelative, 15000);
    confirmations();
    bulkSelection();
    enqueueForm();
    liveRegions();
    logTail();
  });
})();
