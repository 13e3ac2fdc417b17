// A small client for the realtime protocol: it reconnects with exponential
// backoff and jitter, rejoins its rooms after every reconnect with the
// position of the last message it got in each (so the server sends what it
// missed, in order, exactly once), and tells the page when a room could not
// be recovered (its history was lost or is too old): the page should then
// reload that room's state from the application.
//
// Tokens that expire: give refreshToken, an async function returning a fresh
// token from the application. The client then refreshes the connection's
// token before it expires (the server says when, in the greeting's
// expires_at) without reconnecting, and if the server closes the socket
// because the token expired (close 3000) it reconnects with a fresh one.
// Without refreshToken, close 3000 is final.
export class RealtimeClient {
  constructor(url, { onMessage = () => {}, onState = () => {}, onUnrecovered = () => {}, refreshToken = null } = {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onUnrecovered = onUnrecovered;
    this.refreshToken = refreshToken;
    this.rooms = new Set();
    this.positions = new Map(); // room → {offset, epoch} of the last message got
    this.asked = new Set(); // rooms joined with a since position, waiting for the answer
    this.attempt = 0;
    this.closed = false;
    this.id = null;
    this.user = null;
    this.expiresAt = null; // unix seconds when the connection's token expires; null: never
    this.refreshTimer = null;
    this.refreshing = null; // the token sent in a refresh, until the server answers
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
      this.stopRefresh();
      this.onState("closed " + ev.code);
      if (this.closed) return;
      if (ev.code === 3000) { // the token expired
        if (!this.refreshToken) return; // nothing to renew it with: final
        this.reconnectWithFreshToken();
        return;
      }
      if (ev.code === 3003) return; // the application disconnected this user: final
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
      setTimeout(() => {
        // A token known to have expired meanwhile would be refused.
        if (this.refreshToken && this.expiresAt && Date.now() >= this.expiresAt * 1000) this.reconnectWithFreshToken();
        else this.connect();
      }, delay);
    };
  }

  // reconnectWithFreshToken asks the application for a token and connects
  // with it; if that fails, it tries again with backoff.
  async reconnectWithFreshToken() {
    if (this.closed) return;
    try {
      this.setToken(await this.refreshToken());
      this.connect();
    } catch {
      this.onState("token refresh failed");
      const delay = Math.random() * Math.min(30000, 500 * 2 ** this.attempt++);
      setTimeout(() => this.reconnectWithFreshToken(), delay);
    }
  }

  // setToken puts tok in the URL's token query parameter (the URL is
  // otherwise kept), for the next connect.
  setToken(tok) {
    const u = new URL(this.url);
    u.searchParams.set("token", tok);
    this.url = u.toString();
  }

  // scheduleRefresh renews the token about 30 s before it expires (halfway
  // there if it has less than a minute left), never sooner than in 1 s.
  scheduleRefresh() {
    this.stopRefresh();
    if (!this.refreshToken || !this.expiresAt) return;
    const left = this.expiresAt * 1000 - Date.now();
    const delay = Math.max(1000, left - Math.min(30000, left / 2));
    const ws = this.ws;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      let tok;
      try { tok = await this.refreshToken(); } catch {
        if (this.ws === ws) this.scheduleRefresh(); // try again while there is time; else close 3000 comes
        return;
      }
      if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return; // that connection is gone
      this.refreshing = tok;
      this.raw({ type: "refresh", data: { token: tok } });
    }, delay);
  }

  stopRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.refreshing = null;
  }

  // take keeps track of positions; it returns false for a message to drop
  // (one this client already had).
  take(msg) {
    const d = msg.data || {};
    if (msg.type === "system" && d.event === "connected") {
      this.id = d.connection_id;
      this.user = d.user_id;
      this.expiresAt = typeof d.expires_at === "number" ? d.expires_at : null;
      this.scheduleRefresh();
    }
    if (msg.type === "refresh" && msg.from === "system" && this.refreshing !== null) {
      // The server took the new token: a reconnect uses it too.
      this.setToken(this.refreshing);
      this.refreshing = null;
      this.expiresAt = typeof d.expires_at === "number" ? d.expires_at : null;
      this.scheduleRefresh();
    }
    if (msg.type === "error" && (d.code === "unauthorized" || d.code === "forbidden") && this.refreshing !== null) {
      // The refresh was refused: try again with another token while there is
      // time (when there is none, the server closes with 3000).
      this.refreshing = null;
      if (this.expiresAt && this.expiresAt * 1000 - Date.now() > 1000) this.scheduleRefresh();
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
  members(room) { this.raw({ type: "members", room }); } // answered by a "members" message
  close() { this.closed = true; this.stopRefresh(); this.ws && this.ws.close(1000); }
}
