// The migration page: polls its JSON, renders the table in place and keeps
// the sort and filter across updates. Configuration comes from data-
// attributes of <body>; the CSRF token from <meta name="csrf-token">.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const api = body.dataset.api;
  const poll = Number(body.dataset.poll) || 3000;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const status = document.getElementById("status");

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function timeCell(iso) {
    const td = el("td", "time", ago(iso));
    if (iso) td.title = iso;
    return td;
  }

  // sdk names the caller's SDK or tool and its version; for an unknown
  // one, the start of its User-Agent.
  function sdk(c) {
    if (c.sdk === "other" && c["user-agent"]) {
      const ua = c["user-agent"];
      return ua.length > 32 ? ua.slice(0, 31) + "…" : ua;
    }
    return c.sdk + (c["sdk-version"] ? " " + c["sdk-version"] : "");
  }

  function badge(cls) {
    return el("span", "badge " + cls, cls);
  }

  // A sortable, filterable table whose body is rebuilt from rows on every
  // update; the sort key and direction and the filter stay.
  function Table(table, columns, key, dir) {
    const tbody = table.querySelector("tbody");
    const state = { key: key, dir: dir, rows: [], filter: function () { return true; } };
    table.querySelectorAll("th.sortable").forEach(function (th) {
      th.tabIndex = 0;
      const sortBy = function () {
        if (state.key === th.dataset.key) state.dir = -state.dir;
        else { state.key = th.dataset.key; state.dir = 1; }
        draw();
      };
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(); });
    });
    function draw() {
      table.querySelectorAll("th.sortable").forEach(function (th) {
        th.classList.toggle("asc", th.dataset.key === state.key && state.dir > 0);
        th.classList.toggle("desc", th.dataset.key === state.key && state.dir < 0);
        th.setAttribute("aria-sort", th.dataset.key !== state.key ? "none" : state.dir > 0 ? "ascending" : "descending");
      });
      const col = columns[state.key];
      const rows = state.rows.filter(state.filter).sort(function (a, b) {
        const x = col(a), y = col(b);
        return (x < y ? -1 : x > y ? 1 : 0) * state.dir;
      });
      const frag = document.createDocumentFragment();
      rows.forEach(function (r) { frag.appendChild(r.tr); });
      tbody.replaceChildren(frag);
      document.getElementById("empty").hidden = rows.length > 0 || state.rows.length === 0;
      document.getElementById("count").textContent = rows.length + " of " + state.rows.length;
    }
    return {
      set: function (rows) { state.rows = rows; draw(); },
      filter: function (f) { state.filter = f; draw(); },
    };
  }

  function showResult(kind, text) {
    const box = document.getElementById("result");
    box.className = "result " + kind;
    box.replaceChildren(el("pre", "", text));
    box.hidden = false;
  }

  async function enforce(id, button) {
    button.disabled = true;
    try {
      const resp = await fetch("/ui/api/enforce", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ "instance-id": id }),
      });
      const ans = await resp.json();
      if (!resp.ok) showResult("error", ans.error || "HTTP " + resp.status);
      else showResult(ans.ok ? "ok" : "refused", ans.message.trim());
    } catch (e) {
      showResult("error", "the request failed: " + e);
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  function enforceButton(id) {
    const b = el("button", "enforce", "Enforce IMDSv2");
    b.type = "button";
    b.dataset.instance = id;
    b.addEventListener("click", function () { enforce(id, b); });
    return b;
  }

  const CLASSES = ["v2", "v1", "v1-fallback", "v1-rejected"];

  // The fleet page.
  function fleetRow(inst) {
    const tr = el("tr");
    tr.dataset.instance = inst["instance-id"];
    const a = el("a", "", inst["instance-id"]);
    a.href = "/ui/instances/" + encodeURIComponent(inst["instance-id"]);
    const id = el("td");
    id.appendChild(a);
    tr.appendChild(id);
    tr.appendChild(el("td", "tokens " + inst["http-tokens"], inst["http-tokens"]));
    const v = el("td", "verdict " + (inst.ready ? "ready" : "not-ready"), inst.ready ? "ready" : "not ready");
    v.title = inst.verdict;
    tr.appendChild(v);
    CLASSES.forEach(function (c) {
      tr.appendChild(el("td", "num" + (c !== "v2" && inst.classes[c] ? " warn" : ""), String(inst.classes[c] || 0)));
    });
    const callers = el("td", "callers");
    const ul = el("ul");
    inst.callers.filter(function (c) { return c.class !== "v2"; }).forEach(function (c) {
      const li = el("li");
      li.appendChild(el("span", "sdk", sdk(c)));
      li.appendChild(badge(c.class));
      li.appendChild(el("span", "addr", c.address));
      const seen = el("span", "seen", ago(c["last-seen"]));
      seen.title = "last seen " + c["last-seen"];
      li.appendChild(seen);
      li.title = c["user-agent"] + ": " + c.evidence;
      ul.appendChild(li);
    });
    callers.appendChild(ul);
    tr.appendChild(callers);
    tr.appendChild(timeCell(inst["last-v1"]));
    const act = el("td", "act");
    if (inst.ready && inst["http-tokens"] !== "required") act.appendChild(enforceButton(inst["instance-id"]));
    tr.appendChild(act);
    return tr;
  }

  function fleetText(inst) {
    return [inst["instance-id"], inst["http-tokens"], inst.verdict].concat(inst.callers.map(function (c) {
      return [c.address, c["user-agent"], sdk(c), c.class].join(" ");
    })).join(" ").toLowerCase();
  }

  // The instance page.
  function callerRow(c) {
    const tr = el("tr", "caller " + c.class);
    const cls = el("td");
    cls.appendChild(badge(c.class));
    tr.appendChild(cls);
    tr.appendChild(el("td", "addr", c.address));
    tr.appendChild(el("td", "", c.via));
    tr.appendChild(el("td", "sdk", sdk(c)));
    tr.appendChild(el("td", "ua", c["user-agent"]));
    tr.appendChild(timeCell(c["first-seen"]));
    tr.appendChild(timeCell(c["last-seen"]));
    tr.appendChild(timeCell(c["last-v1"]));
    const n = c.requests;
    [n["token-put"], n.v2, n.v1, n["v1-fallback"], n["v1-rejected"], n["invalid-token"]].forEach(function (x) {
      tr.appendChild(el("td", "num", String(x)));
    });
    tr.appendChild(el("td", "paths", c["paths-v1"].join(", ") || "–"));
    tr.appendChild(el("td", "evidence", c.evidence));
    return tr;
  }

  let table, apply, render;
  const filter = document.getElementById("filter");
  const show = document.getElementById("show");

  if (page === "fleet") {
    table = Table(document.getElementById("fleet"), {
      "id": function (r) { return r.d["instance-id"]; },
      "tokens": function (r) { return r.d["http-tokens"]; },
      "verdict": function (r) { return r.d.ready ? 1 : 0; },
      "v2": function (r) { return r.d.classes.v2 || 0; },
      "v1": function (r) { return r.d.classes.v1 || 0; },
      "v1-fallback": function (r) { return r.d.classes["v1-fallback"] || 0; },
      "v1-rejected": function (r) { return r.d.classes["v1-rejected"] || 0; },
      "last-v1": function (r) { return r.d["last-v1"] || ""; },
    }, "id", 1);
    apply = function () {
      const q = filter.value.trim().toLowerCase();
      const s = show.value;
      table.filter(function (r) {
        if (q && r.text.indexOf(q) < 0) return false;
        if (s === "ready") return r.d.ready;
        if (s === "not-ready") return !r.d.ready;
        if (s && s !== "all") return (r.d.classes[s] || 0) > 0;
        return true;
      });
    };
    render = function (v) {
      table.set(v.instances.map(function (d) { return { d: d, tr: fleetRow(d), text: fleetText(d) }; }));
      document.getElementById("window").textContent = "IMDSv1 use counts within " + v.window + ". " + v.instances.length + " instances.";
    };
    show.addEventListener("change", apply);
  } else if (page === "instance") {
    table = Table(document.getElementById("callers"), {
      "class": function (r) { return CLASSES.indexOf(r.d.class); },
      "address": function (r) { return r.d.address; },
      "via": function (r) { return r.d.via; },
      "sdk": function (r) { return sdk(r.d); },
      "user-agent": function (r) { return r.d["user-agent"]; },
      "first-seen": function (r) { return r.d["first-seen"]; },
      "last-seen": function (r) { return r.d["last-seen"]; },
      "last-v1": function (r) { return r.d["last-v1"] || ""; },
      "token-put": function (r) { return r.d.requests["token-put"]; },
      "v2": function (r) { return r.d.requests.v2; },
      "v1": function (r) { return r.d.requests.v1; },
      "v1-fallback": function (r) { return r.d.requests["v1-fallback"]; },
      "v1-rejected": function (r) { return r.d.requests["v1-rejected"]; },
      "invalid-token": function (r) { return r.d.requests["invalid-token"]; },
    }, "class", -1); // the worst class first
    apply = function () {
      const q = filter.value.trim().toLowerCase();
      table.filter(function (r) { return !q || r.text.indexOf(q) >= 0; });
    };
    const button = document.getElementById("enforce");
    button.addEventListener("click", function () { enforce(button.dataset.instance, button); });
    render = function (inst) {
      document.getElementById("tokens").textContent = inst["http-tokens"];
      const v = document.getElementById("verdict");
      v.className = "verdict " + (inst.ready ? "ready" : "not-ready");
      v.textContent = inst.verdict;
      button.hidden = inst["http-tokens"] === "required";
      table.set(inst.callers.map(function (c) {
        return { d: c, tr: callerRow(c), text: [c.class, c.address, c.via, sdk(c), c["user-agent"], c.evidence].join(" ").toLowerCase() };
      }));
      document.getElementById("window").textContent = "IMDSv1 use counts within " + inst.window + ".";
    };
  } else {
    return;
  }
  filter.addEventListener("input", apply);

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const resp = await fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      const ans = await resp.json();
      if (!resp.ok) {
        status.textContent = ans.error || "HTTP " + resp.status;
        status.className = "status error";
      } else {
        render(ans);
        status.textContent = "updated " + new Date().toLocaleTimeString();
        status.className = "status live";
        status.dataset.generated = ans.generated;
      }
    } catch (e) {
      status.textContent = "cannot reach the server: " + e;
      status.className = "status error";
    }
    timer = setTimeout(refresh, poll);
  }
  apply();
  refresh();
})();
