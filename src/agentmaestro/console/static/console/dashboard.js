// The workspace dashboard: its run table follows /ws/workspaces/<id>/. Each run.summary
// frame updates the run's status badge at once; the row itself (steps, tokens, duration)
// is re-rendered by the server (/runs/<id>/row/), one request per run at a time, so a
// busy run costs at most one fetch in flight plus one queued. Runs not on the page
// appear at the top when they match the page's filters.
import { LiveSocket, showConnection } from "./live_socket.js";
import { readJson, statusLabel } from "./util.js";

const initial = readJson("dashboard-initial");
const body = document.getElementById("runs-body");
const wanted = new Set(initial.statuses);
const fetching = new Map(); // run id -> "busy" | "again"

function matches(status, agent) {
  return (wanted.size === 0 || wanted.has(status)) && (!initial.agent || !agent || agent === initial.agent);
}

function rowOf(runId) {
  return body.querySelector('tr[data-run-id="' + runId + '"]');
}

function setBadge(row, status) {
  const badge = row.querySelector(".status-cell .badge");
  badge.className = "badge status-" + status.toLowerCase();
  badge.dataset.status = status;
  badge.textContent = statusLabel(status);
  row.dataset.status = status;
}

function syncEmpty() {
  document.getElementById("runs-empty").hidden = body.rows.length > 0;
}

async function refreshRow(runId) {
  if (fetching.has(runId)) {
    fetching.set(runId, "again");
    return;
  }
  fetching.set(runId, "busy");
  try {
    const response = await fetch(initial.row_url.replace("00000000-0000-0000-0000-000000000000", runId), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (response.ok) {
      const template = document.createElement("template");
      template.innerHTML = (await response.text()).trim();
      const fresh = template.content.querySelector("tr");
      const old = rowOf(runId);
      if (!matches(fresh.dataset.status, fresh.dataset.agent)) {
        if (old) old.remove();
      } else if (old) {
        old.replaceWith(fresh);
      } else {
        fresh.classList.add("fresh");
        body.prepend(fresh);
      }
      syncEmpty();
    }
  } finally {
    const again = fetching.get(runId) === "again";
    fetching.delete(runId);
    if (again) refreshRow(runId);
  }
}

function onSummary(run) {
  const row = rowOf(run.id);
  if (!row || row.dataset.status !== run.status) countsChanged();
  if (row) {
    if (Number(row.dataset.lastSeq) >= run.last_seq) return; // nothing new for this row
    setBadge(row, run.status);
    refreshRow(run.id);
  } else if (wanted.size === 0 || wanted.has(run.status)) {
    refreshRow(run.id); // new to this page; the row says whether its agent matches
  }
}

async function readPage() {
  const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
  return response.ok ? new DOMParser().parseFromString(await response.text(), "text/html") : null;
}

function swapTiles(page) {
  const fresh = page.getElementById("run-tiles");
  if (fresh) document.getElementById("run-tiles").replaceChildren(...fresh.children);
}

// Summaries are ephemeral: those sent while the socket was down are gone. After a
// reconnect the table (and the counts) are re-read from the page's own URL instead.
async function resync() {
  const page = await readPage();
  if (!page) return;
  const fresh = page.getElementById("runs-body");
  if (fresh) body.replaceChildren(...fresh.children);
  swapTiles(page);
  syncEmpty();
}

// The counts cover every run of the workspace, most of them not on the page: when a run
// starts or changes status they are re-read from the server, at most every 2 s.
let tilesTimer = null;
function countsChanged() {
  if (tilesTimer) return;
  tilesTimer = setTimeout(async () => {
    tilesTimer = null;
    const page = await readPage();
    if (page) swapTiles(page);
  }, 2000);
}

let everLive = false;
const socket = new LiveSocket({
  url: () => "/ws/workspaces/" + initial.workspace_id + "/",
  onFrame: (frame) => {
    if (frame.type === "run.summary") onSummary(frame.run);
  },
  onState: (state, detail) => {
    showConnection(document.getElementById("ws-connection"), state, detail);
    if (state === "live") {
      if (everLive) resync();
      everLive = true;
    }
  },
  heartbeatSeconds: initial.heartbeat_seconds,
});
socket.start();

// Choosing a filter applies it (the form also works without this script).
for (const select of document.querySelectorAll("#run-filters select")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}

window.amDashboard = { socket };
