// realtime.js: a browser client for the realtime protocol (an ES module, no
// build step; types in realtime.d.ts, usage in README.md).
//
// What it does by itself:
//   - reconnects with exponential backoff and full jitter, honouring the
//     server's hints (close 1001/1013 with "reconnect_ms=NNN");
//   - detects a dead link: a browser cannot see the server's WebSocket pings,
//     so after heartbeatIntervalMs of silence it sends {"type":"ping"} and
//     drops the connection if nothing comes back within heartbeatTimeoutMs;
//   - rejoins its rooms after every reconnect with the position of the last
//     message it got in each, so that the server sends what it missed, in
//     order, exactly once; it says "unrecovered" for a room whose history was
//     lost (reload that room's state from the application);
//   - restores the presence status last set with presence();
//   - keeps sends made while disconnected in a bounded buffer and sends them,
//     in order, once the rooms are rejoined; a send that does not fit is
//     rejected (send() returns a Promise) instead of being dropped silently;
//   - renews an expiring token (refreshToken) before expires_at, and
//     reconnects with a fresh one after close 3000;
//   - tells the page what happens through typed events (an EventTarget):
//     "state", "message", "connected", "joined", "unrecovered", "presence",
//     "error".

const DEFAULTS = Object.freeze({
  refreshToken: null,
  protocols: undefined,
  autoConnect: true,
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  hintJitterMs: 500,
  stableAfterMs: 5000,
  connectTimeoutMs: 10000,
  heartbeatIntervalMs: 20000,
  heartbeatTimeoutMs: 10000,
  joinTimeoutMs: 5000,
  bufferMaxMessages: 100,
  bufferMaxBytes: 256 * 1024,
  WebSocket: undefined,
});

// Close codes the client itself reports (a server never sends them).
export const CLOSE_HEARTBEAT_TIMEOUT = 4000; // no answer to a ping in time
export const CLOSE_CONNECT_TIMEOUT = 4001; // the opening handshake took too long

const CLOSE_TEXT = {
  1000: "closed",
  1001: "the server is going away",
  1002: "protocol error",
  1003: "unsupported data",
  1006: "connection lost",
  1007: "invalid data",
  1008: "closed by the server's policy",
  1009: "message too big",
  1011: "server error",
  1012: "the server is restarting",
  1013: "the server is busy",
  3000: "the token expired",
  3003: "disconnected by the server",
  [CLOSE_HEARTBEAT_TIMEOUT]: "no answer from the server",
  [CLOSE_CONNECT_TIMEOUT]: "the server did not answer in time",
};

// describeClose says in words why a connection ended: the code's meaning,
// with the server's reason when it adds something ("closed by the server's
// policy (rate limit exceeded)").
export function describeClose(code, reason = "") {
  const base = CLOSE_TEXT[code] || `closed with code ${code}`;
  const why = String(reason || "").replace(/;?\s*reconnect_ms=\d+/, "").trim();
  if (!why || base.toLowerCase().includes(why.toLowerCase())) return base;
  return `${base} (${why})`;
}

function stateText(d) {
  switch (d.state) {
    case "idle": return "not connected";
    case "connecting": return "connecting…";
    case "open": return "connected";
    case "reconnecting": {
      const when = d.retryInMs > 0 ? `in ${(d.retryInMs / 1000).toFixed(1)} s` : "now";
      return `${d.why || describeClose(d.code, d.reason)}; reconnecting ${when}`;
    }
    default: return d.code === 1000 ? "disconnected" : `${describeClose(d.code, d.reason)}; not reconnecting`;
  }
}

// RealtimeError is how a send that could not go out is rejected; code says
// why: "buffer_full", "closed" or "left".
export class RealtimeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
  }
}

function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++; } // a surrogate pair
    else n += 3;
  }
  return n;
}

export class RealtimeClient extends EventTarget {
  #opts;
  #url;
  #state = "idle";
  #ws = null;
  #final = false; // closed for good: close(), or a final close code
  #attempt = 0; // failed attempts since the last stable connection
  #retryTimer = null;
  #connectTimer = null;
  #openedAt = 0; // when the current connection opened; 0: it did not

  #rooms = new Set();
  #positions = new Map(); // room → {offset, epoch} of the last message got
  #asked = new Set(); // rooms joined with a since position, waiting for the answer
  // Rooms whose join this connection sent and has not seen acknowledged (nor
  // given up on after joinTimeoutMs), with that timer: sends to them and the
  // presence status wait, so as not to reach a room before we are its member.
  #joining = new Map();
  #presenceDue = false; // the status is to be sent once no join is pending

  #buffer = []; // {text, bytes, room, resolve, reject}, in send order
  #bufferBytes = 0;
  #status = null; // the last status given to presence()

  #connectionId = null;
  #userId = null;
  #expiresAt = null; // unix seconds when the connection's token expires; null: never
  #refreshTimer = null;
  #refreshing = null; // the token sent in a refresh, until the server answers

  #lastRx = 0; // when the last message came
  #pingSentAt = 0; // when the unanswered ping went out; 0: none
  #heartbeatTimer = null;
  #onOnline = null;

  constructor(url, options = {}) {
    super();
    this.#url = String(url);
    this.#opts = { ...DEFAULTS, ...options };
    if (this.#opts.autoConnect) {
      // Connect once the caller has added its listeners (they see "connecting").
      queueMicrotask(() => { if (this.#state === "idle") this.connect(); });
    }
  }

  get state() { return this.#state; }
  get connectionId() { return this.#connectionId; }
  get userId() { return this.#userId; }
  get expiresAt() { return this.#expiresAt; }
  get rooms() { return [...this.#rooms]; }
  get buffered() { return this.#buffer.length; }
  get bufferedBytes() { return this.#bufferBytes; }
  get url() { return this.#url; }

  // on adds a listener for the detail of type's events and returns a
  // function that removes it.
  on(type, fn) {
    const listener = (ev) => fn(ev.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  // connect starts connecting (the constructor does it unless autoConnect
  // is false); after close() it starts again, with the same rooms.
  connect() {
    if (this.#state !== "idle" && this.#state !== "closed") return;
    this.#final = false;
    this.#attempt = 0;
    if (!this.#onOnline && typeof globalThis.addEventListener === "function") {
      // Back online: try now rather than when the backoff says.
      this.#onOnline = () => { if (this.#state === "reconnecting" && this.#retryTimer !== null) this.#reconnectNow(); };
      globalThis.addEventListener("online", this.#onOnline);
    }
    this.#setState("connecting", {});
    this.#dial();
  }

  // close ends the connection for good: no reconnect; buffered sends are
  // rejected with "closed".
  close() {
    if (this.#state === "closed") return;
    const ws = this.#ws;
    this.#teardown();
    if (ws) { this.#detach(ws); try { ws.close(1000); } catch {} }
    this.#end(1000, "closed by the client");
  }

  // join joins room, now and after every reconnect (from the position of
  // the last message got); sends to it wait for the acknowledgement.
  join(room) {
    this.#rooms.add(room);
    if (this.#isOpen()) this.#sendJoin(room);
  }

  // leave leaves room; buffered sends to it are rejected with "left".
  leave(room) {
    this.#rooms.delete(room);
    this.#positions.delete(room);
    this.#asked.delete(room);
    this.#joined(room);
    this.#rejectWhere((m) => m.room === room, "left", `left ${room} before the message went out`);
    if (this.#isOpen()) this.#raw({ type: "leave", room });
    this.#progress();
  }

  // send sends data to room as a message of type; see #submit.
  send(room, data, type = "chat") { return this.#submit({ type, room, data }); }

  // direct sends data to one connection.
  direct(to, data, type = "chat") { return this.#submit({ type, to, data }); }

  // presence sets this user's status; it is set again after every reconnect
  // (once the rooms are rejoined, so that they hear it).
  presence(status) {
    this.#status = status;
    this.#presenceDue = true;
    this.#progress();
  }

  // members asks for room's roster (answered by a "members" message); it
  // returns false, and asks nothing, while disconnected.
  members(room) {
    if (!this.#isOpen()) return false;
    this.#raw({ type: "members", room });
    return true;
  }

  // #submit hands msg to the socket when connected (and its room joined),
  // and resolves; otherwise it buffers msg (resolved when it goes out, after
  // the reconnect and the room's rejoin), or rejects with a RealtimeError
  // when the buffer is full or the client closed for good.
  #submit(msg) {
    if (this.#final) return Promise.reject(new RealtimeError("closed", "the client is closed"));
    const text = JSON.stringify(msg);
    if (this.#buffer.length === 0 && this.#isOpen() && !this.#joining.has(msg.room)) {
      this.#ws.send(text);
      return Promise.resolve();
    }
    const bytes = utf8Length(text);
    const { bufferMaxMessages: maxN, bufferMaxBytes: maxB } = this.#opts;
    if (this.#buffer.length + 1 > maxN || this.#bufferBytes + bytes > maxB) {
      return Promise.reject(new RealtimeError("buffer_full",
        `offline buffer full (${this.#buffer.length}/${maxN} messages, ${this.#bufferBytes}+${bytes}/${maxB} bytes)`));
    }
    return new Promise((resolve, reject) => {
      this.#buffer.push({ text, bytes, room: msg.room, resolve, reject });
      this.#bufferBytes += bytes;
    });
  }

  // #progress sends what waited: the presence status once no join is
  // pending, and the buffer, in order, up to a send to a room being joined.
  #progress() {
    if (!this.#isOpen()) return;
    if (this.#presenceDue && this.#status !== null && this.#joining.size === 0) {
      this.#presenceDue = false;
      this.#raw({ type: "presence", data: { status: this.#status } });
    }
    while (this.#buffer.length > 0 && this.#isOpen() && !this.#joining.has(this.#buffer[0].room)) {
      const m = this.#buffer.shift();
      this.#bufferBytes -= m.bytes;
      this.#ws.send(m.text);
      m.resolve();
    }
  }

  #rejectWhere(pred, code, text) {
    const keep = [];
    for (const m of this.#buffer) {
      if (pred(m)) { this.#bufferBytes -= m.bytes; m.reject(new RealtimeError(code, text)); } else keep.push(m);
    }
    this.#buffer = keep;
  }

  #isOpen() { return this.#ws !== null && this.#ws.readyState === 1; } // WebSocket.OPEN

  #setState(state, extra) {
    const previous = this.#state;
    this.#state = state;
    const detail = { state, previous, ...extra };
    detail.text = stateText(detail);
    delete detail.why;
    this.#emit("state", detail);
  }

  #emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  #dial() {
    this.#retryTimer = null;
    const WS = this.#opts.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(this.#url, this.#opts.protocols);
    } catch (err) { // a malformed URL: no point in retrying
      this.#teardown();
      this.#end(1006, String(err && err.message || err));
      return;
    }
    this.#ws = ws;
    this.#openedAt = 0;
    this.#connectTimer = setTimeout(() => this.#drop(ws, CLOSE_CONNECT_TIMEOUT, ""), this.#opts.connectTimeoutMs);
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      clearTimeout(this.#connectTimer);
      this.#openedAt = this.#lastRx = Date.now();
      this.#startHeartbeat(ws);
      this.#rejoin();
      this.#setState("open", {});
    };
    ws.onmessage = (ev) => { if (ws === this.#ws) this.#receive(ev.data); };
    ws.onclose = (ev) => { if (ws === this.#ws) this.#lost(ev.code, ev.reason); };
    ws.onerror = () => {}; // a close event follows
  }

  #detach(ws) { ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null; }

  // #drop gives up on ws (the client decided the link is dead) and handles
  // it as closed with code.
  #drop(ws, code, reason) {
    if (ws !== this.#ws) return;
    this.#detach(ws);
    try { ws.close(code, reason); } catch {}
    this.#lost(code, reason);
  }

  // #teardown stops everything tied to the current connection.
  #teardown() {
    clearTimeout(this.#retryTimer); this.#retryTimer = null;
    clearTimeout(this.#connectTimer); this.#connectTimer = null;
    clearTimeout(this.#heartbeatTimer); this.#heartbeatTimer = null;
    for (const timer of this.#joining.values()) clearTimeout(timer);
    this.#joining.clear();
    this.#stopRefresh();
    this.#ws = null;
  }

  // #end closes for good, with code and reason.
  #end(code, reason) {
    this.#final = true;
    if (this.#onOnline) { globalThis.removeEventListener("online", this.#onOnline); this.#onOnline = null; }
    this.#rejectWhere(() => true, "closed", `the connection closed for good: ${describeClose(code, reason)}`);
    this.#setState("closed", { code, reason });
  }

  // #lost handles the end of a connection (or of an attempt): final codes
  // end the client, anything else schedules a reconnect.
  #lost(code, reason) {
    const opened = this.#openedAt !== 0;
    const lasted = opened && Date.now() - this.#openedAt >= this.#opts.stableAfterMs;
    this.#teardown();
    if (this.#final) return;
    if (code === 3003) { this.#end(code, reason); return; } // the application disconnected this user
    if (code === 3000) { // the token expired
      if (!this.#opts.refreshToken) { this.#end(code, reason); return; }
      this.#attempt = 0;
      this.#setState("reconnecting", { code, reason, retryInMs: 0, attempt: 0 });
      this.#reconnectWithFreshToken();
      return;
    }
    if (lasted) this.#attempt = 0; // a connection that held resets the backoff
    let delay;
    // A draining server (1001) or a busy one (1013) says when to come back:
    // "...reconnect_ms=NNN". Honour it, with jitter on top.
    const hint = /reconnect_ms=(\d+)/.exec(reason || "");
    if (hint && (code === 1001 || code === 1013)) {
      this.#attempt = 0;
      delay = Number(hint[1]) + Math.random() * this.#opts.hintJitterMs;
    } else {
      delay = this.#backoff();
      if (code === 1013) delay = Math.max(1000, delay); // busy, without a hint
    }
    const why = !opened && code === 1006 ? "could not reach the server" : undefined;
    this.#setState("reconnecting", { code, reason, retryInMs: Math.round(delay), attempt: this.#attempt, why });
    this.#retryTimer = setTimeout(() => this.#reconnectNow(), delay);
  }

  // #backoff is the next delay: exponential, capped, with full jitter so
  // that thousands of clients do not come back in step after an outage.
  #backoff() {
    const { backoffBaseMs: base, backoffMaxMs: cap } = this.#opts;
    return Math.random() * Math.min(cap, base * 2 ** Math.min(this.#attempt++, 30));
  }

  #reconnectNow() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.#final) return;
    // A token that expired (or is about to) would be refused: get a fresh one.
    if (this.#opts.refreshToken && this.#expiresAt && Date.now() >= this.#expiresAt * 1000 - 1000) {
      this.#reconnectWithFreshToken();
    } else {
      this.#dial();
    }
  }

  // #reconnectWithFreshToken asks the application for a token and connects
  // with it; if that fails, it tries again with backoff.
  async #reconnectWithFreshToken() {
    let tok;
    try {
      tok = await this.#opts.refreshToken();
    } catch (err) {
      if (this.#final || this.#ws) return;
      const delay = this.#backoff();
      this.#setState("reconnecting", { code: 3000, reason: "token expired", retryInMs: Math.round(delay), attempt: this.#attempt,
        why: `could not get a fresh token (${err && err.message || err})` });
      this.#retryTimer = setTimeout(() => this.#reconnectWithFreshToken(), delay);
      return;
    }
    if (this.#final || this.#ws) return;
    this.#setToken(tok);
    this.#expiresAt = null;
    this.#dial();
  }

  // #setToken puts tok in the URL's token query parameter (the URL is
  // otherwise kept), for the next connect.
  #setToken(tok) {
    const u = new URL(this.#url);
    u.searchParams.set("token", tok);
    this.#url = u.toString();
  }

  // #scheduleRefresh renews the token about 30 s before it expires (halfway
  // there if it has less than a minute left), never sooner than in 1 s.
  #scheduleRefresh() {
    this.#stopRefresh();
    if (!this.#opts.refreshToken || !this.#expiresAt) return;
    const left = this.#expiresAt * 1000 - Date.now();
    const delay = Math.max(1000, left - Math.min(30000, left / 2));
    const ws = this.#ws;
    this.#refreshTimer = setTimeout(async () => {
      this.#refreshTimer = null;
      let tok;
      try { tok = await this.#opts.refreshToken(); } catch {
        if (this.#ws === ws) this.#scheduleRefresh(); // try again while there is time; else close 3000 comes
        return;
      }
      if (this.#ws !== ws || !this.#isOpen()) return; // that connection is gone
      this.#refreshing = tok;
      this.#raw({ type: "refresh", data: { token: tok } });
    }, delay);
  }

  #stopRefresh() {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    this.#refreshing = null;
  }

  // #startHeartbeat watches ws for silence: after heartbeatIntervalMs
  // without a message it sends a ping; without any message
  // heartbeatTimeoutMs after that, the link is dead.
  #startHeartbeat(ws) {
    const { heartbeatIntervalMs: every, heartbeatTimeoutMs: wait } = this.#opts;
    if (!(every > 0) || !(wait > 0)) return;
    this.#pingSentAt = 0;
    const check = () => {
      if (ws !== this.#ws) return;
      const now = Date.now();
      if (this.#pingSentAt !== 0 && this.#lastRx < this.#pingSentAt) {
        if (now - this.#pingSentAt >= wait) {
          this.#drop(ws, CLOSE_HEARTBEAT_TIMEOUT, `no message in ${wait} ms after a ping`);
          return;
        }
        this.#heartbeatTimer = setTimeout(check, this.#pingSentAt + wait - now);
        return;
      }
      const idle = now - this.#lastRx;
      if (idle >= every) {
        this.#pingSentAt = now;
        this.#raw({ type: "ping" });
        this.#heartbeatTimer = setTimeout(check, wait);
      } else {
        this.#pingSentAt = 0;
        this.#heartbeatTimer = setTimeout(check, every - idle);
      }
    };
    this.#heartbeatTimer = setTimeout(check, every);
  }

  // #rejoin joins the rooms again after connecting, each from its position;
  // the presence status goes again once they are acknowledged.
  #rejoin() {
    this.#presenceDue = this.#status !== null;
    for (const room of this.#rooms) this.#sendJoin(room);
    this.#progress();
  }

  #sendJoin(room) {
    const pos = this.#positions.get(room);
    clearTimeout(this.#joining.get(room));
    const ws = this.#ws;
    this.#joining.set(room, setTimeout(() => { // no answer: stop holding its sends
      if (ws !== this.#ws || !this.#joining.has(room)) return;
      this.#joined(room);
      this.#progress();
    }, this.#opts.joinTimeoutMs));
    if (pos) {
      this.#asked.add(room);
      this.#raw({ type: "join", room, data: { since: pos } });
    } else {
      this.#asked.delete(room);
      this.#raw({ type: "join", room });
    }
  }

  // #joined ends the wait for room's join.
  #joined(room) {
    clearTimeout(this.#joining.get(room));
    this.#joining.delete(room);
  }

  #raw(msg) { if (this.#isOpen()) this.#ws.send(JSON.stringify(msg)); }

  #receive(data) {
    this.#lastRx = Date.now();
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "pong") return; // the heartbeat's answer: nothing for the page
    if (this.#take(msg)) this.#emit("message", msg);
  }

  // #take keeps track of the connection, positions and acknowledgements, and
  // emits the typed events; it returns false for a message to drop (one
  // this client already had).
  #take(msg) {
    const d = msg.data && typeof msg.data === "object" ? msg.data : {};
    const room = msg.room;
    switch (msg.type) {
      case "system":
        if (d.event === "connected") {
          this.#connectionId = d.connection_id;
          this.#userId = d.user_id || null;
          this.#expiresAt = typeof d.expires_at === "number" ? d.expires_at : null;
          this.#scheduleRefresh();
          this.#emit("connected", { connectionId: this.#connectionId, userId: this.#userId, expiresAt: this.#expiresAt });
        } else if (d.event === "history_gap" && room && this.#rooms.has(room)) {
          this.#emit("unrecovered", { room, reason: "history_gap" }); // a pod could not get some of the room's messages
        }
        return true;
      case "refresh":
        if (msg.from === "system" && this.#refreshing !== null) {
          // The server took the new token: a reconnect uses it too.
          this.#setToken(this.#refreshing);
          this.#refreshing = null;
          this.#expiresAt = typeof d.expires_at === "number" ? d.expires_at : null;
          this.#scheduleRefresh();
        }
        return true;
      case "error": {
        if ((d.code === "unauthorized" || d.code === "forbidden") && this.#refreshing !== null && !room) {
          // The refresh was refused: try again with another token while there
          // is time (when there is none, the server closes with 3000).
          this.#refreshing = null;
          if (this.#expiresAt && this.#expiresAt * 1000 - Date.now() > 1000) this.#scheduleRefresh();
        }
        if (d.code === "unavailable" && room && this.#rooms.has(room)) {
          // The room could not be joined now (its history is in a Redis that
          // is away): join again shortly.
          const ws = this.#ws;
          setTimeout(() => { if (ws === this.#ws && this.#rooms.has(room) && this.#isOpen()) this.#sendJoin(room); }, 1000 + Math.random() * 1000);
        }
        this.#emit("error", { code: d.code, message: d.message, ...(room ? { room } : {}) });
        return true;
      }
      case "presence":
        if (room && d.user_id !== undefined) this.#emit("presence", { room, userId: d.user_id, status: d.status });
        return true;
      case "join":
        if (msg.from === "system" && this.#isAck(msg, d)) return this.#acknowledged(msg, d);
        break;
    }
    if (room && typeof msg.offset === "number" && msg.epoch && this.#rooms.has(room)) {
      const pos = this.#positions.get(room);
      if (pos && pos.epoch === msg.epoch && msg.offset <= pos.offset) return false;
      // A live message of another epoch: the room's history was lost (the
      // server restarted without it): what came before may be missing.
      if (pos && pos.epoch !== msg.epoch) this.#emit("unrecovered", { room, reason: "epoch_changed" });
      this.#positions.set(room, { offset: msg.offset, epoch: msg.epoch });
    }
    return true;
  }

  // #isAck says whether a join message is the acknowledgement of our join:
  // only acknowledgements carry the room's position (epoch); without
  // history, it is our user's join of a room we are joining.
  #isAck(msg, d) {
    if (!this.#joining.has(msg.room) || (d.user_id || null) !== this.#userId) return false;
    if (typeof d.epoch === "string") return this.#asked.has(msg.room) === ("recovered" in d);
    return !("offset" in d);
  }

  #acknowledged(msg, d) {
    const room = msg.room;
    this.#joined(room);
    this.#asked.delete(room);
    if (d.recovered === false) this.#emit("unrecovered", { room, reason: "history_lost" });
    // recovered: what we missed follows, with its offsets; else start here.
    if (d.recovered !== true && d.epoch) this.#positions.set(room, { offset: d.offset, epoch: d.epoch });
    this.#emit("joined", { room, offset: d.offset, epoch: d.epoch, recovered: d.recovered, message: msg });
    this.#progress();
    return true;
  }
}
