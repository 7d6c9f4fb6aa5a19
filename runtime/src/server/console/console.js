// Wafer console: one page over the node's own API (see runtime/src/server/console.rs).
// Every value shown comes from an API response and is inserted as text, never as HTML.
"use strict";

const store = window.sessionStorage;
const creds = { key: store.getItem("wafer.key") || "", admin: store.getItem("wafer.admin") || "" };
let refreshTimer = null;

// ---- DOM helpers -------------------------------------------------------------------------

/** An element with attributes (`on*` keys become listeners) and children (strings are text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function say(message, isError) {
  const s = document.getElementById("status");
  s.textContent = message || "";
  s.className = isError ? "status error" : "status";
}

function show(...nodes) {
  const page = document.getElementById("page");
  page.replaceChildren(...nodes.flat());
}

function shortId(id) {
  return id ? String(id).slice(0, 12) : "—";
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—";
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms % 86400000 === 0) return `${ms / 86400000} d`;
  if (ms % 3600000 === 0) return `${ms / 3600000} h`;
  if (ms % 60000 === 0) return `${ms / 60000} min`;
  return `${ms} ms`;
}

function fmt(x, digits) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

// ---- API ---------------------------------------------------------------------------------

/** An error answer of the API: its status, code and message. */
class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API with the tenant key (or, `asAdmin`, the admin token); JSON in and out. */
async function api(method, path, body, asAdmin) {
  const headers = {};
  const token = asAdmin ? creds.admin : creds.key;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!r.ok) {
    const e = (data && data.error) || {};
    throw new ApiFailure(r.status, e.code || `http_${r.status}`, e.message || text || r.statusText);
  }
  return data;
}

/** The message for a failed call, with what to do about credentials. */
function explain(e) {
  if (!(e instanceof ApiFailure)) return String(e);
  if (e.status === 401) return `${e.message} — enter a key above (${e.code}).`;
  return `${e.message} (${e.code}).`;
}

// ---- pages -------------------------------------------------------------------------------

async function viewsPage() {
  const { views } = await api("GET", "/v1/views");
  const rows = views.map((v) =>
    h("tr", { "data-view": v.name },
      h("th", { scope: "row" }, v.name),
      h("td", {}, h("span", { class: "badge" }, v.kind)),
      h("td", {}, v.entity || "—"),
      h("td", {}, v.transform || "—", v.version ? h("div", { class: "mono muted", title: v.version }, shortId(v.version)) : null),
      h("td", {}, v.kind === "request" ? "—" : duration(v.ttl_ms)),
      h("td", {}, h("div", { class: "chips" },
        (v.features || []).map((f) => h("span", { class: "chip" }, f.name, " ", h("i", {}, f.type))))),
      h("td", {}, (v.aggregations || []).length === 0 ? "—" : h("div", { class: "chips" },
        v.aggregations.map((a) => h("span", { class: "chip" }, `${a.function}(${a.column}) `, h("i", {}, a.windows.join(", ")))))),
    ));
  show(
    h("h1", {}, "Views"),
    views.length === 0 ? h("p", {}, "No views yet.") : h("table", { "aria-label": "Views" },
      h("thead", {}, h("tr", {}, ["View", "Kind", "Entity", "Transform (version)", "TTL", "Features", "Aggregations"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)),
  );
}

async function transformsPage() {
  let list;
  try {
    list = (await api("GET", "/v1/transforms")).transforms;
  } catch (e) {
    if (e instanceof ApiFailure && e.code === "no_control_plane") {
      show(h("h1", {}, "Transforms"), h("p", { class: "card" },
        "This node serves a manifest: its transforms are the files it was started with (see Views for each one's version). ",
        "Uploads, versions and activation need registry mode ([control] in the manifest)."));
      return;
    }
    throw e;
  }
  const cards = list.map((t) => {
    const active = t.versions.find((v) => v.id === t.active);
    const rows = t.versions.slice().reverse().map((v) => {
      const isActive = v.id === t.active;
      const older = active && v.uploaded_ms < active.uploaded_ms;
      const label = older ? "Roll back to this version" : "Activate";
      const outputs = ((v.info && v.info.outputs) || []).map((o) => h("span", { class: "chip" }, o.name, " ", h("i", {}, o.type || o.value_type || "")));
      return h("tr", { "data-version": v.id },
        h("td", { class: "mono", title: v.id }, shortId(v.id)),
        h("td", {}, isActive ? h("span", { class: "badge active" }, "active") : ""),
        h("td", {}, v.world),
        h("td", {}, h("div", { class: "chips" }, outputs)),
        h("td", {}, `${(v.bytes / 1024).toFixed(1)} KiB`),
        h("td", {}, `${v.compile_ms} ms`),
        h("td", {}, when(v.uploaded_ms)),
        h("td", {}, isActive ? "" : h("button", {
          class: "secondary", type: "button",
          "aria-label": `${label} ${shortId(v.id)} of ${t.name}`,
          onclick: () => activate(t.name, v.id, label),
        }, label)),
      );
    });
    return h("section", { class: "card", "data-transform": t.name },
      h("h2", {}, t.name, " ", h("span", { class: "muted mono" }, `active ${shortId(t.active)}`)),
      h("table", { "aria-label": `Versions of ${t.name}` },
        h("thead", {}, h("tr", {}, ["Version", "", "World", "Schema", "Size", "Compile", "Uploaded", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows)));
  });
  show(h("h1", {}, "Transforms"), list.length === 0 ? h("p", {}, "No transforms uploaded yet (PUT /v1/transforms/{name}).") : cards);
}

async function activate(name, version, label) {
  if (!window.confirm(`${label}: make version ${shortId(version)} the live version of ${name}? Views using ${name} switch at their next batch.`)) return;
  try {
    await api("POST", `/v1/transforms/${encodeURIComponent(name)}/activate`, { version });
    say(`${name}: version ${shortId(version)} is active.`);
    await transformsPage();
  } catch (e) {
    say(explain(e), true);
  }
}

/** A line chart of one or two series over the last minutes (SVG; no library). */
function chart(title, points, series, unit) {
  const w = 600, hgt = 140, pad = 28;
  const values = series.flatMap((s) => points.map((p) => p[s.key]).filter((v) => v !== null && v !== undefined));
  const max = Math.max(1e-9, ...values);
  const t0 = points.length ? points[0].at_ms : 0;
  const t1 = points.length ? points[points.length - 1].at_ms : 1;
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad - 6);
  const y = (v) => hgt - 16 - (v / max) * (hgt - 28);
  const el = svg("svg", { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", role: "img" });
  const last = points[points.length - 1] || {};
  el.setAttribute("aria-label", `${title}: latest ${series.map((s) => `${s.label} ${fmt(last[s.key], 1)} ${unit}`).join(", ")}`);
  series.forEach((s, i) => {
    const pts = points.filter((p) => p[s.key] !== null && p[s.key] !== undefined).map((p) => `${x(p.at_ms).toFixed(1)},${y(p[s.key]).toFixed(1)}`);
    if (pts.length) el.append(svg("polyline", { points: pts.join(" "), class: `s${i}` }));
  });
  const top = svg("text", { x: 2, y: 12 });
  top.textContent = `${fmt(max, max < 10 ? 2 : 0)} ${unit}`;
  const bottom = svg("text", { x: 2, y: hgt - 4 });
  bottom.textContent = points.length ? `${Math.round((t1 - t0) / 60000)} min` : "";
  el.append(top, bottom);
  return h("figure", { class: "chart" },
    h("figcaption", {}, title, " ", h("span", { class: "legend" }, series.map((s, i) => h("span", { class: `k${i}` }, `■ ${s.label} ${fmt(last[s.key], 1)}`)))),
    el);
}

async function healthPage() {
  const health = await api("GET", "/v1/view-health");
  const cards = health.views.map((v) => {
    const badges = [];
    badges.push(v.paused ? h("span", { class: "badge bad" }, "paused by breaker") : h("span", { class: "badge ok" }, "running"));
    if (v.source_missing) badges.push(h("span", { class: "badge bad" }, "source topic missing"));
    if (v.stalled_partitions.length) badges.push(h("span", { class: "badge warn" }, `stalled partitions ${v.stalled_partitions.join(", ")}`));
    const outcomes = Object.entries(v.events);
    const trips = Object.entries(v.breaker_trips);
    const points = v.series;
    return h("section", { class: "card", "data-view": v.name },
      h("h2", {}, v.name, " ", h("span", { class: "muted" }, `transform ${v.transform}`)),
      h("p", {}, badges),
      h("table", { "aria-label": `Events of ${v.name} by outcome` },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Outcome"), h("th", { scope: "col" }, "Events since start"))),
        h("tbody", {},
          outcomes.length === 0 ? h("tr", {}, h("td", { colspan: 2 }, "No events yet.")) : outcomes.map(([k, n]) => h("tr", { "data-outcome": k }, h("td", {}, k), h("td", {}, n))),
          trips.map(([k, n]) => h("tr", {}, h("td", {}, `breaker trips (${k})`), h("td", {}, n))))),
      points.length === 0
        ? h("p", { class: "muted" }, `Collecting samples (one every ${health.interval_ms / 1000} s)…`)
        : h("div", { class: "charts" },
          chart("Throughput", points, [{ key: "events_per_s", label: "events/s" }, { key: "errors_per_s", label: "errors/s" }], "/s"),
          chart("Freshness (produce → readable)", points, [{ key: "freshness_p50_ms", label: "p50" }, { key: "freshness_p99_ms", label: "p99" }], "ms"),
          chart("Source lag (produce → received)", points, [{ key: "source_lag_p99_ms", label: "p99" }], "ms")),
    );
  });
  show(h("h1", {}, "Health"), h("p", { class: "muted" }, `Last ${health.intervals_kept * health.interval_ms / 60000} minutes, refreshed every ${health.interval_ms / 1000} s. Freshness is measured for Kafka sources.`),
    cards.length === 0 ? h("p", {}, "No stream views.") : cards);
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (currentPage() === "health") route(); }, health.interval_ms);
}

async function lookupPage() {
  const { views } = await api("GET", "/v1/views");
  const stored = views.filter((v) => v.kind !== "request");
  const viewSel = h("select", { id: "lookup-view", name: "view" }, stored.map((v) => h("option", { value: v.name }, v.name)));
  const entity = h("input", { id: "lookup-entity", name: "entity", required: true, spellcheck: "false" });
  const features = h("input", { id: "lookup-features", name: "features", placeholder: "all features", size: 36 });
  const asOf = h("input", { id: "lookup-as-of", name: "as_of", type: "datetime-local", step: 1 });
  const out = h("div", { id: "lookup-result" });
  const form = h("form", { class: "inline card", onsubmit: (ev) => { ev.preventDefault(); lookup(stored, viewSel.value, entity.value, features.value, asOf.value, out); } },
    h("label", {}, "View", viewSel),
    h("label", {}, "Entity", entity),
    h("label", {}, "Features (comma-separated)", features),
    h("label", {}, "As of (local time; empty: now)", asOf),
    h("button", { type: "submit" }, "Look up"));
  show(h("h1", {}, "Feature lookup"), form, out);
}

async function lookup(views, viewName, entity, featureText, asOfText, out) {
  const view = views.find((v) => v.name === viewName);
  const names = featureText.trim() ? featureText.split(",").map((s) => s.trim()).filter(Boolean) : view.features.map((f) => f.name);
  const body = { view: viewName, entities: [entity], features: names };
  if (asOfText) body.as_of = new Date(asOfText).getTime();
  try {
    const r = await api("POST", "/v1/features", body);
    const feats = r.results[0].features;
    out.replaceChildren(h("p", { class: "muted" }, `${viewName} / ${entity} as of ${when(r.as_of)}`),
      h("table", { "aria-label": "Feature values" },
        h("thead", {}, h("tr", {}, ["Feature", "Value", "Status", "Event time"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, Object.entries(feats).map(([name, f]) => h("tr", { "data-feature": name },
          h("th", { scope: "row" }, name),
          h("td", { class: "mono" }, f.value === null || f.value === undefined ? "null" : JSON.stringify(f.value)),
          h("td", {}, f.status),
          h("td", {}, when(f.event_time_ms)))))));
    say("");
  } catch (e) {
    out.replaceChildren();
    say(explain(e), true);
  }
}

async function adminPage() {
  if (!creds.admin) {
    show(h("h1", {}, "Tenants"), h("p", { class: "card" }, "Tenants, quotas and keys need the operator's admin token: enter it above."));
    return;
  }
  let tenants;
  try {
    tenants = (await api("GET", "/v1/admin/tenants", undefined, true)).tenants;
  } catch (e) {
    if (e instanceof ApiFailure && e.code === "no_control_plane") {
      show(h("h1", {}, "Tenants"), h("p", { class: "card" }, "This node serves one manifest tenant without keys; tenants need registry mode."));
      return;
    }
    throw e;
  }
  const name = h("input", { id: "new-tenant", required: true, pattern: "[A-Za-z][A-Za-z0-9_-]{0,63}", spellcheck: "false" });
  const create = h("form", { class: "inline card", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/v1/admin/tenants", { name: name.value }, true);
      say(`Tenant ${name.value} created.`);
      await adminPage();
    } catch (e) { say(explain(e), true); }
  } }, h("label", {}, "New tenant", name), h("button", { type: "submit" }, "Create tenant"));
  const secret = h("div", { id: "new-key" });
  const cards = tenants.map((t) => h("section", { class: "card", "data-tenant": t.name },
    h("h2", {}, t.name, " ", t.disabled ? h("span", { class: "badge bad" }, "disabled") : h("span", { class: "badge ok" }, "enabled")),
    h("p", { class: "muted" }, `created ${when(t.created_ms)}`),
    h("details", {}, h("summary", {}, "Quotas"),
      h("table", { "aria-label": `Quotas of ${t.name}` }, h("tbody", {}, Object.entries(t.quotas).map(([k, v]) => h("tr", {}, h("th", { scope: "row", class: "mono" }, k), h("td", {}, v)))))),
    h("table", { "aria-label": `Keys of ${t.name}` },
      h("thead", {}, h("tr", {}, ["Key id", "Created", "State", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, t.keys.map((k) => h("tr", { "data-key": k.id },
        h("td", { class: "mono" }, k.id), h("td", {}, when(k.created_ms)), h("td", {}, k.revoked ? "revoked" : "active"),
        h("td", {}, k.revoked ? "" : h("button", { class: "danger", type: "button", "aria-label": `Revoke key ${k.id} of ${t.name}`, onclick: () => revoke(t.name, k.id) }, "Revoke")))))),
    h("p", {}, h("button", { type: "button", onclick: () => issue(t.name, secret) }, `Issue a key for ${t.name}`)),
  ));
  show(h("h1", {}, "Tenants"), secret, create, cards);
}

async function issue(tenant, secretBox) {
  try {
    const k = await api("POST", `/v1/admin/tenants/${encodeURIComponent(tenant)}/keys`, undefined, true);
    await adminPage();
    // Shown once: the registry keeps only its hash.
    document.getElementById("new-key").replaceChildren(h("div", { class: "secret", role: "alert" },
      h("strong", {}, `New key for ${k.tenant} (id ${k.id}): `), h("code", { id: "new-key-secret" }, k.key),
      h("p", {}, "Copy it now: it is shown only once and cannot be read again.")));
  } catch (e) { say(explain(e), true); }
}

async function revoke(tenant, id) {
  if (!window.confirm(`Revoke key ${id} of ${tenant}? Clients using it get 401 at once.`)) return;
  try {
    await api("DELETE", `/v1/admin/tenants/${encodeURIComponent(tenant)}/keys/${encodeURIComponent(id)}`, undefined, true);
    say(`Key ${id} revoked.`);
    await adminPage();
  } catch (e) { say(explain(e), true); }
}

// ---- routing -----------------------------------------------------------------------------

const PAGES = { views: viewsPage, transforms: transformsPage, health: healthPage, lookup: lookupPage, admin: adminPage };

function currentPage() {
  const name = (location.hash || "#/views").replace(/^#\//, "");
  return PAGES[name] ? name : "views";
}

async function route() {
  const name = currentPage();
  clearTimeout(refreshTimer);
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    await PAGES[name]();
    if (document.getElementById("status").className !== "status error") say("");
  } catch (e) {
    show(h("h1", {}, name[0].toUpperCase() + name.slice(1)), h("p", { class: "card" }, "Could not load this page."));
    say(explain(e), true);
  }
}

function init() {
  const key = document.getElementById("key");
  const admin = document.getElementById("admin");
  key.value = creds.key;
  admin.value = creds.admin;
  document.getElementById("credentials").addEventListener("submit", (ev) => {
    ev.preventDefault();
    creds.key = key.value.trim();
    creds.admin = admin.value.trim();
    store.setItem("wafer.key", creds.key);
    store.setItem("wafer.admin", creds.admin);
    say("Credentials saved for this tab.");
    route();
  });
  document.getElementById("forget").addEventListener("click", () => {
    creds.key = creds.admin = key.value = admin.value = "";
    store.removeItem("wafer.key");
    store.removeItem("wafer.admin");
    say("Credentials forgotten.");
    route();
  });
  window.addEventListener("hashchange", () => { say(""); route(); });
  route();
}

init();
