// The taskforce dashboard: the task table from /events, kept up to date in place.
//
// Everything a task provides (names, details, exit descriptions) is data: it reaches the
// page through textContent and attributes only, never as markup. The page is served with
// a Content-Security-Policy that forbids inline scripts as a second line of defence.
//
// CPU and memory: /status/tasks?fields=processes, read every USAGE_MS while the page shows
// (taskforce reads /proc only when asked); a CPU share is the CPU time spent between two
// readings. With many tasks, only those of the rows on screen are asked for.
//
// Scale: the event stream's tables are applied at most every BATCH_MS (the latest one; those
// in between are dropped unparsed). From VIRTUAL_FROM tasks on, only the rows on screen
// (and OVERSCAN more either side) are in the document; spacer rows stand for the others.
// The state bar counts tasks by state from /status/summary.
//
// Output: a task's details follow its recent output (/logs/NAME?follow=1, read as a
// stream through fetch, which can send the token where EventSource cannot). Output often
// holds secrets, so taskforce shows it only to callers with control access; the pane says
// so otherwise. One task's output is followed at a time.
//
// Control: buttons POST to /manage/tasks/NAME/ACTION. /status/access says whether this
// listener (and our token) allows it; a token is given once as /#token=TOKEN, kept for
// the browser tab in sessionStorage and removed from the address bar.
"use strict";

(() => {
  const HOUR = 3600; // seconds of history the timeline shows
  const WIDTH = 600; // the timeline's user units across (it is scaled to its cell)
  const HEIGHT = 24;
  const RECENT_EXITS = 10;
  const REFRESH_MS = 15000; // moves timelines and ages along while nothing changes
  const USAGE_MS = 2000; // CPU and memory are read this often while the page shows
  const OUTPUT_LINES = 200; // lines of output the pane keeps
  const BATCH_MS = 250; // the table is redrawn at most this often, however fast it changes
  const VIRTUAL_FROM = 200; // tasks from which only the rows on screen are drawn
  const OVERSCAN = 10; // rows drawn beyond each edge of the screen
  const ROW_GUESS = 40; // pixels of a row, until one is measured
  const TOKEN_KEY = "taskforce-token";
  const SVG = "http://www.w3.org/2000/svg";
  const ACTIONS = [
    ["restart", "Restart"],
    ["stop", "Stop"],
    ["start", "Start"],
  ];
  // States in which a button would do nothing: it is disabled there.
  const POINTLESS = {
    start: new Set(["running", "starting", "stopping"]),
    stop: new Set(["off", "removed"]),
    restart: new Set(["off", "removed"]),
  };

  const $ = (id) => document.getElementById(id);
  const rows = new Map(); // task name -> its row elements (only those drawn)
  const opened = new Set(); // tasks whose details are open, drawn or not
  let rowHeight = 0; // measured from a drawn row
  let control = null; // null: not known yet; true; false
  let token = null;
  let latest = null; // the last task table received
  let rowIds = 0;
  const usage = new Map(); // pid -> { cpu, rss, at, percent, procs } from the last reading
  const output = { task: null, abort: null }; // the one output pane (built when first shown)

  // ----- small helpers --------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    for (const child of children) node.append(child); // strings become text nodes
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString();
  }

  function when(t) {
    return new Date(t * 1000).toLocaleString();
  }

  function ago(t) {
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function bytes(n) {
    if (n == null) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit ? `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}` : `${n} B`;
  }

  function percent(p) {
    return p == null ? "—" : `${p.toFixed(p < 10 ? 1 : 0)}%`;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  function headers() {
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function announce(text, problem = false) {
    const box = $("announce");
    box.textContent = text;
    box.classList.toggle("problem", problem);
  }

  function failing(task) {
    return (
      task.state === "backing off" ||
      task.state === "failed" ||
      task.processes.some((p) => p.failures > 0)
    );
  }

  // ----- token and access -----------------------------------------------------------------

  function readToken() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (match) {
      token = decodeURIComponent(match[1]);
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (e) {
        // storage refused (private mode): the token lasts until the page is left
      }
      history.replaceState(null, "", location.pathname + location.search);
      return;
    }
    try {
      token = sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      token = null;
    }
  }

  function setControl(allowed, why) {
    control = allowed;
    const note = $("control-note");
    note.hidden = allowed !== false;
    if (allowed === false) note.textContent = why;
    document.body.classList.toggle("read-only", allowed === false);
    if (latest) render(latest);
  }

  function refusal(status, why) {
    if (status === 401) {
      return token
        ? "Read-only: the access token is not valid."
        : "Read-only: control needs the access token. Open this page as /#token=TOKEN.";
    }
    return `Read-only: ${why || "control is not allowed on this listener."}`;
  }

  async function loadAccess() {
    try {
      const reply = await fetch("/status/access", { headers: headers() });
      if (!reply.ok) return; // an older taskforce: the buttons find out when used
      const access = await reply.json();
      setControl(access.control === true, access.control ? "" : refusal(access.status, access.why));
      if (access.fleet === true) loadFleet(); // the stream sends the fleet when shown
    } catch (e) {
      // offline for now: the event stream reports that
    }
  }

  async function loadVersion() {
    try {
      const reply = await fetch("/status/version", { headers: headers() });
      if (!reply.ok) return;
      const v = await reply.json();
      setText($("version"), `taskforce ${v.taskforce} · Python ${v.python} · ${v.platform}`);
    } catch (e) {
      // the version is a nicety
    }
  }

  // /status/reload tells what the task table does not: the latest change of the
  // configuration was rejected, temporary overrides are in force. Asked at start, every
  // RELOAD_MS (a rejected change alters no task), and soon after the tasks change.
  const RELOAD_MS = 10000;
  let reloadSoon = null;

  function askReload() {
    if (reloadSoon === null) reloadSoon = setTimeout(loadReload, 1000);
  }

  async function loadReload() {
    clearTimeout(reloadSoon);
    reloadSoon = null;
    try {
      const reply = await fetch("/status/reload", { headers: headers() });
      if (!reply.ok) return; // an older taskforce: nothing to add
      const facts = await reply.json();
      const notes = [];
      if (Array.isArray(facts.reload_error) && facts.reload_error.length > 0) {
        notes.push(
          "The latest change of the configuration was rejected; the previous one runs: " +
            facts.reload_error.join("; "),
        );
      }
      const overrides = Object.entries(facts.overrides || {}).flatMap(([task, fields]) =>
        Object.entries(fields).map(([key, value]) => `${task} ${key}=${value}`),
      );
      if (overrides.length > 0) {
        notes.push(`Temporary overrides until the next reload: ${overrides.join(", ")}.`);
      }
      const note = $("reload-note");
      setText(note, notes.join(" "));
      note.hidden = notes.length === 0;
    } catch (e) {
      // offline for now: the event stream reports that
    }
  }

  // ----- control ------------------------------------------------------------------------

  async function act(name, action, label, button) {
    button.disabled = true;
    button.dataset.busy = "1";
    announce(`${label} ${name}: asking…`);
    try {
      const path = `/manage/tasks/${encodeURIComponent(name)}/${action}`;
      const reply = await fetch(path, { method: "POST", headers: headers() });
      if (reply.ok) {
        announce(`${label} ${name}: requested.`);
        return;
      }
      let why = `HTTP ${reply.status}`;
      try {
        why = (await reply.json()).error || why;
      } catch (e) {
        // not JSON: the status says enough
      }
      if (reply.status === 401 || reply.status === 403) setControl(false, refusal(reply.status, why));
      announce(`${label} ${name} failed: ${why}`, true);
    } catch (e) {
      announce(`${label} ${name} failed: taskforce cannot be reached.`, true);
    } finally {
      delete button.dataset.busy;
      button.disabled = false;
      if (latest) render(latest);
    }
  }

  // ----- one task's row -------------------------------------------------------------------

  function makeRow(name) {
    const id = `task-${++rowIds}`;
    const expander = el("button", {
      type: "button",
      class: "expander",
      "aria-expanded": "false",
      "aria-controls": `${id}-details`,
    });
    const nameText = el("span", { class: "name" }, name);
    expander.append(el("span", { class: "chevron", "aria-hidden": "true" }), nameText);
    const badge = el("span", { class: "badge" });
    const why = el("span", { class: "why" });
    const processes = el("td", { class: "num processes" });
    const restarts = el("td", { class: "num restarts" });
    const cpu = el("td", { class: "num cpu" });
    const memory = el("td", { class: "num memory" });
    const timeline = el("td", { class: "timeline" });
    const actions = el("td", { class: "actions" });
    const buttons = {};
    for (const [action, label] of ACTIONS) {
      const button = el("button", {
        type: "button",
        class: `act ${action}`,
        "data-action": action,
        "aria-label": `${label} ${name}`,
      }, label);
      button.addEventListener("click", () => act(name, action, label, button));
      buttons[action] = button;
      actions.append(button);
    }
    const row = el("tr", { class: "task", "data-task": name });
    row.append(
      el("th", { scope: "row" }, expander),
      el("td", { class: "state" }, el("div", { class: "state-line" }, badge, why)),
      processes,
      restarts,
      cpu,
      memory,
      timeline,
      actions,
    );
    // The details' facts are rebuilt on every change; the output pane's place is not, so
    // that its lines and scroll position stay.
    const info = el("div");
    const slot = el("div", { class: "output-slot" });
    const body = el("td", { colspan: "8" }, info, slot);
    const details = el("tr", { class: "details", id: `${id}-details`, hidden: "" }, body);
    const entry = {
      row, details, info, slot, badge, why, processes, restarts, cpu, memory, timeline, buttons,
    };
    if (opened.has(name)) {
      expander.setAttribute("aria-expanded", "true");
      details.hidden = false;
    }
    expander.addEventListener("click", () => {
      const open = expander.getAttribute("aria-expanded") !== "true";
      expander.setAttribute("aria-expanded", String(open));
      details.hidden = !open;
      if (open) opened.add(name);
      else opened.delete(name);
      if (open) {
        if (entry.task) entry.info.replaceChildren(detailsOf(entry.task));
        showOutput(name);
      } else {
        if (output.task === name) stopOutput();
        slot.replaceChildren();
      }
    });
    return entry;
  }

  function updateRow(entry, name, task) {
    entry.task = task;
    const state = task.state || "unknown";
    setText(entry.badge, state);
    entry.badge.className = `badge state-${state.replace(/[^a-z]+/g, "-")}`;
    const why = reason(task, state);
    setText(entry.why, why);
    // The line may cut a long reason short: the whole of it shows on hover.
    if (entry.why.parentNode.title !== state + why) entry.why.parentNode.title = state + why;
    setText(entry.processes, `${task.running}/${task.count}`);
    setText(entry.restarts, String(task.restarts));
    const used = taskUsage(task);
    setText(entry.cpu, percent(used.percent));
    setText(entry.memory, bytes(used.rss));
    entry.memory.dataset.bytes = used.rss == null ? "" : String(used.rss);
    entry.row.classList.toggle("failing", failing(task));
    entry.timeline.replaceChildren(timeline(name, task));
    for (const [action, button] of Object.entries(entry.buttons)) {
      button.hidden = control === false;
      button.disabled = button.dataset.busy === "1" || POINTLESS[action].has(state);
    }
    // Closed details are built when opened.
    if (!entry.details.hidden) {
      entry.info.replaceChildren(detailsOf(task));
      placeOutput(entry, name);
    }
  }

  // What the state badge does not say already.
  function reason(task, state) {
    if (task.rolling) {
      // A rolling restart: instances replaced so far, of how many.
      return ` — rolling restart ${task.rolling.done}/${task.rolling.total}`;
    }
    if (state === "backing off") {
      const most = Math.max(0, ...task.processes.map((p) => p.failures));
      return most ? ` — ${plural(most, "failure", "failures")} in a row` : "";
    }
    const why = task.why && !task.why.startsWith(state) ? ` — ${task.why}` : "";
    // A scheduled task says when it runs next.
    return task.next_run_t ? `${why} — next run ${when(task.next_run_t)}` : why;
  }

  // [from, to] spans during which a process of the task ran, within [since, now].
  function upSpans(task, since, now) {
    const open = new Map(); // instance -> when its process started
    const spans = [];
    for (const h of task.history || []) {
      if (h.kind === "start" || h.kind === "adopt") {
        open.set(h.instance, h.t);
      } else if (h.kind === "exit") {
        // An exit whose start is older than the history kept: up since before it.
        spans.push([open.has(h.instance) ? open.get(h.instance) : since, h.t]);
        open.delete(h.instance);
      }
    }
    for (const p of task.processes) {
      if (p.pid && p.started_t) spans.push([open.get(p.instance) ?? p.started_t, now]);
    }
    return spans
      .map(([from, to]) => [Math.max(from, since), Math.min(to, now)])
      .filter(([from, to]) => to > from);
  }

  function timeline(name, task) {
    const now = Date.now() / 1000;
    const since = now - HOUR;
    const x = (t) => Math.min(WIDTH - 1, Math.max(1, ((t - since) / HOUR) * WIDTH));
    const shown = (task.history || []).filter((h) => h.t >= since);
    const count = (kind) => shown.filter((h) => h.kind === kind).length;
    const described =
      `${name}, last hour: ${plural(count("start"), "start", "starts")}, ` +
      `${plural(count("exit"), "exit", "exits")}, ` +
      `${plural(count("failed"), "failed start", "failed starts")}`;
    const root = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": described,
      class: "strip",
    });
    root.append(svg("rect", { class: "bg", x: 0, y: 0, width: WIDTH, height: HEIGHT }));
    for (const quarter of [1, 2, 3]) {
      const at = (quarter * WIDTH) / 4;
      root.append(svg("line", { class: "grid", x1: at, x2: at, y1: 0, y2: HEIGHT }));
    }
    // A band where a process ran: gaps are downtime.
    for (const [from, to] of upSpans(task, since, now)) {
      const width = Math.max(1, x(to) - x(from));
      root.append(svg("rect", { class: "up", x: x(from), y: 10, width, height: 4 }));
    }
    // Starts hang from the top, exits stand on the bottom, failed starts and adoptions
    // cross the whole strip: kinds differ by place as well as colour.
    const span = { start: [2, 14], exit: [10, 22], failed: [1, 23], adopt: [1, 23] };
    for (const h of shown) {
      const [y1, y2] = span[h.kind] || [1, 23];
      const at = x(h.t);
      const tick = svg("line", { class: `tick ${h.kind}`, x1: at, x2: at, y1, y2 });
      const title = svg("title");
      const pid = h.pid ? ` pid ${h.pid}` : "";
      title.textContent = `${clock(h.t)} [${h.instance}] ${h.kind}${pid}${h.detail ? `: ${h.detail}` : ""}`;
      tick.append(title);
      root.append(tick);
    }
    return root;
  }

  function detailsOf(task) {
    const box = el("div", { class: "detail-box" });
    const facts = [`control ${task.control ?? "—"}`, `count ${task.count}`];
    if (task.requires && task.requires.length) facts.push(`requires ${task.requires.join(", ")}`);
    box.append(el("p", { class: "facts" }, facts.join(" · ")));
    // The row's line may cut it short: here it is whole.
    const why = reason(task, task.state || "unknown").replace(/^ — /, "");
    if (why && !task.rolling) box.append(el("p", { class: "facts why-whole" }, why));
    if (task.sockets && task.sockets.length) {
      // Listening sockets taskforce holds for the task (passed as descriptors 3 and up).
      const held = task.sockets.map((s) => `${s.name} ${s.address} (fd ${s.fd})`);
      box.append(el("p", { class: "facts sockets" }, `held sockets: ${held.join(" · ")}`));
    }
    if (task.rolling) {
      const r = task.rolling;
      const now = r.replacing.length ? `, replacing ${r.replacing.join(", ")}` : "";
      box.append(el("p", { class: "facts rolling" }, `rolling restart: ${r.done} of ${r.total} replaced${now}`));
    }

    const table = el("table", { class: "procs" });
    table.append(
      el("caption", {}, "Processes"),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Instance", "PID", "State", "CPU", "Memory", "Started", "Last exit", "Starts", "Failures"].map((h) =>
            el("th", { scope: "col" }, h),
          ),
        ),
      ),
    );
    const body = el("tbody");
    for (const p of task.processes) {
      const started = el("td", {}, p.started_t ? ago(p.started_t) : "—");
      if (p.started_t) started.title = when(p.started_t);
      const exit = el("td", {}, p.exit ? `${p.exit}${p.exited_t ? `, ${ago(p.exited_t)}` : ""}` : "—");
      if (p.exited_t) exit.title = when(p.exited_t);
      const used = (p.pid && usage.get(p.pid)) || null;
      const cpu = el("td", { class: "num cpu" }, percent(used && used.percent));
      if (used) cpu.title = `${used.cpu.toFixed(2)} s of CPU time`;
      const memory = el("td", { class: "num memory" }, bytes(used && used.rss));
      if (used && used.rss != null) {
        memory.dataset.bytes = String(used.rss);
        memory.title =
          used.procs != null
            ? `${used.rss} bytes in its cgroup, ${used.procs} process(es)`
            : `${used.rss} bytes resident`;
      }
      body.append(
        el(
          "tr",
          { "data-instance": String(p.instance) },
          el("td", { class: "num" }, String(p.instance)),
          el("td", { class: "num" }, p.pid ? String(p.pid) : "—"),
          el("td", {}, p.replaces == null ? p.state : `${p.state} (replacing ${p.replaces})`),
          cpu,
          memory,
          started,
          exit,
          el("td", { class: "num" }, String(p.starts)),
          el("td", { class: "num" }, String(p.failures)),
        ),
      );
    }
    if (!task.processes.length) {
      body.append(el("tr", {}, el("td", { colspan: "9" }, "No process.")));
    }
    table.append(body);
    box.append(table);

    const exits = (task.history || [])
      .filter((h) => h.kind === "exit" || h.kind === "failed")
      .slice(-RECENT_EXITS)
      .reverse();
    box.append(el("h3", {}, "Recent exits"));
    if (!exits.length) {
      box.append(el("p", { class: "quiet" }, "None."));
    } else {
      const list = el("ol", { class: "exits" });
      for (const h of exits) {
        const pid = h.pid ? `pid ${h.pid} ` : "";
        const time = el("time", { datetime: new Date(h.t * 1000).toISOString() }, clock(h.t));
        list.append(el("li", { class: h.kind }, time, ` [${h.instance}] ${pid}${h.detail || h.kind}`));
      }
      box.append(list);
    }
    return box;
  }

  // ----- CPU and memory -------------------------------------------------------------------

  // The task's processes together: memory summed, CPU shares summed (null: not read yet).
  function taskUsage(task) {
    let rss = null;
    let share = null;
    for (const p of task.processes) {
      const used = p.pid && usage.get(p.pid);
      if (!used) continue;
      if (used.rss != null) rss = (rss || 0) + used.rss;
      if (used.percent != null) share = (share || 0) + used.percent;
    }
    return { rss, percent: share };
  }

  async function loadUsage() {
    if (document.hidden) return;
    try {
      let path = "/status/tasks?fields=processes";
      if (latest && Object.keys(latest).length >= VIRTUAL_FROM) {
        if (!rows.size) return;
        for (const name of rows.keys()) path += `&task=${encodeURIComponent(name)}`;
      }
      const reply = await fetch(path, { headers: headers() });
      if (!reply.ok) return;
      const table = await reply.json();
      const now = performance.now() / 1000;
      const seen = new Set();
      for (const task of Object.values(table)) {
        for (const p of task.processes || []) {
          // The instance's cgroup counts every process it started, where it has one.
          const group = p.cgroup || {};
          const cpu = group.cpu_seconds != null ? group.cpu_seconds : p.cpu_seconds;
          const memory = group.memory_bytes != null ? group.memory_bytes : p.rss_bytes;
          if (!p.pid || cpu == null) continue;
          seen.add(p.pid);
          const before = usage.get(p.pid);
          const share = before && now > before.at ? Math.max(0, (100 * (cpu - before.cpu)) / (now - before.at)) : null;
          const procs = group.processes != null ? group.processes : null;
          usage.set(p.pid, { cpu, rss: memory, at: now, percent: share, procs });
        }
      }
      for (const pid of [...usage.keys()]) if (!seen.has(pid)) usage.delete(pid);
      if (latest) render(latest);
    } catch (e) {
      // offline for now: the event stream reports that
    }
  }

  // ----- a task's recent output -------------------------------------------------------------

  function outputPane() {
    if (!output.section) {
      output.heading = el("h3", {}, "Recent output");
      output.note = el("p", { class: "output-note", role: "status" });
      output.log = el("div", { class: "output", role: "log", tabindex: "0" });
      output.section = el("section", { class: "output-pane" }, output.heading, output.note, output.log);
    }
    return output.section;
  }

  function outputNote(text, kind = "") {
    output.note.hidden = !text;
    output.note.className = `output-note ${kind}`;
    setText(output.note, text);
  }

  function needsControl(why) {
    output.log.hidden = true;
    const how = why ? ` ${why}` : "";
    outputNote(
      "Needs control access: a task's output can hold secrets, so taskforce shows it only to " +
        `callers allowed to control it.${how}`,
      "needs-control",
    );
  }

  // The pane sits in the details of the task it follows; other open details offer to move it.
  function placeOutput(entry, name) {
    if (output.task === name) {
      if (entry.slot.firstChild !== output.section) entry.slot.replaceChildren(output.section);
      return;
    }
    if (entry.slot.firstChild && entry.slot.firstChild.dataset.show === name) return;
    const show = el("button", { type: "button", class: "show-output", "data-show": name }, "Show recent output");
    show.addEventListener("click", () => showOutput(name));
    entry.slot.replaceChildren(show);
  }

  function stopOutput() {
    if (output.abort) output.abort.abort();
    output.abort = null;
    output.task = null;
  }

  async function showOutput(name) {
    stopOutput();
    outputPane();
    output.task = name;
    for (const [task, entry] of rows) if (!entry.details.hidden) placeOutput(entry, task);
    setText(output.heading, `Recent output of ${name}`);
    output.log.replaceChildren();
    output.log.hidden = false;
    if (latest && latest[name] && latest[name].output_captured === false) {
      outputNote("No output to show: it is not captured (its output is null). Set `output` in the configuration to keep it.", "quiet");
      return;
    }
    if (control === false) {
      needsControl($("control-note").textContent);
      return;
    }
    const abort = new AbortController();
    output.abort = abort;
    outputNote("Loading…");
    try {
      const path = `/logs/${encodeURIComponent(name)}?follow=1&n=${OUTPUT_LINES}`;
      const reply = await fetch(path, { headers: headers(), signal: abort.signal });
      if (!reply.ok) {
        let why = `HTTP ${reply.status}`;
        try {
          why = (await reply.json()).error || why;
        } catch (e) {
          // not JSON: the status says enough
        }
        if (output.abort !== abort) return;
        if (reply.status === 401 || reply.status === 403) needsControl(refusal(reply.status, why));
        else outputNote(`No output to show: ${why}`, "problem");
        return;
      }
      await readEvents(reply.body, (event, data) => {
        if (event === "lines") appendLines(data);
        else if (event === "skipped") appendLines([{ skipped: data.lines }]);
      });
      if (output.abort === abort) outputNote("The output stream ended: close and open the task to follow again.", "problem");
    } catch (e) {
      if (!abort.signal.aborted) outputNote("The output cannot be followed: taskforce cannot be reached.", "problem");
    }
  }

  // Server-sent events from a fetched body: `event:` and `data:` lines, blank-line separated.
  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(event, JSON.parse(data.join("\n")));
      }
    }
  }

  function appendLines(lines) {
    const log = output.log;
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const line of lines) {
      if (line.skipped) {
        log.append(el("div", { class: "line skipped" }, `… ${plural(line.skipped, "line", "lines")} skipped`));
        continue;
      }
      const stamp = line.time ? clock(line.time) : "";
      log.append(
        el(
          "div",
          { class: `line ${line.stream === "stderr" ? "stderr" : "stdout"}` },
          el("span", { class: "origin" }, `${stamp} [${line.instance}] `),
          line.text,
        ),
      );
    }
    while (log.childElementCount > OUTPUT_LINES) log.firstElementChild.remove();
    if (log.childElementCount) outputNote("");
    else outputNote("No output yet.", "quiet");
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  // ----- the whole table ------------------------------------------------------------------

  // Spacer rows stand for the rows above and below those drawn (with many tasks).
  function spacer(where) {
    const id = `spacer-${where}`;
    let row = $(id);
    if (!row) {
      row = el("tr", { id, class: "spacer", "aria-hidden": "true" }, el("td", { colspan: "8" }));
      if (where === "top") $("task-rows").prepend(row);
      else $("task-rows").append(row);
    }
    return row;
  }

  function setSpacer(where, rowsOf) {
    const row = spacer(where);
    row.hidden = rowsOf === 0;
    row.firstChild.style.height = `${rowsOf * (rowHeight || ROW_GUESS)}px`;
  }

  // The rows to draw: every one, or (with many) those on screen and OVERSCAN either side.
  function drawn(count) {
    if (count < VIRTUAL_FROM) return [0, count];
    const height = rowHeight || ROW_GUESS;
    const top = $("task-rows").getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / height) - OVERSCAN);
    const onScreen = Math.ceil(window.innerHeight / height) + 2 * OVERSCAN;
    return [Math.min(first, count), Math.min(count, first + onScreen)];
  }

  function render(tasks) {
    latest = tasks;
    const tbody = $("task-rows");
    const names = Object.keys(tasks);
    const [first, last] = drawn(names.length);
    const shown = new Set(names.slice(first, last));
    for (const [name, entry] of rows) {
      if (!shown.has(name)) {
        if (output.task === name) stopOutput();
        entry.row.remove();
        entry.details.remove();
        rows.delete(name);
      }
    }
    const top = spacer("top");
    spacer("bottom");
    for (let index = first; index < last; index++) {
      const name = names[index];
      let entry = rows.get(name);
      if (!entry) {
        entry = makeRow(name);
        rows.set(name, entry);
      }
      updateRow(entry, name, tasks[name]);
      // Move rows only when out of place: moving a focused button would lose its focus.
      const at = tbody.children[1 + (index - first) * 2];
      if (at !== entry.row) {
        tbody.insertBefore(entry.row, at || null);
        tbody.insertBefore(entry.details, entry.row.nextSibling);
      } else if (entry.row.nextSibling !== entry.details) {
        tbody.insertBefore(entry.details, entry.row.nextSibling);
      }
    }
    if (top.nextSibling && top.nextSibling.classList.contains("task") && !rowHeight) {
      rowHeight = top.nextSibling.getBoundingClientRect().height || 0;
    }
    setSpacer("top", first);
    setSpacer("bottom", names.length - last);
    $("empty").hidden = names.length > 0;
    const all = Object.values(tasks);
    const running = all.reduce((sum, t) => sum + t.running, 0);
    const bad = all.filter(failing).length;
    setText(
      $("summary"),
      `${plural(all.length, "task", "tasks")}, ${plural(running, "process", "processes")} running, ` +
        `${bad} failing`,
    );
    $("summary").classList.toggle("problem", bad > 0);
  }

  // Scrolling a long table draws the rows that come on screen, once per frame.
  let scrolled = false;
  function onScroll() {
    if (scrolled || !latest || Object.keys(latest).length < VIRTUAL_FROM) return;
    scrolled = true;
    requestAnimationFrame(() => {
      scrolled = false;
      render(latest);
    });
  }

  // The state bar: how many tasks are in each state (those with none are left out).
  async function loadSummary() {
    try {
      const reply = await fetch("/status/summary", { headers: headers() });
      if (!reply.ok) return; // an older taskforce: the summary line is enough
      const summary = await reply.json();
      const bar = $("state-bar");
      const chips = Object.entries(summary.states || {})
        .filter(([, n]) => n > 0)
        .map(([state, n]) =>
          el("li", { class: `chip state-${state.replace(/[^a-z]+/g, "-")}`, "data-state": state }, `${state} ${n}`),
        );
      if (summary.unwanted > 0) {
        chips.push(el("li", { class: "chip unwanted", "data-state": "unwanted" }, `not as wanted ${summary.unwanted}`));
      }
      bar.replaceChildren(...chips);
      bar.dataset.total = String(summary.total);
    } catch (e) {
      // offline for now: the event stream reports that
    }
  }

  // The latest table from the event stream waits here until the next batch is applied.
  let pending = null;
  let applyAt = 0;
  let applying = null;
  function receive(data) {
    pending = data;
    if (applying !== null) return;
    applying = setTimeout(() => {
      applying = null;
      applyAt = performance.now();
      const data = pending;
      pending = null;
      render(JSON.parse(data));
      loadSummary();
      askReload();
    }, Math.max(0, applyAt + BATCH_MS - performance.now()));
  }

  function connection(state, text) {
    const box = $("connection");
    box.dataset.state = state;
    setText(box, text);
  }

  function listen() {
    const source = new EventSource("/events");
    source.addEventListener("tasks", (event) => {
      connection("live", "live");
      receive(event.data);
    });
    source.addEventListener("open", () => connection("live", "live"));
    // The browser reconnects by itself (taskforce restarting, say).
    source.addEventListener("error", () => connection("lost", "reconnecting…"));
  }

  // ----- the fleet (the configuration comes from etcd) -------------------------------------
  //
  // /status/access says whether /status/fleet works here: otherwise there is no fleet view
  // at all. The fleet's event stream is open only while its view shows (taskforce follows
  // the other hosts' statuses in etcd only while someone looks).

  let fleetSource = null;

  function loadFleet() {
    $("views").hidden = false;
    if (location.hash === "#fleet") showView("fleet");
  }

  function showView(name) {
    const fleet = name === "fleet";
    for (const [tab, selected] of [["tab-host", !fleet], ["tab-fleet", fleet]]) {
      $(tab).setAttribute("aria-selected", String(selected));
      $(tab).tabIndex = selected ? 0 : -1;
    }
    $("host-view").hidden = fleet;
    $("fleet-view").hidden = !fleet;
    history.replaceState(null, "", location.pathname + location.search + (fleet ? "#fleet" : ""));
    if (fleet && !fleetSource) {
      fleetSource = new EventSource("/events/fleet");
      fleetSource.addEventListener("fleet", (event) => renderFleet(JSON.parse(event.data)));
    } else if (!fleet && fleetSource) {
      fleetSource.close();
      fleetSource = null;
    }
  }

  function setupTabs() {
    const tabs = [$("tab-host"), $("tab-fleet")];
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => showView(index ? "fleet" : "host"));
      tab.addEventListener("keydown", (event) => {
        if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
        const other = tabs[1 - index];
        other.focus();
        other.click();
      });
    });
  }

  // The rows of one host: a row per task, then a row per cluster-wide task held elsewhere.
  function fleetRows(status) {
    const rows = [];
    const none = { processes: "", pids: "" };
    if (status.error) rows.push({ ...none, label: "—", state: "unreadable", why: status.error });
    if (status.reload_error) {
      rows.push({ ...none, label: "(configuration)", state: "rejected", why: status.reload_error });
    }
    const tasks = status.tasks || {};
    const cluster = status.cluster || {};
    const done = status.done || {};
    for (const name of Object.keys(tasks).sort()) {
      const task = tasks[name];
      rows.push({
        task: name,
        label: name,
        cluster: name in cluster,
        state: task.state || "unknown",
        processes: `${task.running ?? 0}/${task.count ?? 0}`,
        pids: (task.pids || []).join(", ") || "—",
      });
    }
    for (const name of Object.keys(cluster).sort()) {
      if (name in tasks) continue;
      const holder = cluster[name];
      const row = { ...none, task: name, label: name, cluster: true, state: "standby" };
      if (name in done) {
        // A once task that has run, here or elsewhere.
        rows.push({ ...row, state: "done", why: `on ${done[name]}` });
      } else {
        rows.push({ ...row, why: holder ? `held by ${holder}` : "not held yet" });
      }
    }
    if (!rows.length) rows.push({ ...none, label: "—", state: "no tasks" });
    return rows;
  }

  function renderFleet(doc) {
    const table = $("fleet");
    for (const body of [...table.tBodies]) body.remove();
    const hosts = doc.hosts || {};
    const names = Object.keys(hosts).sort();
    let tasks = 0;
    let rejected = 0;
    for (const name of names) {
      const status = hosts[name] || {};
      const rows = fleetRows(status);
      const body = el("tbody", { "data-host": name });
      body.classList.toggle("self", name === doc.host);
      rows.forEach((row, index) => {
        const tr = el("tr", row.task ? { "data-task": row.task } : {});
        if (index === 0) {
          const roles = status.roles ? status.roles.join(", ") || "(none)" : "—";
          const span = String(rows.length);
          tr.append(
            el("th", { scope: "rowgroup", rowspan: span }, name),
            el("td", { class: "roles", rowspan: span }, roles),
          );
        }
        const label = el("td", { class: "task" }, row.label);
        if (row.cluster) label.append(el("span", { class: "cluster" }, "cluster-wide"));
        const badge = el("span", { class: `badge state-${row.state.replace(/[^a-z]+/g, "-")}` }, row.state);
        const state = el("td", { class: "state" }, badge);
        if (row.why) state.append(el("span", { class: "why" }, ` — ${row.why}`));
        tr.append(label, state, el("td", { class: "num" }, row.processes), el("td", { class: "pids" }, row.pids));
        body.append(tr);
      });
      if (status.tasks) tasks += Object.keys(status.tasks).length;
      if (status.reload_error) rejected += 1;
      table.append(body);
    }
    $("fleet-empty").hidden = names.length > 0;
    const problem = rejected ? `, ${plural(rejected, "host", "hosts")} rejected the configuration` : "";
    setText($("fleet-summary"), `${plural(names.length, "host", "hosts")}, ${plural(tasks, "task", "tasks")}${problem}`);
    $("fleet-summary").classList.toggle("problem", rejected > 0);
    const note = $("fleet-note");
    note.hidden = !doc.error;
    setText(note, doc.error ? `${doc.error}: this is what the hosts last published.` : "");
  }

  function start() {
    readToken();
    loadVersion();
    loadAccess();
    loadReload();
    setInterval(loadReload, RELOAD_MS);
    setupTabs();
    listen();
    loadUsage();
    setInterval(() => {
      if (latest) render(latest);
    }, REFRESH_MS);
    setInterval(loadUsage, USAGE_MS);
    document.addEventListener("visibilitychange", loadUsage);
    window.addEventListener("scroll", onScroll, { passive: true });
    window.addEventListener("resize", onScroll);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
