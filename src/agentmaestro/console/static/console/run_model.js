// A run's state in the page: the server's snapshot, then each later event folded into it,
// the way agentmaestro.runs.replay.fold does on the server. Pure data, no DOM.

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
export const WAITING = new Set(["WAITING_FOR_APPROVAL", "WAITING_FOR_TOOLS", "WAITING_FOR_SUBRUN"]);
const CALL_FINAL = new Set(["SUCCEEDED", "FAILED", "REJECTED", "CANCELLED"]);

// A model turn announced completed adds its usage to the run's totals (runs/replay.py).
function addUsage(run, p) {
  const usage = p.payload && p.payload.usage;
  if (p.status !== "COMPLETED" || !usage) return;
  run.usage = {
    input_tokens: run.usage.input_tokens + (usage.input_tokens || 0),
    output_tokens: run.usage.output_tokens + (usage.output_tokens || 0),
  };
}

// positions: tool call id -> its position among its step's calls (not in the snapshot).
export function fromSnapshot(snapshot, positions) {
  return {
    run: { ...snapshot.run, usage: { ...snapshot.run.usage } },
    steps: new Map(snapshot.steps.map((step) => [step.index, { ...step }])),
    calls: new Map(snapshot.tool_calls.map((call) => [call.id, { ...call, position: positions[call.id] ?? 0 }])),
    lastSeq: snapshot.last_seq,
  };
}

// Fold one event (already known to be the next seq) into the state. Returns what it
// touched, so the page re-renders only that: {run, step: index, call: id}.
export function applyEvent(state, frame) {
  const p = frame.payload || {};
  const run = state.run;
  // A step's and a new call's times are the event's own (docs/events.md).
  const at = frame.created_at;
  state.lastSeq = frame.seq;
  switch (frame.event_type) {
    case "run.status_changed":
      run.status = p.to_status;
      if (p.to_status === "RUNNING" && !run.started_at) run.started_at = p.at;
      if (TERMINAL.has(p.to_status)) {
        run.finished_at = p.at;
        if (p.output !== undefined && p.output !== null) run.output = p.output;
        if (p.error) run.error = p.error;
      }
      return { run: true };
    case "run.usage_updated":
      // Older logs: the totals after a turn (the same sum as below).
      run.usage = { input_tokens: p.input_tokens, output_tokens: p.output_tokens };
      return { run: true };
    case "step.created":
      addUsage(run, p);
      state.steps.set(p.index, {
        index: p.index,
        kind: p.kind,
        status: p.status,
        payload: p.payload,
        created_at: at,
        finished_at: p.status === "STARTED" ? null : at,
      });
      run.step_count = Math.max(run.step_count, p.index);
      return { run: true, step: p.index };
    case "step.updated": {
      addUsage(run, p);
      const step = state.steps.get(p.index);
      if (step) {
        step.status = p.status;
        step.finished_at = p.status === "STARTED" ? null : at;
        if (p.payload != null) step.payload = p.payload;
      }
      return { step: p.index };
    }
    case "tool_call.created": {
      const finished = CALL_FINAL.has(p.status);
      // A step's calls are created in position order, so this one comes after the others.
      state.calls.set(p.id, {
        position: callsOfStep(state, p.step_index).length,
        id: p.id,
        step_index: p.step_index,
        tool_name: p.tool_name,
        provider_call_id: p.provider_call_id,
        arguments: p.arguments,
        status: p.status,
        // A call created finished (refused, or a built-in run inside its step) carries
        // its outcome.
        attempt: p.attempt ?? 0,
        result: p.result ?? null,
        error: p.error ?? null,
        created_at: at,
        started_at: finished && p.attempt ? at : null,
        finished_at: finished ? at : null,
      });
      run.tool_call_count += 1;
      return { run: true, call: p.id, step: p.step_index };
    }
    case "tool_call.updated": {
      const call = state.calls.get(p.id);
      if (!call) return {};
      Object.assign(call, {
        status: p.status,
        attempt: p.attempt,
        result: p.result,
        error: p.error,
        started_at: p.started_at,
        finished_at: p.finished_at,
      });
      return { call: p.id, step: call.step_index };
    }
    default:
      return {};
  }
}

// A step's tool calls in the order the model asked for them.
export function callsOfStep(state, index) {
  return [...state.calls.values()]
    .filter((call) => call.step_index === index)
    .sort((a, b) => a.position - b.position);
}

// The run's status over time, from its status_changed events: [{status, from, to}], with
// times in ms. Runs whose early events are not on the page start where the page knows.
export function statusSpans(run, statusEvents, now) {
  const spans = [];
  let status = "PENDING";
  let from = Date.parse(run.created_at);
  for (const frame of statusEvents) {
    const at = Date.parse(frame.payload.at);
    if (at > from) spans.push({ status, from, to: at });
    status = frame.payload.to_status;
    from = at;
  }
  const end = run.finished_at ? Date.parse(run.finished_at) : now;
  if (!TERMINAL.has(status) && end > from) spans.push({ status, from, to: end });
  return spans;
}
