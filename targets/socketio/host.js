// The Socket.IO target: a minimal host for the real `socket.io` server library, with connection
// state recovery on. The only JavaScript in the project (docs/servers.md says why it exists and
// what it offers); the harness starts it through harness/targets/socketio.py.
//
//   SOCKETIO_HOST_SECRET=... node host.js [--port 0] [--max-disconnection-ms 120000]
//        [--ping-interval-ms 25000] [--ping-timeout-ms 20000] [--skip-middlewares false]
//
// Its first stdout line is `listening on ws://127.0.0.1:PORT/socket.io/`; everything else goes
// to stderr. It binds 127.0.0.1 only.
//
// What it offers a client (the `socketio` driver speaks exactly this):
// - auth: the namespace connect carries `{token}`, `USER.HEX` where HEX is the HMAC-SHA256 of
//   USER under the secret. The middleware checks it on every connect, and on every recovery too
//   (skipMiddlewares false unless told otherwise); a recovered session whose user is not the
//   token's is refused (`session_of_another_user`). A refusal is Socket.IO's CONNECT_ERROR.
// - `chat` {id, text}: answered with `reply` events {in_reply_to, part, text, final}, emitted
//   with socket.emit (so each is stored for recovery and carries its offset as the last
//   element). A text that starts with `slowly:` is answered in 5 parts 200 ms apart (a reply
//   that is still streaming when the network drops); every other text in 2 parts at once.
// - what the session keeps (socket.data, restored by recovery): the user, `memory`
//   ("my name is X", "remember that K is V"), `variables` ("set K = V"), the number of
//   messages; and its rooms ("join ROOM"; every socket is in `user:USER`).
// - `context` with an ack: answers {user, memory, variables, messages, rooms}.
// - GET /metrics: Prometheus text (sockets connected, recoveries, refusals, the adapter's
//   stored sessions and packets, resident memory).
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const value = process.argv[at + 1];
  if (value === undefined) throw new Error(`--${name} needs a value`);
  return value;
}

function integer(name, fallback) {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be an integer >= 0`);
  return value;
}

const secret = process.env.SOCKETIO_HOST_SECRET;
if (!secret) {
  console.error("SOCKETIO_HOST_SECRET is not set: it signs the users' tokens");
  process.exit(2);
}
const port = integer("port", 0);
const maxDisconnectionDuration = integer("max-disconnection-ms", 120000);
const pingInterval = integer("ping-interval-ms", 25000);
const pingTimeout = integer("ping-timeout-ms", 20000);
const skipMiddlewares = option("skip-middlewares", "false") === "true";

function log(...parts) {
  console.error(new Date().toISOString(), ...parts);
}

function userOf(token) {
  if (typeof token !== "string") return null;
  const dot = token.lastIndexOf(".");
  if (dot <= 0) return null;
  const user = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), "hex");
  const wanted = crypto.createHmac("sha256", secret).update(user).digest();
  return given.length === wanted.length && crypto.timingSafeEqual(given, wanted) ? user : null;
}

const counters = { connects: 0, recovered: 0, not_recovered: 0, refused: 0, chats: 0 };

const httpServer = http.createServer((req, res) => {
  if (req.url === "/metrics") {
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    res.end(metrics());
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  pingInterval,
  pingTimeout,
  connectionStateRecovery: { maxDisconnectionDuration, skipMiddlewares },
});

io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const user = userOf(auth.token);
  const asked = typeof auth.pid === "string";
  if (user === null) {
    counters.refused += 1;
    log("refused", socket.id, "auth_failed", asked ? `(recovery of ${auth.pid})` : "");
    return next(new Error("auth_failed"));
  }
  if (socket.recovered && socket.data.user !== user) {
    counters.refused += 1;
    log("refused", socket.id, "session_of_another_user", user, "asked for", socket.data.user);
    return next(new Error("session_of_another_user"));
  }
  socket.data.token_user = user;
  return next();
});

function remember(data, text) {
  let m;
  if ((m = /^my name is (\S+)/i.exec(text))) data.memory.name = m[1];
  else if ((m = /^remember that (\S+) is (.+)$/i.exec(text))) data.memory[m[1]] = m[2];
  else if ((m = /^set (\S+) = (.+)$/i.exec(text))) data.variables[m[1]] = m[2];
}

function reply(socket, id, text) {
  const slow = text.startsWith("slowly:");
  const words = `you said: ${text}`.split(" ");
  const parts = slow ? 5 : 2;
  const size = Math.ceil(words.length / parts);
  const chunks = [];
  for (let i = 0; i < parts; i += 1) chunks.push(words.slice(i * size, (i + 1) * size).join(" "));
  chunks.forEach((chunk, part) => {
    const send = () =>
      socket.emit("reply", { in_reply_to: id, part, text: chunk, final: part === parts - 1 });
    if (slow && part > 0) setTimeout(send, 200 * part);
    else send();
  });
}

io.on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  const user = socket.data.token_user;
  delete socket.data.token_user;
  counters.connects += 1;
  if (socket.recovered) {
    counters.recovered += 1;
  } else {
    if (typeof auth.pid === "string") counters.not_recovered += 1;
    socket.data = { user, memory: {}, variables: {}, messages: 0 };
    socket.join(`user:${user}`);
  }
  log("connection", socket.id, "user", user, "recovered", socket.recovered,
      typeof auth.pid === "string" ? `asked pid ${auth.pid} offset ${auth.offset}` : "");

  socket.on("chat", (message) => {
    if (!message || typeof message.id !== "string" || typeof message.text !== "string") return;
    counters.chats += 1;
    socket.data.messages += 1;
    const join = /^join (\S+)$/i.exec(message.text);
    if (join) socket.join(join[1]);
    else remember(socket.data, message.text);
    reply(socket, message.id, message.text);
  });

  socket.on("context", (ack) => {
    if (typeof ack !== "function") return;
    const rooms = [...socket.rooms].filter((room) => room !== socket.id).sort();
    ack({ ...socket.data, rooms });
  });

  socket.on("disconnect", (reason) => log("disconnect", socket.id, reason));
});

function metrics() {
  const adapter = io.of("/").adapter;
  const lines = [
    ["socketio_sockets_connected", io.of("/").sockets.size],
    ["socketio_engine_clients", io.engine.clientsCount],
    ["socketio_connects_total", counters.connects],
    ["socketio_recovered_total", counters.recovered],
    ["socketio_not_recovered_total", counters.not_recovered],
    ["socketio_refused_total", counters.refused],
    ["socketio_chats_total", counters.chats],
    // The in-memory adapter's own stores (internal fields of socket.io-adapter 2.5).
    ["socketio_adapter_sessions", adapter.sessions ? adapter.sessions.size : 0],
    ["socketio_adapter_packets", adapter.packets ? adapter.packets.length : 0],
    ["process_resident_memory_bytes", process.memoryUsage().rss],
  ];
  return lines.map(([name, value]) => `${name} ${value}`).join("\n") + "\n";
}

process.on("SIGTERM", () => {
  log("SIGTERM: closing");
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});

httpServer.listen(port, "127.0.0.1", () => {
  const address = httpServer.address();
  process.stdout.write(`listening on ws://127.0.0.1:${address.port}/socket.io/\n`);
  log("socket.io", require("socket.io/package.json").version, "maxDisconnectionDuration",
      maxDisconnectionDuration, "pingInterval", pingInterval, "pingTimeout", pingTimeout,
      "skipMiddlewares", skipMiddlewares);
});
