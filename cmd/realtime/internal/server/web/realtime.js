// A small client for the realtime protocol: it reconnects with exponential
// backoff and jitter, and rejoins its rooms after every reconnect.
export class RealtimeClient {
  constructor(url, { onMessage = () => {}, onState = () => {} } = {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.rooms = new Set();
    this.attempt = 0;
    this.closed = false;
    this.id = null;
    this.connect();
  }

  connect() {
    this.onState("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onState("open");
      for (const room of this.rooms) this.raw({ type: "join", room });
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === "system" && msg.data && msg.data.event === "connected") this.id = msg.data.connection_id;
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      this.onState("closed " + ev.code);
      if (this.closed) return;
      // Exponential backoff capped at 30 s, with full jitter so that
      // thousands of clients do not come back in step after an outage.
      const cap = Math.min(30000, 500 * 2 ** this.attempt++);
      let delay = Math.random() * cap;
      // A draining server (1001) or a busy one (1013) says when to come
      // back: "...reconnect_ms=NNN". Honour it, with jitter on top.
      const hint = /reconnect_ms=(\d+)/.exec(ev.reason || "");
      if (hint && (ev.code === 1001 || ev.code === 1013)) {
        this.attempt = 0;
        delay = Number(hint[1]) + Math.random() * 500;
      }
      setTimeout(() => this.connect(), delay);
    };
  }

  raw(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  join(room) { this.rooms.add(room); this.raw({ type: "join", room }); }
  leave(room) { this.rooms.delete(room); this.raw({ type: "leave", room }); }
  send(room, data, type = "chat") { this.raw({ type, room, data }); }
  direct(to, data) { this.raw({ type: "chat", to, data }); }
  presence(status) { this.raw({ type: "presence", data: { status } }); }
  close() { this.closed = true; this.ws && this.ws.close(1000); }
}
