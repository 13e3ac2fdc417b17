// Type declarations for realtime.js, the browser client of the realtime
// protocol. See README.md beside this file.

/** Where the connection is. */
export type ConnectionState =
  /** Created with autoConnect: false, connect() not called yet. */
  | "idle"
  /** The first connection attempt is under way. */
  | "connecting"
  /** Connected (rooms are being rejoined, then buffered sends go out). */
  | "open"
  /** The connection was lost or an attempt failed: another comes after retryInMs. */
  | "reconnecting"
  /** Closed for good: close(), or a final close code (3003; 3000 without refreshToken). */
  | "closed";

/** A presence status. */
export type PresenceStatus = "online" | "away" | "offline";

/** The error codes the server sends in "error" messages. */
export type ServerErrorCode =
  | "bad_json"
  | "unknown_type"
  | "forbidden"
  | "not_in_room"
  | "rate_limited"
  | "too_many_rooms"
  | "bad_room"
  | "bad_data"
  | "not_found"
  | "publish_failed"
  | "unavailable"
  | "unauthorized";

/** A message as the server sends it (the protocol's Message). */
export interface RealtimeMessage<D = unknown> {
  id?: string;
  type: string;
  room?: string;
  /** The sender's connection ID, or "system". */
  from?: string;
  /** The sender's user (absent for anonymous senders and system messages). */
  user_id?: string;
  to?: string;
  data?: D;
  timestamp?: string;
  /** The message's position in its room (rooms that keep history). */
  offset?: number;
  epoch?: string;
}

/** The detail of a "state" event. */
export interface StateDetail {
  state: ConnectionState;
  previous: ConnectionState;
  /**
   * Why the connection ended ("reconnecting", "closed"): the close code, a
   * server's (1001, 1008, 1013, 3000, 3003, …), 1006 for a lost link or a
   * failed attempt, or the client's own CLOSE_HEARTBEAT_TIMEOUT (4000) or
   * CLOSE_CONNECT_TIMEOUT (4001).
   */
  code?: number;
  /** The close reason the server gave (may be empty). */
  reason?: string;
  /** "reconnecting": how long until the next attempt, in milliseconds. */
  retryInMs?: number;
  /** "reconnecting": failed attempts so far (the backoff's exponent). */
  attempt?: number;
  /** The state in words, for people: "connected", "the server is going away (server shutting down); reconnecting in 0.8 s". */
  text: string;
}

/** The detail of a "connected" event: the server's greeting. */
export interface ConnectedDetail {
  connectionId: string;
  userId: string | null;
  /** Unix seconds when the connection's token expires; null: never. */
  expiresAt: number | null;
}

/** The detail of a "joined" event: the server acknowledged our join. */
export interface JoinedDetail {
  room: string;
  /** The room's position (rooms that keep history). */
  offset?: number;
  epoch?: string;
  /** After a rejoin from a position: true when what was missed follows, false when it is lost. */
  recovered?: boolean;
  /** The acknowledgement itself (it is also a "message" event, dispatched after this one). */
  message: RealtimeMessage;
}

/** The detail of an "unrecovered" event: messages of room may be missing; reload its state from the application. */
export interface UnrecoveredDetail {
  room: string;
  /** history_lost: a rejoin got recovered:false; epoch_changed: a live message of a new epoch; history_gap: a pod could not get some messages. */
  reason: "history_lost" | "epoch_changed" | "history_gap";
}

/** The detail of a "presence" event. */
export interface PresenceDetail {
  room: string;
  userId: string;
  status: PresenceStatus;
}

/** The detail of an "error" event: an error message from the server. */
export interface ServerErrorDetail {
  code: ServerErrorCode | (string & {});
  message: string;
  /** The room the error is about, when the server says. */
  room?: string;
}

/** The client's events and their details. */
export interface RealtimeEventMap {
  state: CustomEvent<StateDetail>;
  /** Every message from the server except pongs and copies already delivered. */
  message: CustomEvent<RealtimeMessage>;
  connected: CustomEvent<ConnectedDetail>;
  joined: CustomEvent<JoinedDetail>;
  unrecovered: CustomEvent<UnrecoveredDetail>;
  presence: CustomEvent<PresenceDetail>;
  error: CustomEvent<ServerErrorDetail>;
}

export interface RealtimeOptions {
  /** Returns a fresh token for the same user; with it the client renews the token before expires_at and reconnects after close 3000. */
  refreshToken?: (() => Promise<string>) | null;
  /** WebSocket subprotocols. */
  protocols?: string | string[];
  /** Connect at once (after the current task, so that listeners added right after the constructor see "connecting"). Default true. */
  autoConnect?: boolean;
  /** The backoff's first ceiling: the nth retry waits a random time below min(backoffMaxMs, backoffBaseMs·2^n). Default 500. */
  backoffBaseMs?: number;
  /** The backoff's cap. Default 30000. */
  backoffMaxMs?: number;
  /** Jitter added to a server's reconnect_ms hint. Default 500. */
  hintJitterMs?: number;
  /** A connection open this long resets the backoff when it ends. Default 5000. */
  stableAfterMs?: number;
  /** An opening handshake not done in this time is given up (code 4001). Default 10000. */
  connectTimeoutMs?: number;
  /** After this long without a message the client sends a ping. 0 turns the heartbeat off. Default 20000. */
  heartbeatIntervalMs?: number;
  /** No message this long after a ping: the link is dead (code 4000), reconnect. Default 10000. */
  heartbeatTimeoutMs?: number;
  /**
   * Sends to a room wait for its join to be acknowledged (after join(), and
   * after every reconnect), and the presence status for every pending join;
   * this is the longest they wait. Default 5000.
   */
  joinTimeoutMs?: number;
  /** The most sends the offline buffer holds; 0: sends while disconnected are rejected at once. Default 100. */
  bufferMaxMessages?: number;
  /** The most bytes (UTF-8 JSON) the offline buffer holds. Default 262144. */
  bufferMaxBytes?: number;
  /** A WebSocket constructor to use instead of globalThis.WebSocket. */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
}

/** Why a send was rejected. */
export type RealtimeErrorCode =
  /** The offline buffer has no room for it (bufferMaxMessages or bufferMaxBytes). */
  | "buffer_full"
  /** The client closed for good before it went out. */
  | "closed"
  /** leave() of its room before it went out. */
  | "left";

/** The rejection of a send that did not go out. */
export declare class RealtimeError extends Error {
  constructor(code: RealtimeErrorCode, message: string);
  readonly name: "RealtimeError";
  readonly code: RealtimeErrorCode;
}

/** The client gave up on a silent connection (no answer to a ping in time). */
export declare const CLOSE_HEARTBEAT_TIMEOUT: 4000;
/** The client gave up on an opening handshake that took too long. */
export declare const CLOSE_CONNECT_TIMEOUT: 4001;

/** Says in words why a connection ended: "the server is going away (server shutting down)". */
export declare function describeClose(code: number, reason?: string): string;

export declare class RealtimeClient extends EventTarget {
  /** url: the server's WebSocket URL with its credentials, e.g. wss://host/ws?token=… */
  constructor(url: string | URL, options?: RealtimeOptions);

  readonly state: ConnectionState;
  /** This connection's ID (from the greeting); null before the first. */
  readonly connectionId: string | null;
  readonly userId: string | null;
  /** Unix seconds when the connection's token expires; null: never or unknown. */
  readonly expiresAt: number | null;
  /** The rooms joined (rejoined after every reconnect). */
  readonly rooms: readonly string[];
  /** Sends waiting in the offline buffer, and their bytes. */
  readonly buffered: number;
  readonly bufferedBytes: number;
  /** The URL the next connection uses (its token may have been renewed). */
  readonly url: string;

  /** Starts connecting (the constructor does unless autoConnect is false); after close(), starts again with the same rooms. */
  connect(): void;
  /** Closes for good: no reconnect; buffered sends are rejected with "closed". */
  close(): void;
  /** Joins room, now and after every reconnect (from the last position got); sends to it wait for the acknowledgement. */
  join(room: string): void;
  /** Leaves room; buffered sends to it are rejected with "left". */
  leave(room: string): void;
  /**
   * Sends data to room as a message of type (default "chat"). Resolves once
   * handed to an open socket: at once when connected (and room joined), else
   * after the reconnect and rejoin, in send order. Rejects with a
   * RealtimeError: "buffer_full", "closed", "left".
   */
  send(room: string, data: unknown, type?: string): Promise<void>;
  /** Sends data to one connection; as send(). */
  direct(to: string, data: unknown, type?: string): Promise<void>;
  /** Sets this user's presence status; it is sent again after every reconnect. */
  presence(status: PresenceStatus): void;
  /** Asks for room's roster (answered by a "members" message); false, and nothing asked, while disconnected. */
  members(room: string): boolean;

  /** Listens to type's event details; returns a function that stops listening. */
  on<K extends keyof RealtimeEventMap>(type: K, fn: (detail: RealtimeEventMap[K]["detail"]) => void): () => void;

  addEventListener<K extends keyof RealtimeEventMap>(
    type: K,
    listener: (this: RealtimeClient, ev: RealtimeEventMap[K]) => any,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof RealtimeEventMap>(
    type: K,
    listener: (this: RealtimeClient, ev: RealtimeEventMap[K]) => any,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
