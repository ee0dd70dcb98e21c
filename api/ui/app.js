// ttc's web page: the jobs list, a form to ask, and one job followed live — its search tree as it
// grows, the KV footprint per depth, the spawn/join threads, auto's decision per wave, the usage.
// Plain browser JavaScript, no build step; every text from the service is set as text, never HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
const state = {
  key: localStorage.getItem("ttc-key") || "",
  nextBefore: null,
  strategies: [],
  stream: null,
  job: null, // { nodes: Map(id -> node), growth: [node counts after each depth], kv: [], waves: [] }
};

// --- talking to the API ---------------------------------------------------------------------------

function headers(json) {
  const result = json ? { "Content-Type": "application/json" } : {};
  if (state.key) result.Authorization = `Bearer ${state.key}`;
  return result;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(Boolean(options.body)) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message || `${path}: HTTP ${response.status}`);
  return body;
}

function showError(error) {
  const box = $("#error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

async function guarded(action) {
  try {
    showError(null);
    await action();
  } catch (error) {
    showError(error);
  }
}

// --- strategies, the form, the jobs list ----------------------------------------------------------

async function loadStrategies() {
  state.strategies = await api("/v1/strategies");
  const select = $("#strategy");
  select.replaceChildren(...state.strategies.map((s) => new Option(s.name, s.name)));
  select.value = "beam_search";
  describeParams();
}

function describeParams() {
  const chosen = state.strategies.find((s) => s.name === $("#strategy").value);
  const properties = chosen?.params_schema?.properties || {};
  $("#params-hint").textContent = Object.entries(properties)
    .map(([name, field]) => ("default" in field ? `${name}=${JSON.stringify(field.default)}` : name))
    .join(", ");
}

async function submit(event) {
  event.preventDefault();
  let params;
  try {
    params = JSON.parse($("#params").value || "{}");
  } catch (error) {
    throw new Error(`params must be JSON: ${error.message}`);
  }
  const budget = {};
  if ($("#max-tokens").value) budget.max_tokens = Number($("#max-tokens").value);
  if ($("#deadline").value) budget.deadline_s = Number($("#deadline").value);
  const body = { question: $("#question").value, strategy: $("#strategy").value, params, budget, wait: false };
  const job = await api("/v1/reason", { method: "POST", body: JSON.stringify(body) });
  openJob(job.job_id, body.question);
  await loadJobs();
}

async function loadJobs(more = false) {
  const query = new URLSearchParams({ limit: "20" });
  if (more && state.nextBefore !== null) query.set("before", String(state.nextBefore));
  const page = await api(`/v1/jobs?${query}`);
  const list = $("#jobs");
  if (!more) list.replaceChildren();
  for (const job of page.data) {
    const button = document.createElement("button");
    button.type = "button";
    const question = job.question.length > 80 ? `${job.question.slice(0, 79)}…` : job.question;
    button.textContent = `${job.status} · ${job.strategy} · ${question}`;
    button.addEventListener("click", () => openJob(job.job_id, job.question));
    const item = document.createElement("li");
    item.dataset.jobId = job.job_id;
    item.append(button);
    list.append(item);
  }
  state.nextBefore = page.next_before;
  $("#more").hidden = state.nextBefore === null;
}

// --- one job, followed live -------------------------------------------------------------------------

function openJob(jobId, question) {
  if (state.stream) state.stream.abort();
  state.job = { id: jobId, nodes: new Map(), root: null, chosen: new Set(), growth: [], kv: [], waves: [] };
  const panel = $("#job");
  panel.hidden = false;
  delete panel.dataset.done;
  $("#job-id").textContent = jobId;
  $("#job-question").textContent = question;
  $("#job-answer").textContent = "—";
  for (const id of ["#tree-panel", "#waves-panel", "#threads-panel"]) $(id).hidden = true;
  for (const id of ["#events", "#threads"]) $(id).replaceChildren();
  $("#waves tbody").replaceChildren();
  setStatus("queued");
  guarded(async () => {
    await follow(jobId);
    await finish(jobId);
  });
}

async function follow(jobId) {
  // EventSource cannot send an API key, so the stream is read with fetch
  const controller = new AbortController();
  state.stream = controller;
  const response = await fetch(`/v1/jobs/${jobId}/events`, { headers: headers(false), signal: controller.signal });
  if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
      if (data.length && state.job?.id === jobId) onEvent(JSON.parse(data.join("\n")));
    }
  }
}

function onEvent(event) {
  const line = document.createElement("li");
  line.textContent = `${event.type} ${JSON.stringify({ ...event, type: undefined, usage: undefined })}`.slice(0, 300);
  $("#events").append(line);
  if (event.usage) showUsage(event.usage);
  if (event.type === "started") setStatus("running");
  if (event.type === "depth") addDepth(event);
  if (event.type === "route") addWave(event);
  if (event.type === "result") setStatus(event.status);
}

async function finish(jobId) {
  const job = await api(`/v1/jobs/${jobId}`);
  if (state.job?.id !== jobId) return;
  setStatus(job.status);
  $("#job-answer").textContent = job.answer ?? "—";
  showUsage(job.usage);
  const trace = job.trace || {};
  if (trace.tree) settleTree(trace.tree, trace.chosen);
  if (trace.route) {
    $("#waves tbody").replaceChildren();
    trace.route.waves.forEach((wave, index) => addWave({ ...wave, wave: index + 1 }));
  }
  if (trace.threads) drawThreads(trace.threads);
  $("#job").dataset.done = "true";
  $("#job").dataset.nodes = String(state.job.nodes.size);
  await loadJobs();
}

function setStatus(status) {
  const badge = $("#job-status");
  badge.textContent = status;
  badge.className = `status ${status}`;
}

function showUsage(usage) {
  const rows = Object.entries(usage).filter(([, value]) => value !== null && value !== 0 && value !== "");
  $("#usage tbody").replaceChildren(
    ...rows.map(([name, value]) => {
      const row = document.createElement("tr");
      for (const text of [name, typeof value === "number" ? value.toLocaleString() : String(value)]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
}

// --- the search tree --------------------------------------------------------------------------------

function addDepth(event) {
  const { nodes } = state.job;
  for (const candidate of event.candidates || []) {
    const parent = nodes.get(candidate.parent);
    if (parent && parent.status === "live") parent.status = "expanded";
    nodes.set(candidate.id, { ...candidate, depth: event.depth });
  }
  if (event.kv_footprint_tokens !== null && event.kv_footprint_tokens !== undefined) state.job.kv.push(event.kv_footprint_tokens);
  state.job.growth.push(nodes.size);
  $("#job").dataset.growth = state.job.growth.join(",");
  drawTree();
  drawKv(state.job.kv);
}

function settleTree(tree, chosenId) {
  // the final record has every node's fate (pruned, finished) and the path the answer came from
  const nodes = new Map(tree.nodes.map((node) => [node.id, node]));
  state.job.nodes = nodes;
  state.job.chosen = new Set();
  for (let id = chosenId; nodes.has(id); id = nodes.get(id).parent) state.job.chosen.add(id);
  state.job.kv = tree.kv_footprint_per_depth || state.job.kv;
  drawTree();
  drawKv(state.job.kv);
}

function layout(nodes) {
  // a tidy tree by hand: leaves left to right in depth-first order, a parent over its children
  const children = new Map();
  const roots = [];
  for (const node of nodes.values()) {
    if (nodes.has(node.parent)) {
      if (!children.has(node.parent)) children.set(node.parent, []);
      children.get(node.parent).push(node.id);
    } else {
      roots.push(node.id);
    }
  }
  const position = new Map();
  let nextLeaf = 0;
  const place = (id, depth) => {
    const kids = children.get(id) || [];
    const xs = kids.map((kid) => place(kid, depth + 1));
    const x = xs.length ? (Math.min(...xs) + Math.max(...xs)) / 2 : nextLeaf++;
    position.set(id, { x, depth });
    return x;
  };
  const rootXs = roots.map((id) => place(id, 1));
  return { position, rootX: rootXs.length ? (Math.min(...rootXs) + Math.max(...rootXs)) / 2 : 0, roots, leaves: nextLeaf };
}

function drawTree() {
  $("#tree-panel").hidden = false;
  const { nodes, chosen } = state.job;
  const { position, rootX, roots, leaves } = layout(nodes);
  const dx = 46;
  const dy = 70;
  const depth = Math.max(1, ...[...position.values()].map((p) => p.depth));
  const svg = $("#tree");
  svg.setAttribute("width", String(Math.max(300, (leaves + 1) * dx)));
  svg.setAttribute("height", String((depth + 1) * dy + 10));
  const at = (p) => [(p.x + 1) * dx, p.depth * dy + 20];
  const root = { x: rootX, depth: 0 };
  const shapes = [];
  for (const node of nodes.values()) {
    const [x1, y1] = at(nodes.has(node.parent) ? position.get(node.parent) : root);
    const [x2, y2] = at(position.get(node.id));
    shapes.push(element("line", { x1, y1, x2, y2, class: chosen.has(node.id) ? "chosen" : "" }));
  }
  const [rx, ry] = at(root);
  shapes.push(element("circle", { cx: rx, cy: ry, r: 7, class: "root", "data-root": "true" }, "the question"));
  for (const node of nodes.values()) {
    const [cx, cy] = at(position.get(node.id));
    const score = typeof node.score === "number" ? node.score : null;
    const radius = 5 + 7 * Math.max(0, Math.min(1, score ?? 0));
    const tip = `${node.status}${score === null ? "" : ` · score ${score.toFixed(3)}`}\n${node.step || ""}`;
    const circle = element(
      "circle",
      { cx, cy, r: radius, class: `${node.status}${chosen.has(node.id) ? " chosen" : ""}`, "data-node-id": node.id },
      tip,
    );
    circle.addEventListener("click", () => {
      $("#node-detail").textContent = `${node.id} (${node.status}, depth ${node.depth}, score ${score ?? "—"})\n\n${node.step || ""}`;
    });
    shapes.push(circle);
    if (score !== null) {
      shapes.push(element("text", { x: cx, y: cy + radius + 11, "text-anchor": "middle" }, null, score.toFixed(2)));
    }
  }
  svg.replaceChildren(...shapes);
  svg.dataset.roots = String(roots.length);
}

function element(name, attributes, title = null, text = null) {
  const shape = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) if (value !== "") shape.setAttribute(key, String(value));
  if (title !== null) {
    const tooltip = document.createElementNS(SVG, "title");
    tooltip.textContent = title;
    shape.append(tooltip);
  }
  if (text !== null) shape.textContent = text;
  return shape;
}

function drawKv(values) {
  const svg = $("#kv");
  const width = 64;
  const height = 90;
  const top = Math.max(1, ...values);
  svg.setAttribute("width", String(Math.max(200, values.length * width + 20)));
  svg.setAttribute("height", String(height + 30));
  svg.replaceChildren(
    ...values.flatMap((value, index) => {
      const barHeight = (value / top) * height;
      const x = 10 + index * width;
      return [
        element("rect", { x, y: height - barHeight + 12, width: width - 8, height: barHeight }, `depth ${index + 1}: ${value} tokens`),
        element("text", { x, y: height + 26 }, null, `d${index + 1}: ${value}`),
      ];
    }),
  );
}

// --- auto's waves and spawn/join threads ------------------------------------------------------------

function addWave(wave) {
  $("#waves-panel").hidden = false;
  const row = document.createElement("tr");
  const cells = [wave.wave, wave.size, wave.leader ?? "—", `${wave.leader_votes} of ${wave.samples}`, wave.share, wave.action, wave.reason];
  for (const value of cells) {
    const cell = document.createElement("td");
    cell.textContent = String(value);
    row.append(cell);
  }
  $("#waves tbody").append(row);
}

function drawThreads(root) {
  $("#threads-panel").hidden = false;
  const rows = [];
  const end = Math.max(root.end_s || 0, 0.001);
  const visit = (thread, depth) => {
    const row = document.createElement("div");
    row.className = "thread";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = `${"  ".repeat(depth)}${thread.id} ${thread.status} · ${thread.tokens} tokens · ${thread.start_s}–${thread.end_s} s · ${thread.task || ""}`;
    label.title = thread.text || "";
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.left = `${(100 * thread.start_s) / end}%`;
    bar.style.width = `${Math.max(0.5, (100 * (thread.end_s - thread.start_s)) / end)}%`;
    track.append(bar);
    row.append(label, track);
    rows.push(row);
    for (const round of thread.rounds || []) for (const child of round) visit(child, depth + 1);
  };
  visit(root, 0);
  $("#threads").replaceChildren(...rows);
}

// --- wiring -----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#key").value = state.key;
  $("#key").addEventListener("change", () => {
    state.key = $("#key").value.trim();
    localStorage.setItem("ttc-key", state.key);
    guarded(async () => {
      await loadStrategies();
      await loadJobs();
    });
  });
  $("#strategy").addEventListener("change", describeParams);
  $("#ask").addEventListener("submit", (event) => guarded(() => submit(event)));
  $("#refresh").addEventListener("click", () => guarded(() => loadJobs()));
  $("#more").addEventListener("click", () => guarded(() => loadJobs(true)));
  guarded(async () => {
    await loadStrategies();
    await loadJobs();
  });
});
