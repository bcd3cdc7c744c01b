// A WebSocket that reconnects by itself, with exponential backoff and jitter, and reports
// its state for the page's connection indicator:
//   "connecting" (first attempt), "live" (open), "reconnecting" (lost; trying again),
//   "offline" (the browser is offline, or the server refused us for good).
// The caller gives a function that builds the URL, so each attempt can carry the latest
// since_seq. A socket that goes silent for three heartbeats is treated as lost.

// Close codes of refused sockets (docs/websockets.md): trying again cannot help.
const REFUSED = {
  4400: "the server refused the request",
  4401: "you are logged out; log in again and reload",
  4403: "this page's origin is not allowed",
  4404: "not found, or you are no longer a member of its workspace",
};

export class LiveSocket {
  constructor({ url, onFrame, onState, heartbeatSeconds = 5 }) {
    this.url = url;
    this.onFrame = onFrame;
    this.onState = onState;
    this.silenceLimit = Math.max(3 * heartbeatSeconds, 10) * 1000;
    this.socket = null;
    this.attempts = 0;
    this.connects = 0;
    this.timer = null;
    this.watchdog = null;
    this.stopped = false;
    this.state = null;
    this.urls = []; // every URL connected to, in order (for debugging and the tests)
    window.addEventListener("online", () => {
      if (!this.socket && !this.stopped) this.connect();
    });
    window.addEventListener("offline", () => {
      if (this.socket) this.socket.close(4000, "browser offline");
    });
  }

  setState(state, detail) {
    this.state = state;
    this.onState(state, detail || "");
  }

  start() {
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    if (!navigator.onLine) {
      this.setState("offline", "the browser is offline");
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const path = this.url();
    this.urls.push(path);
    const socket = new WebSocket(scheme + location.host + path);
    this.socket = socket;
    this.connects += 1;
    this.setState(this.connects === 1 ? "connecting" : "reconnecting");
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.attempts = 0;
      this.setState("live");
      this.armWatchdog(socket);
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      this.armWatchdog(socket);
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      this.onFrame(frame, this);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      clearTimeout(this.watchdog);
      this.socket = null;
      if (REFUSED[event.code]) {
        this.stopped = true;
        this.setState("offline", REFUSED[event.code]);
        return;
      }
      this.scheduleReconnect();
    };
  }

  armWatchdog(socket) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (socket === this.socket) socket.close(4000, "no heartbeat");
    }, this.silenceLimit);
  }

  scheduleReconnect() {
    if (!navigator.onLine) {
      this.setState("offline", "the browser is offline");
      return;
    }
    const delay = Math.min(10000, 500 * 2 ** this.attempts) + Math.random() * 250;
    this.attempts += 1;
    this.setState("reconnecting", "next try in " + Math.ceil(delay / 1000) + " s");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  // Close the current socket as a network failure would; the socket reconnects itself.
  drop() {
    if (this.socket) this.socket.close(4000, "dropped on purpose");
  }

  send(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}

// Show a LiveSocket's state in an indicator element (text, class and data-state).
export function showConnection(element, state, detail) {
  const labels = { connecting: "connecting\u2026", live: "live", reconnecting: "reconnecting\u2026", offline: "offline" };
  element.textContent = labels[state] || state;
  element.className = "conn conn-" + state;
  element.dataset.state = state;
  element.title = detail || "";
}
