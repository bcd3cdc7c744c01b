// The waterfall: a run's steps as bars over time, like a tracing UI. Bars are placed by
// their created/started/finished times relative to the run's start; unfinished ones
// grow to "now" while the run is live. The top lane shows the run's own status.
import { el, formatDuration, ms, statusLabel } from "./util.js";
import { WAITING, callsOfStep, statusSpans } from "./run_model.js";

const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000];

function tickStep(span) {
  return STEPS.find((step) => span / step <= 6) || span / 6;
}

function tickLabel(millis) {
  if (millis === 0) return "0";
  if (millis < 1000) return millis + " ms";
  if (millis < 60000) return millis / 1000 + " s";
  return Math.round(millis / 60000) + " m";
}

function statusClass(status) {
  if (WAITING.has(status)) return "wait";
  if (status === "RUNNING") return "running";
  return "pending";
}

// [{label, detail, kind, segments: [{from, to, cls, title}], point}]
function rows(state, statusEvents, now) {
  const out = [];
  const spans = statusSpans(state.run, statusEvents, now);
  out.push({
    label: "run",
    detail: "",
    kind: "run",
    segments: spans.map((span) => ({
      from: span.from,
      to: span.to,
      cls: "seg-" + statusClass(span.status),
      title: statusLabel(span.status) + " \u00b7 " + formatDuration(span.to - span.from),
    })),
  });
  const steps = [...state.steps.values()].sort((a, b) => a.index - b.index);
  let turn = 0;
  for (const step of steps) {
    const start = ms(step.created_at);
    const end = step.finished_at ? ms(step.finished_at) : step.status === "STARTED" ? now : start;
    if (step.kind === "MODEL_CALL") {
      turn += 1;
      out.push({
        label: "model",
        detail: "turn " + turn,
        kind: "model",
        step: step.index,
        duration: end - start,
        segments: [{ from: start, to: end, cls: "seg-model" + (step.status === "FAILED" ? " seg-failed" : step.status === "STARTED" ? " seg-live" : ""), title: "model turn " + turn + " \u00b7 " + formatDuration(end - start) }],
      });
    } else if (step.kind === "TOOL_CALL") {
      for (const call of callsOfStep(state, step.index)) {
        const created = ms(call.created_at);
        const started = call.started_at ? ms(call.started_at) : null;
        const finished = call.finished_at ? ms(call.finished_at) : null;
        const segments = [];
        const waitEnd = started ?? finished ?? now;
        if (waitEnd > created) segments.push({ from: created, to: waitEnd, cls: "seg-wait", title: call.tool_name + " waiting \u00b7 " + formatDuration(waitEnd - created) });
        if (started !== null) {
          const to = finished ?? now;
          const failed = call.status === "FAILED" || call.status === "CANCELLED";
          segments.push({ from: started, to, cls: "seg-tool" + (failed ? " seg-failed" : finished === null ? " seg-live" : ""), title: call.tool_name + " \u00b7 " + formatDuration(to - started) });
        } else if (finished !== null && segments.length === 0) {
          segments.push({ from: created, to: finished, cls: "seg-tool seg-failed", title: call.tool_name + " refused" });
        }
        out.push({
          label: call.tool_name,
          detail: "tool",
          kind: "tool",
          step: step.index,
          duration: (finished ?? now) - created,
          segments,
        });
      }
    } else if (step.kind === "MESSAGE" || step.kind === "ERROR") {
      out.push({ label: step.kind === "MESSAGE" ? "answer" : "error", detail: "", kind: step.kind.toLowerCase(), step: step.index, point: start, segments: [] });
    }
  }
  return out;
}

export function renderWaterfall(container, state, statusEvents, now) {
  const t0 = ms(state.run.created_at);
  const t1 = Math.max(state.run.finished_at ? ms(state.run.finished_at) : now, t0 + 1000);
  const span = t1 - t0;
  const pct = (t) => (Math.min(Math.max(t - t0, 0), span) / span) * 100;
  const step = tickStep(span);
  const ticks = [];
  for (let t = 0; t <= span; t += step) {
    ticks.push(el("span", { class: "wf-tick", style: "left:" + (t / span) * 100 + "%" }, tickLabel(t)));
  }
  const body = [el("div", { class: "wf-row wf-axis" }, el("div", { class: "wf-label" }), el("div", { class: "wf-track" }, ticks))];
  for (const row of rows(state, statusEvents, now)) {
    const track = el("div", { class: "wf-track" });
    for (const tick of ticks) track.append(el("span", { class: "wf-grid", style: tick.getAttribute("style") }));
    for (const seg of row.segments) {
      const left = pct(seg.from);
      const width = Math.max(pct(seg.to) - left, 0.5);
      track.append(el("span", { class: "wf-bar " + seg.cls, style: "left:" + left + "%;width:" + width + "%", title: seg.title }));
    }
    if (row.point !== undefined) track.append(el("span", { class: "wf-point", style: "left:" + pct(row.point) + "%" }));
    body.push(
      el(
        "div",
        { class: "wf-row wf-" + row.kind, dataset: row.step ? { step: String(row.step) } : {} },
        el("div", { class: "wf-label" }, el("span", { class: "wf-name" }, row.label), row.detail ? el("span", { class: "wf-detail" }, row.detail) : null, row.duration !== undefined ? el("span", { class: "wf-dur" }, formatDuration(row.duration)) : null),
        track,
      ),
    );
  }
  container.replaceChildren(...body);
}
