// posrecon console: the exception queue, a case (timeline, actions), a batch, the aging chart.
// Plain JS, no build. Every text is set with textContent (never parsed as HTML); every API call carries the
// token from sessionStorage as a bearer token. Everything shown comes from masked outputs (no card data).
"use strict";

const TOKEN_KEY = "posrecon.token";
const SEVERITIES = ["CRITICAL", "WARNING", "INFO"];
const SEVERITY_COLOURS = { CRITICAL: "#d9480f", WARNING: "#f59f00", INFO: "#4c6ef5" };
const CLOSED = new Set(["RESOLVED", "AUTO_RESOLVED", "IGNORED"]);
const ACTIONS = [
  ["ACKNOWLEDGE", "Acknowledge"], ["ASSIGN", "Assign"], ["COMMENT", "Comment"],
  ["RESOLVE", "Resolve"], ["IGNORE", "Ignore"], ["REOPEN", "Reopen"],
];
const view = document.getElementById("view");
const queueState = { state: "OPEN,ACKNOWLEDGED", kind: "", severity: "", merchant: "", batch: "", min_age_h: "",
  sort: "age", offset: 0, limit: 50 };

// --- small helpers ------------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function time(ms) {
  return ms === null || ms === undefined ? "" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function age(ms) {
  const minutes = Math.floor(ms / 60000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function say(text, error) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = error ? "error" : "";
  box.hidden = !text;
}

function sevBadge(severity) { return el("span", { class: `sev sev-${severity}` }, severity); }

class ApiError extends Error {
  constructor(status, body) { super(body && body.error ? body.error : `HTTP ${status}`); this.status = status; }
}

async function api(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Authorization: `Bearer ${token || ""}` };
  if (options && options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...(options || {}), headers });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/login";
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// --- sign in ------------------------------------------------------------------------------------------------

function showLogin() {
  document.getElementById("nav").hidden = true;
  view.replaceChildren(document.getElementById("login-template").content.cloneNode(true));
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    try {
      await whoami();
      say("");
      location.hash = "#/queue";
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      say(err.status === 401 ? "That token was not accepted." : `Sign-in failed: ${err.message}`, true);
    }
  });
}

async function whoami() {
  const me = await api("/whoami");
  document.getElementById("whoami").textContent = `${me.name} (${me.role})`;
  document.getElementById("nav").hidden = false;
  return me;
}

// --- the queue ----------------------------------------------------------------------------------------------

function queueQuery() {
  const q = new URLSearchParams();
  for (const name of ["state", "kind", "severity", "merchant", "batch", "sort"]) {
    if (queueState[name]) q.set(name, queueState[name]);
  }
  if (queueState.min_age_h) q.set("min_age_ms", String(Math.round(Number(queueState.min_age_h) * 3600000)));
  q.set("offset", String(queueState.offset));
  q.set("limit", String(queueState.limit));
  return q.toString();
}

function select(id, label, options, value) {
  return el("label", {}, label, el("select", { id }, options.map(([v, text]) =>
    el("option", { value: v, selected: v === value ? "selected" : null }, text))));
}

function filtersForm(byKind) {
  const kinds = Object.keys(byKind).sort();
  if (queueState.kind && !kinds.includes(queueState.kind)) kinds.push(queueState.kind);
  const form = el("form", { class: "filters", id: "filters" },
    select("f-state", "State", [["OPEN,ACKNOWLEDGED", "not closed"], ["", "any"], ["OPEN", "OPEN"],
      ["ACKNOWLEDGED", "ACKNOWLEDGED"], ["RESOLVED", "RESOLVED"], ["AUTO_RESOLVED", "AUTO_RESOLVED"],
      ["IGNORED", "IGNORED"]], queueState.state),
    select("f-severity", "Severity", [["", "any"], ...SEVERITIES.map((s) => [s, s])], queueState.severity),
    el("label", {}, "Kind", el("input", { id: "f-kind", value: queueState.kind, placeholder: "any", size: 20 })),
    el("label", {}, "Merchant", el("input", { id: "f-merchant", value: queueState.merchant, size: 12 })),
    el("label", {}, "Batch", el("input", { id: "f-batch", value: queueState.batch, size: 12 })),
    el("label", {}, "Older than (h)", el("input", { id: "f-age", value: queueState.min_age_h, size: 5 })),
    select("f-sort", "Sort", [["age", "oldest first"], ["severity", "severity"], ["newest", "newest first"],
      ["updated", "recently updated"]], queueState.sort),
    el("button", { id: "f-apply" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(queueState, {
      state: form.querySelector("#f-state").value, severity: form.querySelector("#f-severity").value,
      kind: form.querySelector("#f-kind").value.trim().toUpperCase(),
      merchant: form.querySelector("#f-merchant").value.trim(), batch: form.querySelector("#f-batch").value.trim(),
      min_age_h: form.querySelector("#f-age").value.trim(), sort: form.querySelector("#f-sort").value, offset: 0,
    });
    showQueue();
  });
  return form;
}

function sortHeader(label, sort) {
  return el("th", { class: "sortable", title: `sort by ${label.toLowerCase()}`, on: { click: () => {
    queueState.sort = sort; queueState.offset = 0; showQueue(); } } },
    label + (queueState.sort === sort ? " ▾" : ""));
}

async function showQueue() {
  const page = await api(`/cases?${queueQuery()}`);
  const chips = Object.entries(page.by_kind).map(([kind, n]) => el("button", {
    type: "button", class: `chip${queueState.kind === kind ? " on" : ""}`, "data-kind": kind,
    on: { click: () => { queueState.kind = queueState.kind === kind ? "" : kind; queueState.offset = 0; showQueue(); } },
  }, `${kind} ${n}`));
  const rows = page.items.map((c) => el("tr", { class: CLOSED.has(c.state) ? "closed" : null, "data-alert": c.alert_id },
    el("td", {}, sevBadge(c.severity)), el("td", {}, c.kind),
    el("td", {}, el("a", { href: `#/case/${encodeURIComponent(c.alert_id)}` }, c.alert_id)),
    el("td", {}, c.order_id || (c.batch_id ? `batch ${c.batch_id}` : "")), el("td", {}, c.merchant_id || ""),
    el("td", { class: "state" }, c.state), el("td", {}, c.assignee || ""),
    el("td", { title: time(c.opened_at) }, age(c.age_ms))));
  const last = Math.min(page.offset + page.limit, page.total);
  view.replaceChildren(
    el("h1", {}, "Exception queue"),
    filtersForm(page.by_kind),
    el("div", { class: "counts", id: "counts" }, el("span", { class: "muted" }, `${page.total} cases:`), chips),
    el("table", { id: "queue" },
      el("thead", {}, el("tr", {}, sortHeader("Severity", "severity"), el("th", {}, "Kind"), el("th", {}, "Alert"),
        el("th", {}, "Order / batch"), el("th", {}, "Merchant"), el("th", {}, "State"), el("th", {}, "Assignee"),
        sortHeader("Age", "age"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No cases.")))),
    el("div", { class: "pager" },
      el("button", { type: "button", class: "secondary", disabled: page.offset === 0 ? "disabled" : null,
        on: { click: () => { queueState.offset = Math.max(0, page.offset - page.limit); showQueue(); } } }, "Previous"),
      el("span", {}, page.total ? `${page.offset + 1}–${last} of ${page.total}` : ""),
      el("button", { type: "button", class: "secondary", disabled: last >= page.total ? "disabled" : null,
        on: { click: () => { queueState.offset = page.offset + page.limit; showQueue(); } } }, "Next")));
}

// --- a case -------------------------------------------------------------------------------------------------

function timelineRows(detail) {
  const rows = [];
  const order = detail.order && detail.order.status === 200 ? detail.order.body : null;
  if (order) {
    for (const item of order.timeline) {
      const extra = ["amount_minor", "currency", "terminal_id", "event_id", "notice_id"]
        .filter((k) => item[k] !== undefined && item[k] !== null).map((k) => `${k}=${item[k]}`).join(" ");
      rows.push({ at: item.at, source: item.notice_id ? "notice" : "event", what: item.what, detail: extra });
    }
    if (order.decision) {
      const d = order.decision;
      rows.push({ at: d.settled_at || d.approved_at, source: "decision", what: d.outcome,
        detail: `revision ${d.revision}; approved ${d.approved_amount_minor ?? "-"} settled ${d.settled_amount_minor ?? "-"} ${d.currency || ""}` });
    }
    for (const kind of order.alerts_fired) rows.push({ at: null, source: "alert", what: kind, detail: "fired on this order" });
  }
  for (const entry of detail.case.history) {
    const parts = [entry.note, entry.assignee ? `assignee ${entry.assignee}` : null,
      entry.accepted ? null : `rejected: ${entry.reason}`].filter(Boolean);
    rows.push({ at: entry.at, source: entry.action === "OPEN" || entry.action === "AUTO_RESOLVE" ? "alert" : "action",
      what: `${entry.action} by ${entry.actor}`, detail: parts.join(" · "), rejected: !entry.accepted });
  }
  rows.sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity));
  return rows;
}

function actionForm(c) {
  const note = el("textarea", { id: "a-note", placeholder: "note (needed to comment or ignore)" });
  const assignee = el("input", { id: "a-assignee", placeholder: "assignee", value: c.assignee || "" });
  const buttons = ACTIONS.map(([action, label]) => el("button", { type: "button", id: `act-${action.toLowerCase()}`,
    "data-action": action, on: { click: () => act(c, action, note.value, assignee.value) } }, label));
  return el("div", { class: "actions" }, el("label", {}, "Note", note), el("label", {}, "Assignee", assignee), buttons);
}

async function act(c, action, note, assignee) {
  const body = { action, note: note.trim() || null, assignee: action === "ASSIGN" ? assignee.trim() || null : null };
  try {
    const sent = await api(`/cases/${encodeURIComponent(c.alert_id)}/actions`, { method: "POST", body: JSON.stringify(body) });
    say(`${action} sent (action ${sent.action_id.slice(0, 8)}); waiting for the case to record it…`);
    for (let i = 0; i < 60; i++) {  // the stage applies it in its next transaction: poll until it is on the case
      await new Promise((resolve) => setTimeout(resolve, i < 20 ? 250 : 1000));
      const detail = await api(`/cases/${encodeURIComponent(c.alert_id)}`);
      const entry = detail.case.history.find((e) => e.action_id === sent.action_id);
      if (entry) {
        say(entry.accepted ? `${action} recorded: the case is ${detail.case.state}.` : `${action} rejected: ${entry.reason}`, !entry.accepted);
        return renderCase(detail);
      }
    }
    say(`${action} was accepted by Kafka but is not on the case yet; reload in a moment.`, true);
  } catch (err) {
    if (err.status === 403) say(`Not allowed: your token may only read (an operator token is needed to ${action.toLowerCase()}).`, true);
    else say(`${action} refused: ${err.message}`, true);
  }
}

function renderCase(detail) {
  const c = detail.case;
  const fields = [["Alert", c.alert_id], ["Kind", c.kind], ["Severity", sevBadge(c.severity)], ["State", c.state],
    ["Assignee", c.assignee || "—"], ["Order", c.order_id || "—"], ["Merchant", c.merchant_id || "—"],
    ["Batch", c.batch_id ? el("a", { href: `#/batch/${encodeURIComponent(c.batch_id)}` }, c.batch_id) : "—"],
    ["Opened", `${time(c.opened_at)} (${age(detail.age_ms)} ago)`], ["Updated", time(c.updated_at)],
    ["Version", c.version], ["Last rejection", c.last_rejection || "—"]];
  const orderNote = detail.order === undefined ? "No order on this case." : detail.order === null ?
    "The worker's API is not configured (--worker-url): case history only." :
    detail.order.status === 200 ? null : `Order timeline unavailable: ${detail.order.body.error || detail.order.status}`;
  const rows = timelineRows(detail).map((r) => el("tr", { class: r.rejected ? "rejected" : null },
    el("td", {}, time(r.at) || "—"), el("td", { class: "source" }, r.source), el("td", {}, r.what), el("td", {}, r.detail)));
  view.replaceChildren(...[
    el("p", {}, el("a", { href: "#/queue" }, "← queue")),
    el("h1", {}, `Case ${c.alert_id}`),
    el("dl", { class: "fields", id: "case-fields" }, fields.map(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])),
    el("h2", {}, "Act"), actionForm(c),
    el("h2", {}, "Timeline"), orderNote ? el("p", { class: "muted" }, orderNote) : null,
    el("table", { id: "timeline" }, el("thead", {}, el("tr", {}, el("th", {}, "Time"), el("th", {}, "Source"),
      el("th", {}, "What"), el("th", {}, "Detail"))), el("tbody", {}, rows))].filter(Boolean));
}

async function showCase(alertId) { renderCase(await api(`/cases/${encodeURIComponent(alertId)}`)); }

// --- a batch ------------------------------------------------------------------------------------------------

async function showBatch(batchId) {
  const detail = await api(`/batches/${encodeURIComponent(batchId)}?state=`);
  const worker = detail.worker;
  const summary = worker === null ? el("p", { class: "muted" }, "The worker's API is not configured (--worker-url).") :
    worker.status !== 200 ? el("p", { class: "muted" }, `Batch not known to the worker: ${worker.body.error || worker.status}`) :
    el("dl", { class: "fields" }, Object.entries(worker.body).filter(([, v]) => typeof v !== "object" || v === null)
      .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v === null ? "—" : String(v))]));
  const rows = detail.cases.items.map((c) => el("tr", {}, el("td", {}, sevBadge(c.severity)), el("td", {}, c.kind),
    el("td", {}, el("a", { href: `#/case/${encodeURIComponent(c.alert_id)}` }, c.alert_id)), el("td", {}, c.state),
    el("td", {}, age(c.age_ms))));
  view.replaceChildren(el("h1", {}, `Batch ${batchId}`), summary, el("h2", {}, `Cases (${detail.cases.total})`),
    el("table", { id: "batch-cases" }, el("thead", {}, el("tr", {}, el("th", {}, "Severity"), el("th", {}, "Kind"),
      el("th", {}, "Alert"), el("th", {}, "State"), el("th", {}, "Age"))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No cases for this batch.")))));
}

// --- the aging chart (inline SVG, stacked by severity) ------------------------------------------------------

async function showAging() {
  const aging = await api("/aging");
  const width = 640, height = 280, left = 50, bottom = 30, top = 26;
  const max = Math.max(1, ...aging.buckets.map((b) => b.count));
  const band = (width - left) / aging.buckets.length;
  const scale = (n) => (n / max) * (height - bottom - top);
  const chart = svg("svg", { class: "aging", id: "aging-chart", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": "open cases by age" });
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#8891a0" }));
  chart.append(svg("text", { x: left - 8, y: top + 4, "text-anchor": "end" }, max));
  chart.append(svg("text", { x: left - 8, y: height - bottom, "text-anchor": "end" }, 0));
  aging.buckets.forEach((b, i) => {
    let y = height - bottom;
    const x = left + i * band + band * 0.2;
    for (const sev of SEVERITIES) {
      const h = scale(b.by_severity[sev] || 0);
      if (h > 0) {
        y -= h;
        chart.append(svg("rect", { x, y, width: band * 0.6, height: h, fill: SEVERITY_COLOURS[sev] },
          svg("title", {}, `${b.bucket}: ${b.by_severity[sev]} ${sev}`)));
      }
    }
    chart.append(svg("text", { x: x + band * 0.3, y: y - 4, "text-anchor": "middle" }, b.count));
    chart.append(svg("text", { x: x + band * 0.3, y: height - bottom + 16, "text-anchor": "middle" }, b.bucket));
  });
  const legend = el("div", { class: "legend" }, SEVERITIES.map((s) => el("span", {}, el("span", { class: `swatch swatch-${s}` }), s)));
  view.replaceChildren(el("h1", {}, `Aging: ${aging.not_closed} cases not closed`), legend, chart,
    el("p", { class: "muted" }, `Age = now − the opening alert's event time; as of ${time(aging.now)}.`));
}

// --- routing ------------------------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/queue";
  if (!sessionStorage.getItem(TOKEN_KEY) || hash === "#/login") return showLogin();
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  try {
    if (document.getElementById("nav").hidden) await whoami();
    const [, page, arg] = hash.split("/");
    if (page === "case" && arg) await showCase(decodeURIComponent(arg));
    else if (page === "batch" && arg) await showBatch(decodeURIComponent(arg));
    else if (page === "aging") await showAging();
    else await showQueue();
  } catch (err) {
    if (err.status !== 401) say(err.message, true);
  }
}

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  say("");
  location.hash = "#/login";
});
document.getElementById("batch-jump").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = document.getElementById("batch-id").value.trim();
  if (id) location.hash = `#/batch/${encodeURIComponent(id)}`;
});
window.addEventListener("hashchange", () => { say(""); route(); });
route();
