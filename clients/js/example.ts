// A usage example of realtime.js, type-checked against realtime.d.ts:
//   npx --yes -p typescript tsc --noEmit --strict --lib es2020,dom example.ts
import { RealtimeClient, RealtimeError, describeClose, CLOSE_HEARTBEAT_TIMEOUT } from "./realtime.js";
import type { StateDetail, RealtimeMessage } from "./realtime.js";

const client = new RealtimeClient("wss://chat.example.com/ws?token=…", {
  refreshToken: async () => (await fetch("/token")).text(),
  bufferMaxMessages: 50,
  heartbeatIntervalMs: 15000,
});

const statusLine = (d: StateDetail): string => {
  if (d.state === "reconnecting" && d.code === CLOSE_HEARTBEAT_TIMEOUT) return "the link went silent; " + d.text;
  return d.text;
};
client.addEventListener("state", (ev) => console.log(statusLine(ev.detail), ev.detail.retryInMs ?? 0));
client.addEventListener("message", (ev) => {
  const m: RealtimeMessage = ev.detail;
  if (m.type === "chat") console.log(`${m.room}: ${m.user_id ?? m.from}: ${JSON.stringify(m.data)}`);
});
client.addEventListener("unrecovered", (ev) => console.log("reload", ev.detail.room, ev.detail.reason));
client.addEventListener("error", (ev) => console.warn(ev.detail.code, ev.detail.message));
const off = client.on("presence", (p) => console.log(p.userId, p.status.toUpperCase()));
client.on("joined", (j) => { if (j.recovered === false) console.log("missed messages of", j.room, "are lost"); });
client.on("connected", (c) => console.log(c.connectionId, c.userId ?? "anonymous", c.expiresAt));

client.join("lobby");
client.presence("away");
client.send("lobby", { text: "hello" }).then(
  () => console.log("handed to the socket"),
  (err: unknown) => {
    if (err instanceof RealtimeError && err.code === "buffer_full") console.log("offline, and the buffer is full");
  },
);
void client.direct("conn-id", "psst", "note");
const asked: boolean = client.members("lobby");
console.log(asked, client.state, client.rooms.length, client.buffered, describeClose(1001, "server shutting down; reconnect_ms=300"));
off();
client.close();
