// A small client for the realtime protocol: it reconnects with exponential
// backoff and jitter, rejoins its rooms after every reconnect with the
// position of the last message it got in each (so the server sends what it
// missed, in order, exactly once), and tells the page when a room could not
// be recovered (its history was lost or is too old): the page should then
// reload that room's state from the application.
export class RealtimeClient {
  constructor(url, { onMessage = () => {}, onState = () => {}, onUnrecovered = () => {} } = {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onUnrecovered = onUnrecovered;
    this.rooms = new Set();
    this.positions = new Map(); // room → {offset, epoch} of the last message got
    this.asked = new Set(); // rooms joined with a since position, waiting for the answer
    this.attempt = 0;
    this.closed = false;
    this.id = null;
    this.user = null;
    this.connect();
  }

  connect() {
    this.onState("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onState("open");
      for (const room of this.rooms) this.sendJoin(room);
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (this.take(msg)) this.onMessage(msg);
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

  // take keeps track of positions; it returns false for a message to drop
  // (one this client already had).
  take(msg) {
    const d = msg.data || {};
    if (msg.type === "system" && d.event === "connected") {
      this.id = d.connection_id;
      this.user = d.user_id;
    }
    if (msg.type === "error" && d.code === "unavailable" && msg.room && this.rooms.has(msg.room)) {
      // The room could not be joined now (its history is in a Redis that
      // is away): join again shortly.
      setTimeout(() => { if (this.rooms.has(msg.room)) this.sendJoin(msg.room); }, 1000 + Math.random() * 1000);
    }
    if (msg.type === "system" && d.event === "history_gap" && msg.room) {
      this.onUnrecovered(msg.room); // the server could not get some messages of the room
    }
    // A join acknowledgement: our own join, with the room's position.
    if (msg.type === "join" && msg.from === "system" && typeof d.epoch === "string" && d.user_id === this.user && this.asked.has(msg.room) === ("recovered" in d)) {
      this.asked.delete(msg.room);
      if (d.recovered === true) return true; // what we missed follows, then live messages
      if (d.recovered === false) this.onUnrecovered(msg.room);
      if (d.epoch) this.positions.set(msg.room, { offset: d.offset, epoch: d.epoch });
      return true;
    }
    if (msg.room && typeof msg.offset === "number" && msg.epoch) {
      const pos = this.positions.get(msg.room);
      if (pos && pos.epoch === msg.epoch && msg.offset <= pos.offset) return false;
      // A live message of another epoch: the room's history was lost (the
      // server restarted without it): what came before may be missing.
      if (pos && pos.epoch !== msg.epoch) this.onUnrecovered(msg.room);
      this.positions.set(msg.room, { offset: msg.offset, epoch: msg.epoch });
    }
    return true;
  }

  sendJoin(room) {
    const pos = this.positions.get(room);
    if (pos) {
      this.asked.add(room);
      this.raw({ type: "join", room, data: { since: pos } });
    } else {
      this.asked.delete(room);
      this.raw({ type: "join", room });
    }
  }

  raw(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  join(room) { this.rooms.add(room); this.sendJoin(room); }
  leave(room) { this.rooms.delete(room); this.positions.delete(room); this.raw({ type: "leave", room }); }
  send(room, data, type = "chat") { this.raw({ type, room, data }); }
  direct(to, data) { this.raw({ type: "chat", to, data }); }
  presence(status) { this.raw({ type: "presence", data: { status } }); }
  close() { this.closed = true; this.ws && this.ws.close(1000); }
}
