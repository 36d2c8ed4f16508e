// shoal_client.js - a shoal client for Node.js with only `zeromq` and `protobufjs`.
//
// An example of docs/PROTOCOL.md in another language: the messages are
// read from proto/shoal.proto at run time by protobufjs (no generated
// code), the sockets are zeromq's Dealer and Subscriber.
//
//   node shoal_client.js --node tcp://127.0.0.1:7001 status
//   node shoal_client.js --node EP pub STREAM TYPE [PAYLOAD]
//   node shoal_client.js --node EP replay ORIGIN_HEX STREAM [FROM [TO]]
//   node shoal_client.js --node EP sub STREAM [--count N] [--mesh MESH]
//
// `sub` follows a stream across the mesh from the beginning with the gap
// repair of PROTOCOL.md section 5: a SUB on every node's PUB, the next
// expected seq per origin, gaps seen from seq jumps and heartbeats and
// closed by Replay with credit, early events held back, duplicates dropped.
// Exit status: 0 ok, 1 error, 2 usage.

"use strict";

const crypto = require("crypto");
const path = require("path");
const protobuf = require("protobufjs");
const zmq = require("zeromq");

const PROTO = process.env.SHOAL_PROTO || path.join(__dirname, "..", "..", "proto", "shoal.proto");

class ShoalError extends Error {
  constructor(code, message) {
    super(`error ${code}: ${message}`);
    this.code = code;
  }
}

let types = null;
async function loadTypes() {
  if (!types) {
    const root = await protobuf.load(PROTO);
    types = {
      Request: root.lookupType("shoal.v1.Request"),
      Response: root.lookupType("shoal.v1.Response"),
      Event: root.lookupType("shoal.v1.Event"),
      Heartbeat: root.lookupType("shoal.v1.Heartbeat"),
    };
  }
  return types;
}

const num = (value) => Number(value || 0); // uint64 arrives as a Long
const hex = (bytes) => Buffer.from(bytes || []).toString("hex");

// One node's ROUTER through a Dealer; one request at a time.
class Client {
  constructor(endpoint, timeoutMs = 5000) {
    this.endpoint = endpoint;
    this.socket = new zmq.Dealer({ linger: 0, receiveTimeout: timeoutMs });
    this.socket.connect(endpoint);
    this.nextId = crypto.randomBytes(4).readUInt32BE(0) + 1;
  }

  close() {
    this.socket.close();
  }

  async send(body) {
    const { Request } = await loadTypes();
    const requestId = this.nextId++;
    await this.socket.send(Request.encode(Request.create({ requestId, ...body })).finish());
    return requestId;
  }

  // The response to requestId (an Error with id 0 is ours too).
  async recv(requestId) {
    const { Response } = await loadTypes();
    for (;;) {
      const [frame] = await this.socket.receive(); // throws on receiveTimeout
      const response = Response.decode(frame);
      const which = Object.keys(response).find((k) => k !== "requestId");
      if (num(response.requestId) === requestId || (num(response.requestId) === 0 && which === "error"))
        return [which, response[which]];
    }
  }

  async call(body, expect) {
    const [which, value] = await this.recv(await this.send(body));
    if (which === "error") throw new ShoalError(value.code, value.message);
    if (which !== expect) throw new ShoalError(1, `expected ${expect}, got ${which}`);
    return value;
  }

  status() {
    return this.call({ status: {} }, "status");
  }

  hello(mesh) {
    return this.call({ hello: { node: crypto.randomBytes(16), name: "node-client", mesh } }, "hello");
  }

  publish(stream, type, payload, extra = {}) {
    const event = { stream, type, payload: Buffer.from(payload || ""), ...extra };
    return this.call({ publish: { event, waitDurable: true } }, "publishAck");
  }

  // Yields the events of [fromSeq, toSeq] (toSeq 0 = the head), topping the
  // credit up each time half the window is spent.
  async *replay(origin, stream, fromSeq = 1, toSeq = 0, credit = 256) {
    const replayId = await this.send({ replay: { origin, stream, fromSeq, toSeq, credit } });
    let window = credit;
    for (;;) {
      const [which, value] = await this.recv(replayId);
      if (which === "error") throw new ShoalError(value.code, value.message);
      const events = value.events || [];
      window -= events.length;
      for (const event of events) yield event;
      if (value.done) return;
      if (window <= credit / 2) {
        await this.send({ credit: { replayId, credit: credit - window } });
        window = credit;
      }
    }
  }
}

// Follows a stream across the mesh, from the beginning, gap-free.
async function subscribe(seed, stream, mesh, onEvent, shouldStop) {
  const { Event, Heartbeat } = await loadTypes();
  const sub = new zmq.Subscriber({ linger: 0, receiveTimeout: 200 });
  sub.subscribe(stream + "/");
  const nodes = new Map(); // router endpoint -> { client, id, logs }
  const next = new Map(); // origin hex -> next seq to deliver
  const head = new Map(); // origin hex -> highest seq known to exist
  const early = new Map(); // origin hex -> Map(seq -> event)
  const todo = [seed];
  while (todo.length) {
    const router = todo.pop();
    if (nodes.has(router)) continue;
    const client = new Client(router);
    const hello = await client.hello(mesh);
    const host = router.slice(6, router.lastIndexOf(":"));
    sub.connect(`tcp://${host}:${hello.pubPort}`);
    const status = await client.status();
    nodes.set(router, { client, id: hex(hello.node) });
    for (const peer of hello.knownPeers || []) todo.push(peer);
    for (const log of status.logs || []) {
      if (log.stream !== stream) continue;
      const origin = hex(log.origin);
      if (!next.has(origin)) next.set(origin, Math.max(num(log.firstSeq), 1));
      head.set(origin, Math.max(head.get(origin) || 0, num(log.headSeq)));
    }
  }
  const deliver = (event) => {
    const origin = hex(event.origin);
    const seq = num(event.seq);
    if (!next.has(origin)) next.set(origin, 1);
    head.set(origin, Math.max(head.get(origin) || 0, seq));
    if (seq < next.get(origin)) return; // duplicate
    if (seq > next.get(origin)) {
      if (!early.has(origin)) early.set(origin, new Map());
      early.get(origin).set(seq, event);
      return;
    }
    onEvent(event);
    next.set(origin, seq + 1);
    const held = early.get(origin);
    while (held && held.has(next.get(origin))) {
      const following = held.get(next.get(origin));
      held.delete(next.get(origin));
      onEvent(following);
      next.set(origin, num(following.seq) + 1);
    }
  };
  const repair = async () => {
    for (const [origin, seq] of next) {
      if ((head.get(origin) || 0) < seq) continue;
      // The origin first, then any other node (replicas hold copies).
      const order = [...nodes.values()].sort((a, b) => (a.id === origin ? -1 : b.id === origin ? 1 : 0));
      for (const node of order) {
        try {
          for await (const event of node.client.replay(Buffer.from(origin, "hex"), stream, seq, head.get(origin), 64))
            deliver(event);
          break;
        } catch (error) {
          // another holder, or the next turn
        }
      }
    }
  };
  await repair();
  while (!shouldStop()) {
    let frames = null;
    try {
      frames = await sub.receive();
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
    if (frames && frames.length === 2) {
      try {
        if (frames[0].toString() === stream + "/") {
          const heartbeat = Heartbeat.decode(frames[1]);
          const origin = hex(heartbeat.origin);
          if (!next.has(origin)) next.set(origin, 1);
          head.set(origin, Math.max(head.get(origin) || 0, num(heartbeat.headSeq)));
        } else {
          deliver(Event.decode(frames[1]));
        }
      } catch (error) {
        // undecodable: dropped
      }
    }
    await repair();
  }
  sub.close();
  for (const node of nodes.values()) node.client.close();
}

function printEvent(event) {
  console.log(
    JSON.stringify({
      origin: hex(event.origin),
      stream: event.stream,
      seq: num(event.seq),
      type: event.type,
      key: event.key || "",
      time_ns: String(event.timeNs || 0),
      id: hex(event.id),
      payload: Buffer.from(event.payload || []).toString(),
      headers: event.headers || {},
    })
  );
}

async function main(argv) {
  const args = argv.slice();
  const option = (name, fallback) => {
    const at = args.indexOf(name);
    if (at < 0) return fallback;
    const value = args[at + 1];
    args.splice(at, 2);
    return value;
  };
  const node = option("--node", null);
  const count = Number(option("--count", "0"));
  const mesh = option("--mesh", "default");
  const [command, ...rest] = args;
  if (!node || !command) {
    console.error("usage: node shoal_client.js --node ENDPOINT status|pub|replay|sub ...");
    return 2;
  }
  const client = new Client(node);
  try {
    if (command === "status") {
      const status = await client.status();
      console.log(`node ${status.name} ${hex(status.node)}`);
      for (const log of status.logs || [])
        console.log(`  log ${hex(log.origin)}/${log.stream} first ${num(log.firstSeq)} head ${num(log.headSeq)}`);
    } else if (command === "pub" && rest.length >= 2) {
      const ack = await client.publish(rest[0], rest[1], rest[2] || "");
      console.log(`${hex(ack.origin)}/${ack.stream}/${num(ack.seq)}${ack.duplicate ? " duplicate" : ""}`);
    } else if (command === "replay" && rest.length >= 2) {
      const events = client.replay(Buffer.from(rest[0], "hex"), rest[1], Number(rest[2] || 1), Number(rest[3] || 0));
      for await (const event of events) printEvent(event);
    } else if (command === "sub" && rest.length >= 1) {
      let seen = 0;
      await subscribe(node, rest[0], mesh, (event) => {
        printEvent(event);
        seen++;
      }, () => count > 0 && seen >= count);
    } else {
      console.error(`unknown command or missing arguments: ${args.join(" ")}`);
      return 2;
    }
  } catch (error) {
    console.error(`shoal_client.js: ${error.message}`);
    return 1;
  } finally {
    client.close();
  }
  return 0;
}

module.exports = { Client, ShoalError, subscribe, loadTypes };

if (require.main === module) main(process.argv.slice(2)).then((code) => process.exit(code));
