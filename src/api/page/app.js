// The node's web page: the directory, the members, a record's provenance, and
// the changes as they happen. Plain JavaScript, no build step; every value that
// comes from the network is put in the page as text, never as markup.
"use strict";

const TOKEN_KEY = "tidings-api-token";
const state = {
  labels: new Map(), // node id -> roster label
  specialists: [],
  lastEventId: null,
  refreshTimer: null,
  ready: Promise.resolve(),
};

// ---- DOM helpers -----------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);

function ago(ms) {
  if (!ms) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace(".000Z", "Z") : "-");
const short = (id) => (id ? String(id).slice(0, 10) : "-");

function nodeName(id) {
  if (!id) return "-";
  const label = state.labels.get(id);
  return label ? `${label} (${short(id)})` : short(id);
}

function recordLink(id, text) {
  return el("a", { href: `#/record/${id}`, class: "mono", title: id }, text || short(id));
}

function endpointLink(url) {
  // The record codec admits only http and https endpoints; check again here.
  if (!/^https?:\/\//i.test(url || "")) return el("span", { class: "mono" }, url || "-");
  return el("a", { href: url, rel: "noopener noreferrer", target: "_blank", class: "mono" }, url);
}

// ---- the API ---------------------------------------------------------------

class Unauthorized extends Error {}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${path}: ${response.status} ${detail}`);
  }
  return body;
}

function showError(error) {
  if (error instanceof Unauthorized) {
    askToken();
    return;
  }
  const box = $("#error");
  box.textContent = String(error.message || error);
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
}

function askToken(message) {
  const form = $("#token-form");
  form.hidden = false;
  $("#token-error").textContent = message || "";
  $("#token").focus();
}

// ---- views -----------------------------------------------------------------

async function loadHealth() {
  const health = await api("/v1/health");
  state.self = health.node;
  const label = state.labels.get(health.node);
  $("#node-name").textContent = `${label || short(health.node)} · federation ${short(health.federation)}`;
  $("#node-name").title = health.node;
  const status = $("#node-status");
  status.textContent = health.status;
  status.className = `badge ${health.status === "ok" ? "" : health.status === "halted" ? "bad" : "warn"}`;
  $("#peers").textContent = `${health.peers_connected} peers connected · ${health.records} records`;
}

async function loadMembers() {
  const [members, roster] = await Promise.all([api("/v1/members"), api("/v1/roster").catch(() => null)]);
  for (const member of members.members) {
    if (member.label) state.labels.set(member.id, member.label);
  }
  const rows = members.members.map((member) => {
    const flags = [];
    if (member.this_node) flags.push(el("span", { class: "badge off" }, "this node"));
    else if (member.connected) flags.push(el("span", { class: "badge" }, "connected"));
    else flags.push(el("span", { class: "badge off" }, "not connected"));
    if (member.quarantined) flags.push(" ", el("span", { class: "badge bad" }, "quarantined"));
    if (member.banned) flags.push(" ", el("span", { class: "badge warn" }, "banned"));
    return el(
      "tr",
      { "data-id": member.id },
      el("td", {}, member.label || "-"),
      el("td", { class: "mono", title: member.id }, short(member.id)),
      el("td", {}, member.seq ?? "-"),
      el("td", {}, member.specialists),
      el("td", { class: "mono" }, (member.addrs || []).join(" ") || "-"),
      el("td", {}, member.this_node ? "-" : ago(member.last_heard_ms)),
      el("td", {}, flags),
    );
  });
  $("#member-table tbody").replaceChildren(...rows);
  if (roster) {
    $("#roster-summary").textContent =
      `roster epoch ${roster.epoch} · ${roster.members.length} members · threshold ${roster.threshold} ` +
      `(a change needs ${roster.needed} approvals)` +
      (roster.fork ? " · FORK DETECTED: roster changes have stopped" : "");
    const pending = roster.pending.map((proposal) =>
      el(
        "li",
        {},
        el("span", { class: "mono", title: proposal.id }, short(proposal.id)),
        ` epoch ${proposal.epoch}: ${proposal.summary} · proposed by ${nodeName(proposal.proposer)} · ` +
          `${proposal.approvals.length} of ${proposal.needed} approvals · expires ${when(proposal.expires_at_ms)}`,
      ),
    );
    $("#proposals").replaceChildren(...(pending.length ? pending : [el("li", { class: "muted" }, "none")]));
  }
}

async function loadDirectory() {
  const live = $("#filter-live").checked;
  const answer = await api(`/v1/specialists${live ? "?live=true" : ""}`);
  state.specialists = answer.specialists;
  renderDirectory();
}

function renderDirectory() {
  const capability = $("#filter-capability").value.trim().toLowerCase();
  const name = $("#filter-name").value.trim().toLowerCase();
  const shown = state.specialists.filter((item) => {
    const specialist = item.specialist;
    return (
      (!name || specialist.name.toLowerCase().includes(name)) &&
      (!capability || specialist.capabilities.some((c) => c.toLowerCase().includes(capability)))
    );
  });
  const rows = shown.map((item) => {
    const specialist = item.specialist;
    const reach =
      item.origin === state.self ? "this node" : item.connected ? "connected" : `heard ${ago(item.last_heard_ms)}`;
    const meta = Object.entries(specialist.meta || {}).map(([key, value]) => `${key}=${value}`);
    return el(
      "tr",
      { "data-name": specialist.name, "data-origin": item.origin },
      el("td", {}, specialist.name, meta.length ? el("div", { class: "muted small" }, meta.join(" ")) : null),
      el("td", {}, specialist.capabilities.map((c) => el("span", { class: "cap" }, c))),
      el("td", {}, endpointLink(specialist.endpoint)),
      el("td", { title: item.origin }, nodeName(item.origin)),
      el("td", { class: item.connected ? "ok" : "muted" }, reach),
      el("td", {}, recordLink(item.record)),
    );
  });
  $("#specialists tbody").replaceChildren(...rows);
  $("#directory-count").textContent = `${shown.length} of ${state.specialists.length} specialists`;
}

async function loadProvenance(id) {
  const section = $("#provenance");
  section.replaceChildren(el("p", { class: "muted" }, `loading ${id} …`));
  const answer = await api(`/v1/provenance/${encodeURIComponent(id)}`);
  const trace = answer.trace;
  const evidence = trace.evidence;
  const signer = evidence ? evidence.signer : trace.origin;
  const status = [answer.current ? "current" : "superseded or gone"];
  if (answer.origin_quarantined) status.push("ORIGIN QUARANTINED");
  const facts = el(
    "dl",
    { id: "provenance-facts" },
    el("dt", {}, "record"),
    el("dd", { class: "mono", id: "provenance-record" }, trace.record),
    el("dt", {}, "signed by"),
    el(
      "dd",
      { id: "provenance-signer" },
      evidence
        ? [nodeName(signer), el("span", { class: "muted" }, " · signature checked (verify_strict) · "), el("span", { class: "mono" }, signer)]
        : trace.evidence_invalid
          ? el("span", { class: "bad" }, "the stored evidence does not verify")
          : el("span", { class: "muted" }, "no signed evidence kept for this record"),
    ),
    el("dt", {}, "status"),
    el("dd", { class: answer.origin_quarantined ? "bad" : "" }, status.join(", ")),
  );
  if (evidence) {
    const zero = /^0+$/.test(evidence.prev);
    facts.append(
      el("dt", {}, "chain"),
      el("dd", {}, `seq ${evidence.seq}, after `, zero ? "the start of the chain" : recordLink(evidence.prev)),
      el("dt", {}, "issued"),
      el("dd", {}, `${when(evidence.issued_at_ms)}, expires ${when(evidence.expires_at_ms)}`),
      el("dt", {}, "announces"),
      el(
        "dd",
        {},
        evidence.specialists.length
          ? evidence.specialists.map((s) => el("div", {}, `${s.name} `, s.capabilities.map((c) => el("span", { class: "cap" }, c)), " ", endpointLink(s.endpoint)))
          : el("span", { class: "muted" }, "no specialists (a withdrawal or a leave)"),
      ),
    );
  }

  // How it reached this node and where it went from here, as this node's
  // audit log tells it.
  const first = trace.first_receipt;
  const relays = el(
    "ul",
    {},
    trace.relays.length
      ? trace.relays.map((step) => el("li", {}, `relayed to ${nodeName(step.peer)} at ${when(step.at_ms)}`))
      : el("li", { class: "muted" }, "not relayed by this node"),
  );
  const here = el("li", {}, el("strong", {}, "this node"), first ? ` got it at ${when(first.at_ms)} (entry ${first.index})` : "", relays);
  let tree;
  if (first && first.peer && first.peer !== signer) {
    tree = el("li", {}, `signed by ${nodeName(signer)}`, el("ul", {}, el("li", {}, `relayed by ${nodeName(first.peer)}`, el("ul", {}, here))));
  } else if (first && first.peer) {
    tree = el("li", {}, `signed by ${nodeName(signer)}, sent directly`, el("ul", {}, here));
  } else if (first) {
    tree = el("li", {}, `signed and published by this node`, el("ul", {}, relays));
  } else {
    tree = el("li", { class: "muted" }, "this node's log has no receipt of it");
  }

  const history = el(
    "table",
    { id: "provenance-history" },
    el("thead", {}, el("tr", {}, el("th", {}, "entry"), el("th", {}, "when"), el("th", {}, "what"), el("th", {}, "peer"), el("th", {}, "why"))),
    el(
      "tbody",
      {},
      trace.history.map((step) =>
        el("tr", {}, el("td", {}, step.index), el("td", {}, when(step.at_ms)), el("td", {}, step.kind), el("td", {}, step.peer ? nodeName(step.peer) : "-"), el("td", {}, step.reason || "")),
      ),
    ),
  );
  const later = trace.later_versions.map((v) => el("li", {}, `seq ${v.seq} `, recordLink(v.record), ` received ${when(v.at_ms)}`));
  const equivocations = trace.equivocations.map((step) => el("li", { class: "bad" }, `${step.kind} at ${when(step.at_ms)}: ${step.reason}`));
  section.replaceChildren(
    el("h2", {}, "Provenance"),
    facts,
    el("h2", {}, "Spread, as this node saw it"),
    el("ul", { class: "tree", id: "provenance-tree" }, tree),
    el("h2", {}, "Audit entries"),
    history,
    later.length ? [el("h2", {}, "Later versions"), el("ul", {}, later)] : [],
    equivocations.length ? [el("h2", {}, "Equivocations"), el("ul", {}, equivocations)] : [],
  );
}

// ---- the watch stream ------------------------------------------------------

function describe(event) {
  const origin = nodeName(event.origin);
  switch (event.event) {
    case "added":
    case "updated":
    case "removed":
      return `${event.event} ${event.specialist.name} [${event.specialist.capabilities.join(",")}] from ${origin}`;
    case "expired":
      return `${origin}'s record seq ${event.seq} expired`;
    case "quarantined":
      return `${origin} quarantined (signed two histories)`;
    case "left_roster":
      return `${origin} left the roster`;
    case "pardoned":
      return `${origin} pardoned above seq ${event.seq}`;
    case "reset":
      return `events were missed (${event.reason}); reloaded`;
    default:
      return event.event;
  }
}

function onEvent(id, data) {
  state.lastEventId = id || state.lastEventId;
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  const item = el("li", { "data-event": event.event }, el("span", { class: "muted" }, when(event.at_ms)), " ", describe(event));
  if (event.record) item.append(" ", recordLink(event.record));
  const list = $("#event-list");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
  // Coalesce bursts into one reload.
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, 150);
}

function setLive(on, text) {
  const badge = $("#live-state");
  badge.textContent = text || (on ? "live" : "reconnecting");
  badge.className = `badge ${on ? "" : "off"}`;
}

async function follow() {
  for (;;) {
    try {
      const request = headers();
      if (state.lastEventId) request["Last-Event-ID"] = state.lastEventId;
      const response = await fetch("/v1/watch", { headers: request, cache: "no-store" });
      if (response.status === 401) {
        setLive(false, "needs token");
        askToken();
        await new Promise((resolve) => document.addEventListener("token", resolve, { once: true }));
        continue;
      }
      if (!response.ok) throw new Error(`watch: ${response.status}`);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = null;
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) id = line.slice(3).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) onEvent(id, data.join("\n"));
        }
      }
    } catch (error) {
      // The node went away or the network broke: try again below.
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// ---- routing ---------------------------------------------------------------

function route() {
  const hash = location.hash || "#/";
  const record = hash.match(/^#\/record\/([0-9a-fA-F]+)$/);
  const view = record ? "provenance" : hash === "#/members" ? "members" : hash === "#/events" ? "events" : "directory";
  for (const section of ["directory", "members", "provenance", "events"]) {
    $(`#${section}`).hidden = section !== view;
  }
  $("#tab-directory").classList.toggle("active", view === "directory");
  $("#tab-members").classList.toggle("active", view === "members");
  $("#tab-events").classList.toggle("active", view === "events");
  // Labels come with the first load of the members.
  if (record) state.ready.then(() => loadProvenance(record[1])).then(clearError, showError);
}

async function refresh() {
  try {
    await loadMembers();
    await loadHealth();
    await loadDirectory();
    clearError();
  } catch (error) {
    showError(error);
  }
}

function start() {
  $("#token-form").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value);
    try {
      await api("/v1/health");
    } catch (error) {
      askToken(error instanceof Unauthorized ? "the node refused this token" : String(error.message));
      return;
    }
    $("#token-form").hidden = true;
    document.dispatchEvent(new Event("token"));
    await refresh();
    route();
  });
  $("#filter-capability").addEventListener("input", renderDirectory);
  $("#filter-name").addEventListener("input", renderDirectory);
  $("#filter-live").addEventListener("change", () => loadDirectory().catch(showError));
  window.addEventListener("hashchange", route);
  state.ready = refresh();
  route();
  follow();
  // Reachability changes without directory events: look again now and then.
  setInterval(() => {
    if (!document.hidden) loadMembers().then(loadHealth).then(renderDirectory).catch(() => {});
  }, 5000);
}

start();
