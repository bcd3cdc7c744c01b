// The run page. The server embedded the run's snapshot (its state as of last_seq) and the
// events up to last_seq; this module renders them, then follows the run over
// /ws/runs/<id>/?since_seq=<last applied seq>, folding each event into the state exactly
// once, in seq order: a seq already applied is dropped, a gap makes the socket reconnect
// from the last applied seq. Streamed model text (token.delta frames, never stored) shows
// in the running model turn until the durable step.updated event replaces it.
import { LiveSocket, showConnection } from "./live_socket.js";
import { TERMINAL, applyEvent, callsOfStep, fromSnapshot } from "./run_model.js";
import { renderWaterfall } from "./waterfall.js";
import { badge, clip, el, formatDuration, ms, readJson, shortTime, stableJson, statusLabel } from "./util.js";

const initial = readJson("run-initial");
const byId = (id) => document.getElementById(id);
const clockOffset = Date.parse(initial.server_now) - Date.now();
const now = () => Date.now() + clockOffset;

const state = fromSnapshot(initial.snapshot, initial.call_positions);
const view = {
  statusEvents: [], // run.status_changed frames, for the waterfall's run lane
  stepIds: new Map(Object.entries(initial.step_ids).map(([id, index]) => [Number(id), index])),
  streaming: new Map(), // step index -> text streamed so far
  pendingDeltas: new Map(), // step id not yet matched to a step -> text
  applied: [], // every seq shown, in order (for tests and debugging)
  dropped: 0,
  deltasShown: 0, // token.delta frames shown in a running model turn
  connectionLog: [],
  nextCommand: 1,
};

// ---- the event log ---------------------------------------------------------------

function summarize(frame) {
  const p = frame.payload || {};
  switch (frame.event_type) {
    case "run.created":
      return "input " + clip(stableJson(p.input));
    case "run.status_changed": {
      let text = statusLabel(p.from_status) + " \u2192 " + statusLabel(p.to_status);
      if (p.reason) text += " (" + p.reason + ")";
      if (p.error) text += ": " + p.error.message;
      return clip(text);
    }
    case "run.note":
      return clip("[" + p.source + "] " + p.message);
    case "run.usage_updated":
      return p.input_tokens + " in / " + p.output_tokens + " out tokens in total";
    case "step.created":
      return clip("step " + p.index + " " + p.kind + " " + statusLabel(p.status));
    case "step.updated":
      return "step " + p.index + " \u2192 " + statusLabel(p.status);
    case "tool_call.created":
      return clip(p.tool_name + "(" + stableJson(p.arguments) + ")");
    case "tool_call.updated":
      return clip("call " + String(p.id).slice(0, 8) + " \u2192 " + statusLabel(p.status) + (p.attempt > 1 ? " (attempt " + p.attempt + ")" : ""));
    default:
      return clip(stableJson(p));
  }
}

function logEvent(frame) {
  const time = el("span", { class: "ev-time", title: frame.created_at }, shortTime(frame.created_at));
  byId("event-log-body").append(
    el("li", { dataset: { seq: String(frame.seq), eventType: frame.event_type } },
      el("span", { class: "ev-seq" }, String(frame.seq)),
      el("span", { class: "ev-type" }, frame.event_type),
      time,
      el("span", { class: "ev-summary" }, summarize(frame)),
    ),
  );
  byId("event-count").textContent = String(view.applied.length);
}

// ---- the timeline ----------------------------------------------------------------

function offset(iso) {
  const t = ms(iso) - ms(state.run.created_at);
  return Number.isFinite(t) ? "+" + formatDuration(t) : "";
}

function jsonBlock(label, value, cls) {
  return el("div", { class: "iob " + (cls || "") }, el("span", { class: "io-label" }, label), el("pre", {}, stableJson(value, 2)));
}

function stepDuration(step) {
  if (step.kind === "TOOL_CALL") {
    const n = callsOfStep(state, step.index).length;
    return n + (n === 1 ? " call" : " calls");
  }
  if (step.kind !== "MODEL_CALL") return "";
  const end = step.finished_at ? ms(step.finished_at) : step.status === "STARTED" ? now() : NaN;
  return formatDuration(end - ms(step.created_at));
}

function modelTurnNumber(step) {
  let turn = 0;
  for (const other of state.steps.values()) if (other.kind === "MODEL_CALL" && other.index <= step.index) turn += 1;
  return turn;
}

function callBlock(call) {
  const end = call.finished_at ? ms(call.finished_at) : now();
  const took = call.started_at ? formatDuration(end - ms(call.started_at)) : "";
  const outcome = call.error != null
    ? jsonBlock("error", call.error, "io-error")
    : call.result != null
      ? jsonBlock("result", call.result, "io-result")
      : el("div", { class: "iob io-pending" }, el("span", { class: "io-label" }, "result"), el("span", { class: "muted" }, TERMINAL.has(call.status) || call.status === "SUCCEEDED" ? "none" : "waiting\u2026"));
  return el("div", { class: "call", dataset: { callId: call.id, status: call.status } },
    el("div", { class: "call-head" },
      el("code", { class: "call-name" }, call.tool_name),
      badge(call.status),
      call.attempt > 1 ? el("span", { class: "muted" }, "attempt " + call.attempt) : null,
      el("span", { class: "meta" }, took),
    ),
    el("div", { class: "call-io" }, jsonBlock("arguments", call.arguments, "io-args"), outcome),
  );
}

function stepBody(step) {
  const p = step.payload || {};
  switch (step.kind) {
    case "MODEL_CALL": {
      if (step.status === "STARTED") {
        const text = view.streaming.get(step.index) || "";
        return [el("p", { class: "say streaming" }, text || el("span", { class: "muted" }, "thinking\u2026"))];
      }
      if (p.error) return [el("p", { class: "say error-text" }, p.error.code + ": " + p.error.message)];
      const parts = [];
      if (p.text) parts.push(el("p", { class: "say" }, p.text));
      if (p.tool_calls && p.tool_calls.length) {
        parts.push(el("p", { class: "asks" }, "asks for ", ...p.tool_calls.map((c) => el("code", { class: "chip" }, c.name))));
      }
      if (!parts.length) {
        const why = step.status === "CANCELLED" ? "cancelled before it answered" : "(no text)";
        parts.push(el("p", { class: "muted" }, why));
      }
      return parts;
    }
    case "TOOL_CALL": {
      const calls = callsOfStep(state, step.index);
      return calls.length ? calls.map(callBlock) : [el("p", { class: "muted" }, "no calls")];
    }
    case "OBSERVATION": {
      const value = p.error != null ? p.error : p.result;
      return [el("p", { class: "obs" }, el("code", {}, p.tool_name || "tool"), " \u2192 ", el("span", { class: p.error != null ? "error-text" : "" }, clip(stableJson(value), 240)))];
    }
    case "MESSAGE":
      return [el("p", { class: "answer" }, p.text == null ? stableJson(p) : String(p.text))];
    case "ERROR":
      return [el("p", { class: "error-text" }, p.message || p.error?.message || stableJson(p))];
    default:
      return [el("pre", {}, stableJson(p, 2))];
  }
}

const KIND = {
  MODEL_CALL: ["model", "Model"],
  TOOL_CALL: ["tool", "Tool calls"],
  OBSERVATION: ["obs", "Observation"],
  MESSAGE: ["message", "Final answer"],
  ERROR: ["error", "Error"],
  SUBRUN: ["subrun", "Sub-run"],
};

function stepItem(step) {
  const [cls, title] = KIND[step.kind] || ["other", step.kind];
  const usage = step.kind === "MODEL_CALL" && step.payload && step.payload.usage;
  const heading = step.kind === "MODEL_CALL" ? title + " \u00b7 turn " + modelTurnNumber(step) : title;
  return el("li", { class: "item kind-" + cls, dataset: { stepIndex: String(step.index), status: step.status, t: String(ms(step.created_at)) } },
    el("div", { class: "item-head" },
      el("span", { class: "item-title" }, heading),
      step.status === "COMPLETED" ? null : badge(step.status),
      usage ? el("span", { class: "meta" }, usage.input_tokens + " in \u00b7 " + usage.output_tokens + " out") : null,
      el("span", { class: "meta dur" }, stepDuration(step)),
      el("span", { class: "meta at", title: step.created_at }, offset(step.created_at)),
    ),
    el("div", { class: "item-body" }, stepBody(step)),
  );
}

function noteItem(frame) {
  const p = frame.payload || {};
  return el("li", { class: "item kind-note", dataset: { noteSeq: String(frame.seq), t: String(ms(frame.created_at)) } },
    el("div", { class: "item-head" }, el("span", { class: "item-title" }, "Note"), el("span", { class: "meta" }, p.source), el("span", { class: "meta at" }, offset(frame.created_at))),
    el("div", { class: "item-body" }, el("p", {}, p.message)),
  );
}

// Put an item in time order (steps also keep their index order, which is time order).
function place(item, existing) {
  const list = byId("timeline");
  byId("timeline-empty").hidden = true;
  if (existing) {
    existing.replaceWith(item);
    return;
  }
  const t = Number(item.dataset.t);
  const after = [...list.children].find((other) => Number(other.dataset.t) > t);
  list.insertBefore(item, after || null);
}

function renderStep(index) {
  const step = state.steps.get(index);
  if (!step) return;
  place(stepItem(step), byId("timeline").querySelector('[data-step-index="' + index + '"]'));
}

// ---- the header, the outcome, the waterfall --------------------------------------

function renderRun() {
  const run = state.run;
  const status = byId("run-status");
  status.className = "badge big status-" + run.status.toLowerCase();
  status.dataset.status = run.status;
  status.textContent = statusLabel(run.status);
  const cancel = byId("cancel-button");
  if (cancel) cancel.hidden = TERMINAL.has(run.status);
  byId("stat-steps").textContent = String(run.step_count);
  byId("stat-calls").textContent = String(run.tool_call_count);
  byId("stat-tokens").textContent = run.usage.input_tokens + " in \u00b7 " + run.usage.output_tokens + " out";
  renderClock();
  const outcome = byId("outcome");
  if (run.status === "COMPLETED") {
    const text = run.output && typeof run.output === "object" && "text" in run.output ? String(run.output.text) : stableJson(run.output, 2);
    outcome.className = "outcome outcome-ok";
    outcome.replaceChildren(el("h2", {}, "Answer"), el("p", { class: "answer" }, text));
    outcome.hidden = false;
  } else if (run.error) {
    outcome.className = "outcome outcome-bad";
    outcome.replaceChildren(el("h2", {}, run.status === "CANCELLED" ? "Cancelled" : "Failed"), el("p", {}, el("code", {}, run.error.code), " ", run.error.message));
    outcome.hidden = false;
  }
}

function renderClock() {
  const run = state.run;
  const start = ms(run.started_at || run.created_at);
  const end = run.finished_at ? ms(run.finished_at) : now();
  byId("stat-duration").textContent = run.started_at || run.finished_at ? formatDuration(end - start) : "not started";
  renderWaterfall(byId("waterfall"), state, view.statusEvents, now());
  // Running steps show a growing duration.
  for (const item of byId("timeline").querySelectorAll('[data-status="STARTED"] .dur')) {
    const step = state.steps.get(Number(item.closest("[data-step-index]").dataset.stepIndex));
    if (step) item.textContent = stepDuration(step);
  }
}

// ---- events and frames -----------------------------------------------------------

function record(frame) {
  view.applied.push(frame.seq);
  if (frame.event_type === "run.status_changed") view.statusEvents.push(frame);
  if (frame.event_type === "run.note") place(noteItem(frame));
  logEvent(frame);
}

function onEvent(frame) {
  if (frame.seq <= state.lastSeq) {
    view.dropped += 1; // already applied: a duplicate delivery
    return true;
  }
  if (frame.seq !== state.lastSeq + 1) return false; // a gap: reconnect to fill it
  const touched = applyEvent(state, frame);
  record(frame);
  if (touched.step !== undefined && touched.step !== null) {
    const step = state.steps.get(touched.step);
    if (step && step.kind === "MODEL_CALL") {
      if (step.status === "STARTED") adoptPendingDeltas(step);
      else view.streaming.delete(step.index);
    }
    renderStep(touched.step);
  }
  if (touched.run) renderRun();
  return true;
}

function startedModelSteps() {
  return [...state.steps.values()].filter((s) => s.kind === "MODEL_CALL" && s.status === "STARTED");
}

// token.delta frames name the step by database id, which events do not carry: the page
// knows the ids of the steps that existed when it loaded; a newer step gets the deltas
// of the one unknown id (a run has one model call running at a time).
function adoptPendingDeltas(step) {
  const known = new Set(view.stepIds.values());
  if (known.has(step.index) || view.pendingDeltas.size !== 1) return;
  const [[id, text]] = view.pendingDeltas;
  view.stepIds.set(id, step.index);
  view.pendingDeltas.clear();
  view.streaming.set(step.index, (view.streaming.get(step.index) || "") + text);
}

function onDelta(frame) {
  // Frames name their step by index (step_index); older servers sent only its row id.
  let index = Number.isInteger(frame.step_index) ? frame.step_index : view.stepIds.get(frame.step_id);
  if (index === undefined) {
    const known = new Set(view.stepIds.values());
    const unmatched = startedModelSteps().filter((s) => !known.has(s.index));
    if (unmatched.length === 1) {
      index = unmatched[0].index;
      view.stepIds.set(frame.step_id, index);
    } else {
      view.pendingDeltas.set(frame.step_id, (view.pendingDeltas.get(frame.step_id) || "") + frame.text);
      return;
    }
  }
  const step = state.steps.get(index);
  if (!step || step.status !== "STARTED") return; // the durable text is already here
  view.streaming.set(index, (view.streaming.get(index) || "") + frame.text);
  view.deltasShown += 1;
  const say = byId("timeline").querySelector('[data-step-index="' + index + '"] .say');
  if (say) say.textContent = view.streaming.get(index);
  else renderStep(index);
}

function showError(text) {
  byId("errors").append(el("p", {}, text));
}

function onFrame(frame, socket) {
  switch (frame.type) {
    case "event":
      if (!onEvent(frame)) socket.drop();
      break;
    case "token.delta":
      onDelta(frame);
      break;
    case "error":
      showError((frame.code || "error") + ": " + (frame.message || "the server refused the command"));
      if (byId("cancel-button")) byId("cancel-button").disabled = false;
      break;
    default:
      break; // heartbeats, pongs, acks: the events they imply arrive as events
  }
}

// ---- start -----------------------------------------------------------------------

for (const step of [...state.steps.values()].sort((a, b) => a.index - b.index)) renderStep(step.index);
// The embedded events are already in the snapshot: log them, do not fold them again.
const firstEmbedded = initial.events.length ? initial.events[0].seq : state.lastSeq + 1;
if (firstEmbedded > 1) byId("event-log-omitted").hidden = false;
for (const frame of initial.events) record(frame);
renderRun();

const socket = new LiveSocket({
  url: () => "/ws/runs/" + initial.run_id + "/?since_seq=" + state.lastSeq,
  onFrame,
  onState: (connection, detail) => {
    view.connectionLog.push(connection);
    showConnection(byId("connection"), connection, detail);
  },
  heartbeatSeconds: initial.heartbeat_seconds,
});
socket.start();

setInterval(() => {
  if (!TERMINAL.has(state.run.status)) renderClock();
}, 250);

const cancel = byId("cancel-button");
if (cancel) {
  cancel.addEventListener("click", () => {
    if (!window.confirm("Cancel this run? Its open tool calls are cancelled too.")) return;
    if (socket.send({ type: "cancel", id: "cancel-" + view.nextCommand++ })) cancel.disabled = true;
    else showError("Not connected; try again in a moment.");
  });
}

// For people debugging in the browser console, and for the browser tests.
window.amRun = { state, view, socket, drop: () => socket.drop() };
