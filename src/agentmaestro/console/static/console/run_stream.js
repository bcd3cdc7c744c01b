// The run stream page: the server rendered the snapshot (as of last_seq) and embedded the
// stored events up to last_seq; this script shows those, then follows the run live over
// /ws/runs/<id>/?since_seq=<last rendered seq>. On every (re)connect it asks for exactly
// what it has not rendered, and it drops any seq it already has, so a reconnect leaves
// neither a gap nor a duplicate in the timeline.
(function () {
  "use strict";

  var initial = JSON.parse(document.getElementById("stream-initial").textContent);
  var TERMINAL = new Set(initial.terminal_statuses);
  // Close codes of refused sockets (docs/websockets.md): reconnecting cannot help.
  var REFUSED = {
    4400: "the server refused the request",
    4401: "you are logged out; log in again and reload",
    4403: "this page's origin is not allowed",
    4404: "no such run, or you are no longer a member of its workspace",
  };
  var SUMMARY_CHARS = 160;

  var state = {
    lastSeq: initial.events.length ? initial.events[0].seq - 1 : initial.last_seq,
    status: initial.status,
    socket: null,
    attempts: 0,
    connects: 0,
    reconnectTimer: null,
    watchdog: null,
    nextCommandId: 1,
    lastHeartbeat: null,
  };

  function byId(id) {
    return document.getElementById(id);
  }

  function td(text, className) {
    var cell = document.createElement("td");
    cell.textContent = text;
    if (className) cell.className = className;
    return cell;
  }

  // JSON with sorted keys, so a payload reads the same live and after a reload (the
  // database may store an object's keys in another order than the live frame has them).
  function stableJson(value) {
    return JSON.stringify(value, function (key, inner) {
      if (inner && typeof inner === "object" && !Array.isArray(inner)) {
        var sorted = {};
        Object.keys(inner)
          .sort()
          .forEach(function (k) {
            sorted[k] = inner[k];
          });
        return sorted;
      }
      return inner;
    });
  }

  function clip(text) {
    return text.length > SUMMARY_CHARS ? text.slice(0, SUMMARY_CHARS - 1) + "\u2026" : text;
  }

  function shortTime(iso) {
    // "2026-11-25T10:11:12.345678+00:00" -> "10:11:12.345" (UTC, as stored)
    var match = /T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(iso || "");
    return match ? match[1] + (match[2] || "") : iso || "";
  }

  function displayTime(iso) {
    // As the server renders it: "2026-11-25 10:11:12" (UTC).
    return String(iso).slice(0, 19).replace("T", " ");
  }

  function summarize(frame) {
    var p = frame.payload || {};
    switch (frame.event_type) {
      case "run.created":
        return "input " + clip(stableJson(p.input));
      case "run.status_changed": {
        var text = p.from_status + " \u2192 " + p.to_status;
        if (p.reason) text += " (" + p.reason + ")";
        if (p.error) text += ": " + p.error.message;
        return clip(text);
      }
      case "run.note":
        return clip("[" + p.source + "] " + p.message);
      case "run.usage_updated":
        return p.input_tokens + " input / " + p.output_tokens + " output tokens in total";
      case "step.created":
        return clip("step " + p.index + " " + p.kind + " " + p.status + " " + stableJson(p.payload));
      case "step.updated":
        return "step " + p.index + " \u2192 " + p.status;
      case "tool_call.created":
        return clip(p.tool_name + "(" + stableJson(p.arguments) + ") " + p.status);
      case "tool_call.updated": {
        var outcome = p.error ? " " + stableJson(p.error) : p.result != null ? " " + stableJson(p.result) : "";
        return clip(
          "call " + String(p.id).slice(0, 8) + " \u2192 " + p.status + " (attempt " + p.attempt + ")" + outcome
        );
      }
      default:
        return clip(stableJson(p));
    }
  }

  function setConnection(text, kind) {
    var el = byId("connection");
    el.textContent = text;
    el.className = "conn conn-" + kind;
    el.dataset.state = kind;
  }

  function showError(text) {
    var line = document.createElement("p");
    line.textContent = text;
    byId("errors").appendChild(line);
  }

  function setStatus(status) {
    state.status = status;
    var badge = byId("run-status");
    badge.textContent = status;
    badge.className = "badge status-" + status.toLowerCase();
    badge.dataset.status = status;
    var cancel = byId("cancel-button");
    if (cancel) cancel.hidden = TERMINAL.has(status);
  }

  function statusBadge(status) {
    var badge = document.createElement("span");
    badge.className = "badge status-" + String(status).toLowerCase();
    badge.textContent = status;
    return badge;
  }

  // Live changes to the snapshot tables; only for events after the snapshot's last_seq.
  function applyToSnapshot(frame) {
    var p = frame.payload || {};
    switch (frame.event_type) {
      case "run.status_changed":
        setStatus(p.to_status);
        if (p.to_status === "RUNNING" && byId("run-started").textContent === "\u2014") {
          byId("run-started").textContent = displayTime(p.at);
        }
        if (TERMINAL.has(p.to_status)) byId("run-finished").textContent = displayTime(p.at);
        break;
      case "step.created":
        upsertRow("steps-body", "index", String(p.index), [
          td(String(p.index), "num"),
          td(p.kind, "kind"),
          statusCell(p.status),
          td(clip(stableJson(p.payload)), "summary"),
        ]);
        break;
      case "step.updated": {
        var step = updateStatusCell("steps-body", "index", String(p.index), p.status);
        if (step && p.payload != null) step.cells[3].textContent = clip(stableJson(p.payload));
        break;
      }
      case "tool_call.created":
        // A call created finished carries its attempt and outcome.
        var created = p.error != null ? p.error : p.result;
        upsertRow("calls-body", "id", p.id, [
          td(p.tool_name, "kind"),
          statusCell(p.status),
          td(String(p.attempt || 0), "num"),
          td(clip(stableJson(p.arguments)), "summary"),
          td(created == null ? "" : clip(stableJson(created)), "summary"),
        ]);
        break;
      case "tool_call.updated": {
        var row = updateStatusCell("calls-body", "id", p.id, p.status);
        if (row) {
          row.cells[2].textContent = String(p.attempt);
          var outcome = p.error != null ? p.error : p.result;
          row.cells[4].textContent = outcome == null ? "" : clip(stableJson(outcome));
        }
        break;
      }
    }
  }

  function statusCell(status) {
    var cell = document.createElement("td");
    cell.appendChild(statusBadge(status));
    return cell;
  }

  function upsertRow(bodyId, key, value, cells) {
    var body = byId(bodyId);
    var placeholder = body.querySelector("td.empty");
    if (placeholder) placeholder.parentNode.remove();
    var row = findRow(body, key, value) || document.createElement("tr");
    row.dataset[key] = value;
    row.replaceChildren.apply(row, cells);
    if (!row.parentNode) body.appendChild(row);
    return row;
  }

  function findRow(body, key, value) {
    for (var i = 0; i < body.rows.length; i++) {
      if (body.rows[i].dataset[key] === value) return body.rows[i];
    }
    return null;
  }

  // The status column: third in the steps table (#, kind, status), second in the calls'.
  var STATUS_COLUMN = { "steps-body": 2, "calls-body": 1 };

  function updateStatusCell(bodyId, key, value, status) {
    var row = findRow(byId(bodyId), key, value);
    if (row) row.cells[STATUS_COLUMN[bodyId]].replaceChildren(statusBadge(status));
    return row;
  }

  // Render one event frame. Returns false on a gap (the caller reconnects to fill it).
  function render(frame, live) {
    if (frame.seq <= state.lastSeq) return true; // already shown: a duplicate delivery
    if (frame.seq !== state.lastSeq + 1) return false;
    var body = byId("timeline-body");
    var placeholder = body.querySelector("td.empty");
    if (placeholder) placeholder.parentNode.remove();
    var row = document.createElement("tr");
    row.dataset.seq = String(frame.seq);
    row.dataset.eventType = frame.event_type;
    var time = td(shortTime(frame.created_at), "time");
    time.title = frame.created_at;
    row.append(td(String(frame.seq), "num"), td(frame.event_type, "type"), time, td(summarize(frame), "summary"));
    if (live) row.className = "fresh";
    body.appendChild(row);
    state.lastSeq = frame.seq;
    byId("last-seq").textContent = String(frame.seq);
    if (frame.seq > initial.last_seq) applyToSnapshot(frame);
    if (live) {
      var scroller = byId("timeline-scroll");
      scroller.scrollTop = scroller.scrollHeight;
    }
    return true;
  }

  function onFrame(socket, frame) {
    switch (frame.type) {
      case "event":
        if (!render(frame, true)) {
          // Cannot happen with a correct server; recover by asking again from lastSeq.
          socket.close(4000, "gap");
        }
        break;
      case "heartbeat":
        state.lastHeartbeat = frame.last_seq;
        byId("heartbeat").textContent =
          "last_seq " + frame.last_seq + " at " + new Date().toLocaleTimeString();
        break;
      case "error":
        showError((frame.code || "error") + ": " + (frame.message || "the server refused the command"));
        if (frame.id && String(frame.id).indexOf("cancel-") === 0) byId("cancel-button").disabled = false;
        break;
      case "ack":
        if (frame.command === "cancel") byId("note-status").textContent = "Cancel accepted.";
        break;
      default:
        break; // other ephemeral frames (token deltas, pongs) are not shown here
    }
  }

  function armWatchdog(socket) {
    // A silent socket (half-open connection) is closed after three missed heartbeats.
    clearTimeout(state.watchdog);
    var limit = Math.max(3 * initial.heartbeat_seconds, 10) * 1000;
    state.watchdog = setTimeout(function () {
      if (socket === state.socket) socket.close(4000, "no heartbeat");
    }, limit);
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + "/ws/runs/" + initial.run_id + "/?since_seq=" + state.lastSeq;
    var socket = new WebSocket(url);
    state.socket = socket;
    state.connects += 1;
    setConnection(state.connects === 1 ? "connecting\u2026" : "reconnecting\u2026", "connecting");

    socket.onopen = function () {
      if (socket !== state.socket) return;
      state.attempts = 0;
      setConnection("live", "live");
      armWatchdog(socket);
    };
    socket.onmessage = function (message) {
      if (socket !== state.socket) return;
      armWatchdog(socket);
      var frame;
      try {
        frame = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      onFrame(socket, frame);
    };
    socket.onclose = function (event) {
      if (socket !== state.socket) return;
      clearTimeout(state.watchdog);
      state.socket = null;
      if (REFUSED[event.code]) {
        setConnection("closed: " + REFUSED[event.code], "closed");
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    var delay = Math.min(10000, 500 * Math.pow(2, state.attempts)) + Math.random() * 250;
    state.attempts += 1;
    setConnection("reconnecting in " + Math.ceil(delay / 1000) + " s", "reconnecting");
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function sendCommand(frame) {
    var socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      showError("Not connected; try again in a moment.");
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }

  var cancelButton = byId("cancel-button");
  if (cancelButton) {
    cancelButton.addEventListener("click", function () {
      if (!window.confirm("Cancel this run? Its open tool calls are cancelled too.")) return;
      var id = "cancel-" + state.nextCommandId++;
      if (sendCommand({ type: "cancel", id: id })) cancelButton.disabled = true;
    });
  }

  var noteForm = byId("note-form");
  if (noteForm) {
    noteForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var status = byId("note-status");
      var button = noteForm.querySelector("button");
      button.disabled = true;
      status.textContent = "Adding\u2026";
      fetch(noteForm.action, {
        method: "POST",
        body: new FormData(noteForm),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) {
          return response.json().then(function (body) {
            return { ok: response.ok, body: body };
          });
        })
        .then(function (result) {
          if (result.ok) {
            noteForm.reset();
            status.textContent = "Note added as event " + result.body.seq + ".";
          } else {
            status.textContent = "";
            showError(result.body.code + ": " + result.body.message);
          }
        })
        .catch(function (error) {
          status.textContent = "";
          showError("The note was not sent: " + error);
        })
        .finally(function () {
          button.disabled = false;
        });
    });
  }

  initial.events.forEach(function (frame) {
    render(frame, false);
  });
  setStatus(initial.status);
  connect();

  // For people debugging in the console, and for the browser tests.
  window.amStream = {
    state: state,
    drop: function () {
      if (state.socket) state.socket.close(4000, "dropped on purpose");
    },
  };
})();
