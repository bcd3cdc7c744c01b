// Small helpers shared by the console's page modules: building elements, formatting
// values, times and durations. No framework: the pages are server-rendered and these
// modules only add what changes live.

const SUMMARY_CHARS = 160;

// el("div", {class: "x", dataset: {seq: "1"}}, child, "text", ...)
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") node.setAttribute("style", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// JSON with sorted keys, so a value reads the same live and after a reload (the database
// may give an object's keys in another order than the live frame had them).
export function stableJson(value, indent) {
  return JSON.stringify(
    value,
    (key, inner) => {
      if (inner && typeof inner === "object" && !Array.isArray(inner)) {
        const sorted = {};
        for (const k of Object.keys(inner).sort()) sorted[k] = inner[k];
        return sorted;
      }
      return inner;
    },
    indent,
  );
}

export function clip(text, limit = SUMMARY_CHARS) {
  text = String(text);
  return text.length > limit ? text.slice(0, limit - 1) + "\u2026" : text;
}

export function ms(iso) {
  return iso ? Date.parse(iso) : NaN;
}

export function formatDuration(millis) {
  if (!Number.isFinite(millis)) return "";
  const seconds = Math.max(0, millis) / 1000;
  if (seconds < 1) return Math.round(seconds * 1000) + " ms";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  const minutes = Math.floor(seconds / 60);
  const rest = Math.floor(seconds % 60);
  if (minutes < 60) return minutes + " m " + String(rest).padStart(2, "0") + " s";
  return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " m";
}

export function shortTime(iso) {
  // "2026-11-25T10:11:12.345678+00:00" -> "10:11:12.345" (UTC, as stored)
  const match = /T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(iso || "");
  return match ? match[1] + (match[2] || "") : iso || "";
}

export function statusLabel(status) {
  return String(status).replace(/_/g, " ").toLowerCase();
}

export function badge(status, extraClass) {
  return el(
    "span",
    { class: "badge status-" + String(status).toLowerCase() + (extraClass ? " " + extraClass : ""), dataset: { status } },
    statusLabel(status),
  );
}

export function readJson(id) {
  return JSON.parse(document.getElementById(id).textContent);
}
