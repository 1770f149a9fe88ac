// The kray dashboard page: reads the head's HTTP API (the same routes Ray's dashboard and SDK use) and
// redraws the open view every 2 seconds. Plain JavaScript, no build step, no external assets.
// Login: with a cluster token, the token (typed in, or given once as #token=... in the URL) is sent to
// POST /api/authenticate, which answers with an HttpOnly cookie; the page itself never keeps the token.
"use strict";

const POLL_MS = 2000;
const VIEWS = ["overview", "jobs", "actors", "tasks", "placement-groups", "nodes"];
const LIVE_JOB_STATES = new Set(["PENDING", "RUNNING"]);
let selectedJob = null;
let selectedActor = null;
let pollTimer = null;
let signedIn = false;

class AuthError extends Error {}

// ------------------------------------------------------------------ HTTP

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(await response.text());
  }
  if (!response.ok) {
    throw new Error(`${path}: HTTP ${response.status}: ${await response.text()}`);
  }
  return response.json();
}

// A text answer; a 404's reason (e.g. "nothing written yet") comes back as null and the reason.
async function apiText(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401 || response.status === 403) throw new AuthError(await response.text());
  if (response.status === 404) return [null, await response.text()];
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}: ${await response.text()}`);
  return [await response.text(), ""];
}

// Rows of a Ray state API answer (/api/v0/...).
async function stateRows(path) {
  const body = await api(path);
  return body.data.result.result;
}

// ------------------------------------------------------------------ DOM helpers (text only: no HTML from data)

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function stateCell(value) {
  return el("td", { class: `state state-${value}` }, value);
}

// A table of `rows`; each column is [heading, row => cell text or a <td>]; rows get data-id from `idOf`.
function table(id, columns, rows, idOf) {
  if (!rows.length) return el("p", { id, class: "empty" }, "none");
  const head = el("tr", {}, ...columns.map(([heading]) => el("th", {}, heading)));
  const body = rows.map((row) => el("tr", { "data-id": idOf ? idOf(row) : null },
    ...columns.map(([, cell]) => {
      const value = cell(row);
      return value instanceof HTMLTableCellElement ? value : el("td", {}, value ?? "");
    })));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body));
}

// Redraw a container from `data` only when the data changed (buttons stay put between polls).
const drawn = new Map();
function render(containerId, data, build) {
  const key = JSON.stringify(data);
  if (drawn.get(containerId) === key) return;
  drawn.set(containerId, key);
  document.getElementById(containerId).replaceChildren(build(data));
}

function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function time(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

function shape(resources) {
  return Object.entries(resources || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
}

// ------------------------------------------------------------------ views

function card(id, label, value, fraction) {
  const bar = fraction === undefined ? null
    : el("div", { class: "bar" }, el("div", { style: `width: ${Math.min(100, Math.round(fraction * 100))}%` }));
  return el("div", { class: "card", id }, el("div", { class: "label" }, label), el("div", { class: "value" }, value), bar);
}

async function showOverview() {
  const [state, detail] = await Promise.all([api("/api/cluster/demand"), api("/api/dashboard/nodes")]);
  const alive = state.nodes.filter((n) => n.alive);
  const sum = (key, name) => alive.reduce((total, n) => total + (n[key][name] || 0), 0);
  const cards = [card("overview-nodes", "Nodes", `${alive.length} alive, ${state.nodes.length - alive.length} dead`)];
  for (const [name, label, format] of [["CPU", "CPU", (x) => x], ["GPU", "GPU", (x) => x],
    ["memory", "Memory (logical)", bytes]]) {
    const total = sum("resources_total", name);
    const used = total - sum("resources_available", name);
    cards.push(card(`overview-${name}`, label, `${format(used)} / ${format(total)} used`, total ? used / total : 0));
  }
  const stores = detail.nodes.map((n) => n.object_store).filter((s) => s);
  const storeUsed = stores.reduce((t, s) => t + s.used, 0);
  const storeTotal = stores.reduce((t, s) => t + s.capacity, 0);
  cards.push(card("overview-object-store", "Object store", `${bytes(storeUsed)} / ${bytes(storeTotal)} used`,
    storeTotal ? storeUsed / storeTotal : 0));
  document.getElementById("overview-cards").replaceChildren(...cards);

  const counts = new Map();
  for (const s of state.demand || []) {
    const key = shape(s);
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const demand = [...counts].map(([resources, count]) => ({ resources, count }));
  render("overview-demand", demand, (rows) => table("demand-table", [["Resource shape", (d) => d.resources], ["Waiting", (d) => d.count]],
    rows));
}

async function stopJob(id) {
  await api(`/api/jobs/${encodeURIComponent(id)}/stop`, { method: "POST" });
  await refresh();
}

async function showJobs() {
  const jobs = await api("/api/jobs/");
  jobs.sort((a, b) => (b.start_time || 0) - (a.start_time || 0));
  render("jobs-table", jobs, (rows) => table("jobs", [
    ["Submission id", (j) => j.submission_id || ""],
    ["Job id", (j) => j.job_id || ""],
    ["Type", (j) => j.type],
    ["Status", (j) => stateCell(j.status)],
    ["Entrypoint", (j) => el("td", { class: "mono" }, j.entrypoint || "")],
    ["Message", (j) => j.message || ""],
    ["Started", (j) => time(j.start_time)],
    ["Ended", (j) => time(j.end_time)],
    ["", (j) => {
      if (j.type !== "SUBMISSION") return el("td", {});
      const logs = el("button", { class: "logs", onclick: () => { selectedJob = j.submission_id; refresh(); } }, "Logs");
      const stop = LIVE_JOB_STATES.has(j.status)
        ? el("button", { class: "stop", onclick: () => stopJob(j.submission_id).catch(showError) }, "Stop") : null;
      return el("td", {}, logs, " ", stop);
    }],
  ], rows, (j) => j.submission_id || j.job_id));
  const detail = document.getElementById("job-detail");
  detail.hidden = !selectedJob;
  if (selectedJob) {
    const { logs } = await api(`/api/jobs/${encodeURIComponent(selectedJob)}/logs`);
    document.getElementById("job-logs-id").textContent = selectedJob;
    document.getElementById("job-logs").textContent = logs;
  }
}

async function showActors() {
  const actors = await stateRows("/api/v0/actors?detail=true&limit=10000");
  render("actors-table", actors, (rows) => table("actors", [
    ["Actor id", (a) => el("td", { class: "mono" }, a.actor_id)],
    ["Class", (a) => a.class_name],
    ["Name", (a) => a.name],
    ["State", (a) => stateCell(a.state)],
    ["Restarts", (a) => a.num_restarts],
    ["Node", (a) => el("td", { class: "mono" }, shortId(a.node_id))],
    ["Pid", (a) => a.pid || ""],
    ["Job", (a) => a.job_id],
    ["Death cause", (a) => {
      const context = a.death_cause && a.death_cause.actor_died_error_context;
      return context ? context.error_message || "" : "";
    }],
    ["", (a) => el("td", {},
      el("button", { class: "logs", onclick: () => { selectedActor = a.actor_id; refresh(); } }, "Logs"))],
  ], rows, (a) => a.actor_id));
  const detail = document.getElementById("actor-detail");
  detail.hidden = !selectedActor;
  if (selectedActor) {
    const query = `/api/v0/logs/file?actor_id=${encodeURIComponent(selectedActor)}&lines=1000`;
    const [[out, outMissing], [err]] = await Promise.all([apiText(query), apiText(`${query}&suffix=err`)]);
    document.getElementById("actor-logs-id").textContent = selectedActor;
    document.getElementById("actor-logs").textContent = (out ?? `(${outMissing})`)
      + (err ? `\n--- stderr ---\n${err}` : "");
  }
}

async function showTasks() {
  const [summary, failed] = await Promise.all([
    api("/api/v0/tasks/summarize"),
    stateRows("/api/v0/tasks?detail=true&limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=FAILED"),
  ]);
  const groups = Object.values(summary.data.result.result.cluster.summary);
  render("tasks-summary", groups, (rows) => table("task-summary", [
    ["Function or class", (g) => g.func_or_class_name],
    ["Type", (g) => g.type],
    ["States", (g) => Object.entries(g.state_counts).map(([s, n]) => `${s}: ${n}`).join(", ")],
  ], rows, (g) => g.func_or_class_name));
  render("tasks-failed", failed.slice().reverse(), (rows) => table("failed-tasks", [
    ["Task id", (t) => el("td", { class: "mono" }, t.task_id)],
    ["Name", (t) => t.name],
    ["Type", (t) => t.type],
    ["Error type", (t) => t.error_type],
    ["Node", (t) => el("td", { class: "mono" }, shortId(t.node_id))],
    ["Worker pid", (t) => t.worker_pid || ""],
    ["Ended", (t) => time(t.end_time_ms)],
    ["Error", (t) => el("td", {}, el("pre", { class: "error-message" }, t.error_message || ""))],
  ], rows, (t) => `${t.task_id}:${t.attempt_number}`));
}

async function showPlacementGroups() {
  const groups = await stateRows("/api/v0/placement_groups?detail=true&limit=10000");
  render("placement-groups-table", groups, (rows) => table("placement-groups", [
    ["Id", (g) => el("td", { class: "mono" }, g.placement_group_id)],
    ["Name", (g) => g.name],
    ["State", (g) => stateCell(g.state)],
    ["Creator job", (g) => g.creator_job_id],
    ["Detached", (g) => (g.is_detached ? "yes" : "no")],
    ["Bundles", (g) => (g.bundles || []).map((b) =>
      `{${shape(b.unit_resources)}}${b.node_id ? " on " + shortId(b.node_id) : ""}`).join("; ")],
  ], rows, (g) => g.placement_group_id));
}

async function showNodes() {
  const { nodes } = await api("/api/dashboard/nodes");
  const used = (n, name) => (n.resources_total[name] || 0) - (n.resources_available[name] || 0);
  render("nodes-table", nodes, (rows) => table("nodes", [
    ["Node id", (n) => el("td", { class: "mono" }, n.node_id)],
    ["IP", (n) => n.ip + (n.is_head ? " (head)" : "")],
    ["State", (n) => stateCell(n.state)],
    ["CPU (logical)", (n) => `${used(n, "CPU")} / ${n.resources_total.CPU || 0}`],
    ["GPU (logical)", (n) => `${used(n, "GPU")} / ${n.resources_total.GPU || 0}`],
    ["Host CPU", (n) => (n.host ? `${n.host.cpu_percent.toFixed(0)}% of ${n.host.num_cpus} cores` : "")],
    ["Host memory", (n) => (n.host ? `${bytes(n.host.memory_used)} / ${bytes(n.host.memory_total)}` : "")],
    ["Object store", (n) => (n.object_store ? `${bytes(n.object_store.used)} / ${bytes(n.object_store.capacity)}` : "")],
    ["Workers", (n) => n.workers.length],
  ], rows, (n) => n.node_id));
  const sections = nodes.filter((n) => n.state === "ALIVE").map((n) => el("div", { class: "node-workers", "data-node": n.node_id },
    el("h3", {}, `Worker processes of ${n.ip} (${shortId(n.node_id)}), raylet pid ${n.raylet_pid ?? ""}`),
    table(`workers-${n.node_id}`, [
      ["Pid", (w) => w.pid],
      ["Worker id", (w) => el("td", { class: "mono" }, shortId(w.worker_id))],
      ["State", (w) => stateCell(w.state)],
      ["Name", (w) => w.name || ""],
      ["Job", (w) => w.job_id ?? ""],
      ["CPU", (w) => (w.cpu_percent === null || w.cpu_percent === undefined ? "" : `${w.cpu_percent.toFixed(0)}%`)],
      ["Memory (RSS)", (w) => bytes(w.memory_rss)],
      ["Started", (w) => time(w.start_time_ms)],
    ], n.workers, (w) => String(w.pid))));
  document.getElementById("nodes-workers").replaceChildren(...sections);
}

const SHOW = {
  overview: showOverview, jobs: showJobs, actors: showActors, tasks: showTasks,
  "placement-groups": showPlacementGroups, nodes: showNodes,
};

// ------------------------------------------------------------------ navigation, polling, login

function currentView() {
  const name = location.hash.replace(/^#/, "");
  return VIEWS.includes(name) ? name : "overview";
}

function showError(error) {
  if (error instanceof AuthError) {
    showLogin("The session's token was refused: sign in again.");
    return;
  }
  const status = document.getElementById("status");
  status.textContent = `error: ${error.message}`;
  status.className = "error";
}

async function refresh() {
  if (!signedIn) return;
  const view = currentView();
  for (const name of VIEWS) {
    document.getElementById(`view-${name}`).hidden = name !== view;
    document.getElementById(`nav-${name}`).classList.toggle("active", name === view);
  }
  try {
    await SHOW[view]();
    const status = document.getElementById("status");
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "";
  } catch (error) {
    showError(error);
  }
}

async function poll() {
  clearTimeout(pollTimer);
  if (!document.hidden) await refresh();  // a tab in the background asks nothing
  if (signedIn) pollTimer = setTimeout(poll, POLL_MS);
}

function showLogin(message) {
  signedIn = false;
  clearTimeout(pollTimer);
  document.getElementById("views").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("status").textContent = "signed out";
}

function start() {
  signedIn = true;
  document.getElementById("login").hidden = true;
  document.getElementById("views").hidden = false;
  poll();
}

async function authenticate(token) {
  const response = await fetch("/api/authenticate", {
    method: "POST", credentials: "same-origin", headers: { Authorization: `Bearer ${token.trim()}` },
  });
  if (!response.ok) throw new AuthError(await response.text());
}

async function signIn(token) {
  try {
    await authenticate(token);
    start();
  } catch (error) {
    showLogin(error instanceof AuthError ? "That token was refused." : `Sign-in failed: ${error.message}`);
  }
}

// A token given once as #token=... (the fragment never reaches a server or its logs): sign in with it and
// take it out of the address bar and the history.
function takeTokenFromUrl() {
  const given = location.hash.match(/^#token=([^&]+)/);
  if (!given) return false;
  history.replaceState(null, "", location.pathname + "#overview");
  signIn(decodeURIComponent(given[1]));
  return true;
}

async function main() {
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(document.getElementById("token-input").value);
  });
  document.addEventListener("visibilitychange", () => { if (signedIn && !document.hidden) poll(); });
  window.addEventListener("hashchange", () => {
    if (!takeTokenFromUrl() && signedIn) poll();
  });
  if (takeTokenFromUrl()) return;
  const { authentication_mode: mode } = await api("/api/authentication_mode");
  if (mode !== "token") { start(); return; }
  try {
    await api("/api/version");  // a cookie from an earlier sign-in
    start();
  } catch (error) {
    showLogin(error instanceof AuthError ? "" : `The head does not answer: ${error.message}`);
  }
}

main().catch(showError);
