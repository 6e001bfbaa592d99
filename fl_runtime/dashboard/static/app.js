// fedge dashboard: loads /api/rounds, /api/nodes, /api/health and /api/anomalies once,
// then follows /api/events (server-sent events) so new rounds and alerts appear without
// a page reload.
"use strict";

const KEEP_ROUNDS = 1000;     // rounds held for the chart
const HEATMAP_ROUNDS = 200;   // newest rounds in the participation heatmap
const TABLE_ROUNDS = 50;      // newest rounds in the round-details table
const COLOURS = { ok: "#2e9e5b", bad: "#d6453d", absent: "#e4e6ea" };
const TABLE_ALERTS = 50;      // newest alert changes in the alerts table
const SPARK = { w: 180, h: 34 };

const view = { rounds: [], nodes: null, health: null, anomalies: null, lastSeq: -1,
               chart: null, chartKey: "" };
let source = null;

// ---- small DOM helpers (text only: no HTML from the server is ever parsed) ----
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
const fmt = (x, d = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const int = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en"));
function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");
const natural = (a, b) => a.localeCompare(b, "en", { numeric: true });
const badge = (status) => el("span", { class: `status ${status}` }, status);

async function getJSON(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// ---- data flow ----
async function load() {
  const [rounds, nodes, health, anomalies] = await Promise.all([
    getJSON(`api/rounds?limit=${KEEP_ROUNDS}`), getJSON("api/nodes"), getJSON("api/health"),
    getJSON(`api/anomalies?alerts=${TABLE_ALERTS}`)]);
  view.rounds = rounds.rounds;
  view.lastSeq = rounds.latest_seq ?? -1;
  view.nodes = nodes;
  view.health = health;
  view.anomalies = anomalies;
  renderRounds();
  renderStatus();
  renderAnomalies();
  connect();
}

function connect() {
  if (source) source.close();
  source = new EventSource(`api/events?after=${view.lastSeq}`);
  const live = document.getElementById("live");
  source.onopen = () => { live.textContent = "live"; live.className = "pill ok"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "pill warn"; };
  source.addEventListener("rounds", (event) => {
    const fresh = JSON.parse(event.data).rounds.filter((r) => r.seq > view.lastSeq);
    if (!fresh.length) return;
    view.rounds = view.rounds.concat(fresh).slice(-KEEP_ROUNDS);
    view.lastSeq = fresh[fresh.length - 1].seq;
    renderRounds();
  });
  source.addEventListener("status", (event) => {
    const status = JSON.parse(event.data);
    view.nodes = status.nodes;
    view.health = status.health;
    renderStatus();
  });
  source.addEventListener("anomalies", (event) => {
    view.anomalies = JSON.parse(event.data);
    renderAnomalies();
  });
  source.addEventListener("reset", () => {
    source.close();
    view.rounds = [];
    view.lastSeq = -1;
    load().catch(showError);
  });
}

function showError(error) {
  const live = document.getElementById("live");
  live.textContent = `error: ${error.message}`;
  live.className = "pill bad";
  setTimeout(() => load().catch(showError), 5000);
}

function nodeIds() {
  const ids = new Set((view.nodes ? view.nodes.nodes : []).map((n) => n.node_id));
  for (const r of view.rounds) {
    for (const p of r.participants) ids.add(p.node_id);
    for (const d of r.discarded) ids.add(d.node_id);
  }
  return [...ids].sort(natural);
}

function renderRounds() {
  const latest = view.rounds[view.rounds.length - 1];
  const badgeEl = document.getElementById("latest-round");
  badgeEl.textContent = latest ? `round ${latest.round}` : "no round yet";
  badgeEl.dataset.seq = latest ? latest.seq : "";
  renderChart();
  renderHeatmap();
  renderRoundTable();
}

function renderStatus() {
  renderHealth();
  renderNodeTable();
  renderHeatmap();  // the node list can grow without a new round
}

// ---- convergence chart (uPlot) ----
function xValues(rounds) {
  const increasing = rounds.every((r, i) => i === 0 || r.round > rounds[i - 1].round);
  return { xs: rounds.map((r) => (increasing ? r.round : r.seq + 1)),
           label: increasing ? "round" : "record (round counter restarted)" };
}

function renderChart() {
  const box = document.getElementById("chart-convergence");
  const rounds = view.rounds;
  const ids = nodeIds();
  const { xs, label } = xValues(rounds);
  const data = [xs, rounds.map((r) => r.global_loss), rounds.map((r) => r.global_f1)];
  const losses = rounds.map((r) => new Map(r.participants.map((p) => [p.node_id, p.local_loss])));
  for (const id of ids) data.push(losses.map((m) => m.get(id) ?? null));
  const withLoss = data.slice(3).filter((col) => col.some((v) => v !== null)).length;
  document.getElementById("chart-note").textContent =
    "Thick lines: the global model's federated evaluation. " + (withLoss
      ? `Thin grey lines: the local training loss of each of ${withLoss} node(s).`
      : "This log carries no local losses.");
  const key = `${ids.join(",")}|${label}`;
  if (view.chart && view.chartKey === key) {
    view.chart.setData(data);
    return;
  }
  if (view.chart) view.chart.destroy();
  const series = [
    { label },
    { label: "global loss", stroke: "#1f4e9c", width: 2.5, scale: "loss", value: (u, v) => fmt(v) },
    { label: "global F1", stroke: "#e08a1e", width: 2.5, scale: "score", value: (u, v) => fmt(v) },
    ...ids.map((id) => ({ label: `node ${id}`, stroke: "rgba(110,110,110,0.35)", width: 1,
                          scale: "loss", points: { show: false } })),
  ];
  view.chart = new uPlot({
    width: Math.max(320, box.clientWidth), height: 320, series,
    scales: { x: { time: false }, score: { range: [0, 1] } },
    axes: [
      { label, incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000] },
      { scale: "loss", label: "log-loss" },
      { scale: "score", side: 1, label: "F1", grid: { show: false } },
    ],
  }, data, box);
  view.chartKey = key;
}

window.addEventListener("resize", () => {
  const box = document.getElementById("chart-convergence");
  if (view.chart) view.chart.setSize({ width: Math.max(320, box.clientWidth), height: 320 });
  renderHeatmap();
});

// ---- participation heatmap (SVG, one <g class="hm-row"> per node) ----
function renderHeatmap() {
  const box = document.getElementById("heatmap");
  const rounds = view.rounds.slice(-HEATMAP_ROUNDS);
  const ids = nodeIds();
  const labelW = 64, rowH = ids.length > 30 ? 10 : 16, axisH = 16;
  const width = Math.max(320, box.clientWidth);
  const cellW = rounds.length ? (width - labelW) / rounds.length : 0;
  const labelEvery = Math.ceil(ids.length / Math.max(1, Math.floor(ids.length * rowH / 12)));
  const cells = rounds.map((r) => [new Map(r.participants.map((p) => [p.node_id, p])),
                                   new Map(r.discarded.map((d) => [d.node_id, d]))]);
  const root = svg("svg", { width, height: ids.length * rowH + axisH, role: "img",
                            "aria-label": "participation heatmap" });
  ids.forEach((id, i) => {
    const g = svg("g", { class: "hm-row", "data-node": id,
                         transform: `translate(0, ${i * rowH})` });
    if (i % labelEvery === 0) {
      const text = svg("text", { x: labelW - 6, y: rowH - 2, "text-anchor": "end" });
      text.textContent = `node ${id}`;
      g.append(text);
    }
    g.append(svg("rect", { x: labelW, y: 0, width: width - labelW, height: rowH - 1,
                           fill: COLOURS.absent }));
    cells.forEach(([accepted, rejected], col) => {
      const r = rounds[col], took = accepted.get(id), cut = took ? null : rejected.get(id);
      if (!took && !cut) return;
      const cell = svg("rect", { x: labelW + col * cellW, y: 0, width: Math.max(cellW, 1),
                                 height: rowH - 1, fill: took ? COLOURS.ok : COLOURS.bad,
                                 class: took ? "hm-accepted" : "hm-rejected" });
      const title = svg("title", {});
      title.textContent = took
        ? `node ${id}, round ${r.round}: accepted, n_k=${took.n_samples}`
        : `node ${id}, round ${r.round}: rejected (${cut.reason}) ${cut.detail}`;
      cell.append(title);
      g.append(cell);
    });
    root.append(g);
  });
  const step = Math.max(1, Math.ceil(rounds.length / 10));
  rounds.forEach((r, col) => {
    if (col % step !== 0) return;
    const text = svg("text", { x: labelW + col * cellW, y: ids.length * rowH + axisH - 3 });
    text.textContent = r.round;
    root.append(text);
  });
  box.replaceChildren(root);
  document.getElementById("heatmap-note").textContent =
    `(${ids.length} nodes × newest ${rounds.length} rounds)`;
}

// ---- tables ----
function renderRoundTable() {
  const body = document.querySelector("#rounds-table tbody");
  const rows = view.rounds.slice(-TABLE_ROUNDS).reverse().map((r) => {
    const parts = el("details", {}, el("summary", {}, `${r.participants.length} node(s)`),
      r.participants.map((p) => `${p.node_id}: ${p.n_samples}`).join(", "));
    const rejected = el("td", { class: "rej" });
    for (const d of r.discarded) {
      rejected.append(el("div", { title: d.detail }, `${d.node_id}: ${d.reason}`));
    }
    return el("tr", { "data-round": r.round },
      el("td", { class: "num" }, r.round), el("td", {}, clock(r.finished_at)), el("td", {}, parts),
      el("td", { class: "num" }, int(r.n_total)), rejected,
      el("td", { class: "num" }, fmt(r.global_loss)), el("td", { class: "num" }, fmt(r.global_f1)),
      el("td", { class: "num" }, fmt(r.duration_s, 2)),
      el("td", { class: "num" }, fmt(r.timings.aggregate_ms, 1)),
      el("td", { class: "num" }, fmt(r.timings.publish_ms, 1)));
  });
  body.replaceChildren(...rows);
}

function renderNodeTable() {
  const body = document.querySelector("#nodes-table tbody");
  const rows = (view.nodes ? view.nodes.nodes : []).map((n) => {
    const reasons = Object.entries(n.rejected_by_reason).map(([k, v]) => `${k}: ${v}`).join(", ");
    const dead = Object.entries(n.dead_letter_reasons).map(([k, v]) => `${k}: ${v}`).join(", ");
    return el("tr", { "data-node": n.node_id },
      el("td", {}, n.node_id), el("td", {}, badge(n.status)),
      el("td", { title: n.last_round ? `round ${n.last_round}` : "" }, ago(n.last_seen_age_s)),
      el("td", { class: "num" }, int(n.samples_this_round)),
      el("td", { class: "num" }, int(n.total_samples)),
      el("td", { class: "num" },
        n.staleness_s === null ? "–" : `${fmt(n.staleness_s, 1)} s / ${n.staleness_versions} v`),
      el("td", { class: "num" }, int(n.accepted)),
      el("td", { class: "num", title: reasons }, int(n.rejected)),
      el("td", { class: "num", title: dead }, n.dead_letters === null ? "n/a" : int(n.dead_letters)),
      el("td", { class: "num" }, fmt(n.local_loss)));
  });
  body.replaceChildren(...rows);
}

function renderHealth() {
  const h = view.health;
  if (!h) return;
  const overall = document.getElementById("overall");
  overall.textContent = h.status === "ok" ? "all healthy" : "degraded";
  overall.className = `pill ${h.status === "ok" ? "ok" : "warn"}`;
  const kafkaText = { ok: "Kafka reachable", unreachable: "Kafka unreachable",
                      disabled: "Kafka checks off" }[h.kafka.status];
  const bridgeCounts = {};
  for (const b of h.bridges) bridgeCounts[b.status] = (bridgeCounts[b.status] || 0) + 1;
  const troubled = h.kafka.status === "ok" ? h.bridges.filter((b) => b.status !== "forwarding") : [];
  const box = el("div", { class: "health-grid" },
    el("div", { id: "health-kafka" }, el("h3", {}, "Kafka ", badge(h.kafka.status)),
      el("div", { class: "kafka-text" }, kafkaText), el("div", { class: "muted" }, h.kafka.detail),
      el("div", { class: "muted" }, h.kafka.status === "ok"
        ? `${h.kafka.brokers} broker(s), ${h.kafka.topics} topics, ` +
          `${int(h.kafka.dead_letters_total)} in ${h.kafka.dead_letter_topic}` : "")),
    el("div", { id: "health-log" }, el("h3", {}, "Aggregation log ", badge(h.log.status)),
      el("div", { class: "muted" }, h.log.path),
      el("div", {}, `${int(h.log.rounds)} rounds, last ${ago(h.log.age_s)}`)),
    el("div", { id: "health-bridges" }, el("h3", {}, "MQTT→Kafka bridges"),
      el("div", {}, Object.entries(bridgeCounts).map(([k, v]) => `${v} ${k}`).join(", ") || "none"),
      el("div", { class: "muted" }, h.kafka.status === "ok"
        ? "from the growth of each sensor topic" : "needs Kafka to tell"),
      el("ul", { class: "bridges" }, ...troubled.slice(0, 50).map((b) =>
        el("li", {}, `${b.topic}: ${b.status}`)))),
    el("div", { id: "health-fog" }, el("h3", {}, "Fog nodes"),
      el("div", {}, `${h.fog_nodes.active} active, ${h.fog_nodes.late} late, ` +
                    `${h.fog_nodes.silent} silent`),
      el("div", { class: "muted" }, `active = seen within MAX_WEIGHT_AGE ` +
                                    `(${view.nodes ? view.nodes.max_weight_age_s : "?"} s)`)));
  const problems = el("ul", { class: "problems" }, ...h.problems.map((p) => el("li", {}, p)));
  document.getElementById("health").replaceChildren(box, problems);
}

// ---- anomalies: alert state per device, score sparklines, recent alerts ----
function sparkline(points) {
  const root = svg("svg", { class: "spark", width: SPARK.w, height: SPARK.h, role: "img",
                            "aria-label": `score sparkline, ${points.length} intervals` });
  if (!points.length) return root;
  const t0 = points[0].t, span = Math.max(points[points.length - 1].t - t0, 1e-9);
  const x = (t) => (points.length === 1 ? SPARK.w / 2 : ((t - t0) / span) * (SPARK.w - 2) + 1);
  const y = (v) => SPARK.h - 1 - v * (SPARK.h - 2);
  const line = (key, cls) => svg("polyline", {
    class: cls, fill: "none", "stroke-width": cls === "spark-max" ? 1.6 : 1.2,
    points: points.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ") });
  root.append(line("threshold", "spark-threshold"), line("mean", "spark-mean"),
              line("max", "spark-max"));
  const last = points[points.length - 1];
  const title = svg("title", {});
  title.textContent = `${points.length} intervals; last: max ${fmt(last.max, 3)}, ` +
    `mean ${fmt(last.mean, 3)}, threshold ${fmt(last.threshold, 3)}, ` +
    `${last.over} of ${last.n} over`;
  root.append(title);
  return root;
}

function renderAnomalies() {
  const a = view.anomalies;
  if (!a) return;
  const pill = document.getElementById("alerts-pill");
  pill.textContent = a.active_alerts ? `${a.active_alerts} active alert(s)` : "no active alert";
  pill.className = `pill ${a.active_alerts ? "bad" : a.status === "ok" ? "ok" : ""}`;
  const invalid = Object.values(a.invalid).reduce((x, y) => x + y, 0);
  document.getElementById("anomalies-note").textContent =
    `(topic ${a.topic}: ${a.status}; ${a.devices.length} device(s)` +
    (invalid ? `; ${invalid} invalid record(s): ` +
      Object.entries(a.invalid).map(([k, v]) => `${k} ${v}`).join(", ") : "") + ")";
  const empty = document.getElementById("anomalies-empty");
  const idle = { ok: "No detections yet.", missing: `No detections yet: ${a.detail}.`,
                 unreachable: `No detections yet: Kafka unreachable (${a.detail}).`,
                 disabled: "No detections yet: the anomalies topic is not followed." };
  empty.textContent = a.devices.length ? (a.status === "ok" ? "" : a.detail) : idle[a.status];
  empty.hidden = !empty.textContent;
  const devices = a.devices.map((d) => el("tr",
    { "data-device": d.device_id, class: d.alert_active ? "alerting" : null },
    el("td", {}, d.device_id), el("td", {}, d.node_id),
    el("td", { class: "state" }, badge(d.alert_active ? "alert" : "quiet")),
    el("td", { title: d.since ? new Date(d.since * 1000).toISOString() : "" },
      d.since ? clock(d.since) : "–"),
    el("td", { class: "num score" }, fmt(d.last_score, 3)),
    el("td", { class: "num" }, fmt(d.threshold, 3)),
    el("td", { class: "num" }, d.model_version ?? "–"),
    el("td", { class: "num" }, int(d.detections)),
    el("td", {}, sparkline(d.sparkline))));
  document.querySelector("#devices-table tbody").replaceChildren(...devices);
  const alerts = a.alerts.slice(0, TABLE_ALERTS).map((x) => el("tr",
    { "data-alert": x.alert_id, "data-state": x.state },
    el("td", { title: new Date(x.detection_time * 1000).toISOString() }, clock(x.detection_time)),
    el("td", {}, x.device_id), el("td", {}, x.node_id), el("td", { class: x.state }, x.state),
    el("td", { class: "num" }, fmt(x.score, 3)),
    el("td", { class: "num", title: `threshold ${fmt(x.threshold, 3)}, model v${x.model_version}` },
      `${x.over}/${x.window}`)));
  document.querySelector("#alerts-table tbody").replaceChildren(...alerts);
}

document.addEventListener("DOMContentLoaded", () => { load().catch(showError); });
