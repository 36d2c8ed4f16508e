"""shoal_client - use a shoal mesh from Python with only ZeroMQ and the .proto.

This module speaks the wire contract of docs/PROTOCOL.md with nothing but
pyzmq and protobuf (Debian: python3-zmq, python3-protobuf). The message
classes come from `shoal_pb2`, which `protoc --python_out` generates from
proto/shoal.proto at build time; it is never edited or committed.

Two classes:

  Client      one node's ROUTER, through a DEALER socket: ping, hello,
              status, publish (a thin client: the node becomes the
              origin), replay with credit, consumer cursors. One request
              at a time; every reply echoes the request id, and replies
              to requests given up on are dropped.

  Subscriber  follows one stream across the mesh: a SUB socket connected
              to the PUB of every node it can find (seed endpoints, then
              Hello.known_peers and Status.peers), subscribed to the
              topic prefix "<stream>/" (events and heartbeats). It keeps
              the next expected seq per origin; a seq jump or a heartbeat
              whose head is at or past that seq is a gap, repaired at once
              by a credit-based Replay from the origin (or any node holding
              its log). Events arrive through recv() in seq order per
              origin, each exactly once: early ones wait in a buffer, old
              ones are dropped as duplicates.

Errors from a node raise ShoalError (code and message, as on the wire); a
node that does not answer in time raises ShoalTimeout.
"""

import os
import socket
import struct
import time
from collections import deque

import zmq

import shoal_pb2 as pb

#  Error codes of the wire contract (Error.code).
BAD_REQUEST = 1
UNKNOWN = 2
UNAVAILABLE = 3
TOO_LARGE = 4
NOT_ALLOWED = 5
STORAGE = 6
BUSY = 7

ERROR_NAMES = {
    BAD_REQUEST: "bad request",
    UNKNOWN: "unknown stream or origin",
    UNAVAILABLE: "range not available",
    TOO_LARGE: "too large",
    NOT_ALLOWED: "not allowed",
    STORAGE: "storage failure",
    BUSY: "busy",
}

ID_SIZE = 16


class ShoalError(Exception):
    """An Error response: code (1-7) and the node's message."""

    def __init__(self, code, message):
        Exception.__init__(self, "error %d (%s): %s" % (code, ERROR_NAMES.get(code, "unknown code"), message))
        self.code = code
        self.message = message


class ShoalTimeout(Exception):
    """The node did not answer within the timeout."""


def node_id(value):
    """A 16-byte node or event id from bytes or 32 hex digits."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != ID_SIZE:
            raise ValueError("an id is 16 bytes, not %d" % len(value))
        return bytes(value)
    text = str(value)
    if len(text) != 2 * ID_SIZE:
        raise ValueError("an id is 32 hex digits: %r" % text)
    return bytes.fromhex(text)


def hex_id(value):
    """32 hex digits of a 16-byte id (empty for an empty id)."""
    return bytes(value).hex()


def split_endpoint(endpoint):
    """("host", port) of "tcp://host:port"."""
    if not endpoint.startswith("tcp://") or ":" not in endpoint[6:]:
        raise ValueError("not a tcp:// endpoint: %r" % endpoint)
    host, _, port = endpoint[6:].rpartition(":")
    return host, int(port)


def mesh_id(mesh):
    """The 64-bit FNV-1a hash of a mesh name (beacon bytes 4-11)."""
    value = 0xCBF29CE484222325
    for byte in mesh.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def parse_beacon(data, mesh="default"):
    """A beacon payload of `mesh` as a dict (node, pub_port, router_port,
    leaving, key), or None when it is not one: another size, protocol,
    version or mesh."""
    if len(data) not in (33, 65):
        return None
    magic, mesh_hash, node, pub_port, router_port, flags = struct.unpack("!4sQ16sHHB", data[:33])
    if magic != b"SHL\x01" or mesh_hash != mesh_id(mesh):
        return None
    return {"node": node, "pub_port": pub_port, "router_port": router_port,
            "leaving": bool(flags & 1), "key": data[33:] or None}


def listen_beacons(port=5680, mesh="default", timeout=3.0):
    """Listens to loopback beacons (shoald --interface lo) for timeout
    seconds; returns {node id: (host, beacon dict)}, the last of each node.
    The socket is bound to 127.255.255.255, so it hears only this host."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.255.255.255", port))
        found = {}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return found
            sock.settimeout(left)
            try:
                data, (host, _) = sock.recvfrom(512)
            except socket.timeout:
                return found
            beacon = parse_beacon(data, mesh)
            if beacon:
                found[beacon["node"]] = (host, beacon)
    finally:
        sock.close()


class Client(object):
    """A DEALER connected to one node's ROUTER endpoint ("tcp://host:port")."""

    def __init__(self, endpoint, timeout=5.0, context=None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        #  Request ids start at a random point, so that a reply meant for
        #  an earlier client of the same routing id is never taken for ours.
        self._next_id = int.from_bytes(os.urandom(4), "big") + 1

    def close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    #  -- raw protocol --------------------------------------------------

    def send(self, request):
        """Sends a Request (its request_id set here); returns the id."""
        request.request_id = self._next_id
        self._next_id += 1
        self._socket.send(request.SerializeToString())
        return request.request_id

    def send_raw(self, frames):
        """Sends frames as they are (tests use it to send bad requests)."""
        self._socket.send_multipart(frames)

    def recv(self, request_id, timeout=None):
        """The next Response for request_id. An Error with request id 0
        (the node could not read our id) is taken as ours: requests go
        one at a time. Replies to other ids are dropped."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._socket.poll(int(left * 1000) + 1):
                raise ShoalTimeout("no reply from %s within %.1f s" % (self.endpoint, timeout))
            frames = self._socket.recv_multipart()
            if len(frames) != 1:
                continue
            response = pb.Response()
            try:
                response.ParseFromString(frames[0])
            except Exception:
                continue
            if response.request_id == request_id:
                return response
            if response.request_id == 0 and response.WhichOneof("body") == "error":
                return response

    def call(self, request, expect, timeout=None):
        """Sends request, waits for its reply, returns the body named
        expect; raises ShoalError for an Error reply."""
        response = self.recv(self.send(request), timeout)
        body = response.WhichOneof("body")
        if body == "error":
            raise ShoalError(response.error.code, response.error.message)
        if body != expect:
            raise ShoalError(BAD_REQUEST, "expected %s, got %s" % (expect, body))
        return getattr(response, body)

    #  -- requests -------------------------------------------------------

    def ping(self, timeout=None):
        request = pb.Request()
        request.ping.SetInParent()
        self.call(request, "pong", timeout)

    def status(self, timeout=None):
        """StatusReply: node, name, logs (LogHead), peers (PeerInfo), counters."""
        request = pb.Request()
        request.status.SetInParent()
        return self.call(request, "status", timeout)

    def hello(self, mesh="default", name="python-client", client_id=None, timeout=None):
        """Hello: the node's id, name, mesh, pub_port, router_port,
        known_peers. A client gives router_port 0, so the node does not
        take it for a peer; the mesh must be the node's (else Error 5)."""
        request = pb.Request()
        request.hello.node = client_id or os.urandom(ID_SIZE)
        request.hello.name = name
        request.hello.mesh = mesh
        return self.call(request, "hello", timeout)

    def publish(self, stream, type, payload=b"", key="", id=None, content_type="",
                correlation_id="", causation_id="", schema_version=0, headers=None,
                wait_durable=True, timeout=None):
        """Records an event in this node's log (the node is its origin) and
        returns the PublishAck (origin, stream, seq, duplicate). The ack
        comes once the event is durable. A repeated id gets the first
        ack again, with duplicate = True."""
        request = pb.Request()
        event = request.publish.event
        event.stream = stream
        event.type = type
        event.payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        event.key = key
        if id is not None:
            event.id = node_id(id)
        event.content_type = content_type
        event.correlation_id = correlation_id
        event.causation_id = causation_id
        event.schema_version = schema_version
        for name, value in (headers or {}).items():
            event.headers[name] = value
        request.publish.wait_durable = wait_durable
        return self.call(request, "publish_ack", timeout)

    def replay(self, origin, stream, from_seq=1, to_seq=0, credit=256, types=(), from_time_ns=0,
               timeout=None, batches=None):
        """Yields the events of (origin, stream) from from_seq to to_seq (0 =
        the head when the node gets the request), in seq order. The node
        sends at most `credit` events ahead of what this generator has
        handed out; credit is topped up as batches are consumed. Each
        ReplayBatch is appended to the list `batches` when one is given.
        Raises ShoalError (2 unknown log, 3 trimmed or beyond the head, ...)."""
        if credit < 1:
            raise ValueError("credit must be 1 or more")
        request = pb.Request()
        request.replay.origin = node_id(origin)
        request.replay.stream = stream
        request.replay.from_seq = from_seq
        request.replay.to_seq = to_seq
        request.replay.credit = credit
        request.replay.types.extend(types)
        request.replay.from_time_ns = from_time_ns
        replay_id = self.send(request)
        window = credit  # events the node may still send
        while True:
            response = self.recv(replay_id, timeout)
            body = response.WhichOneof("body")
            if body == "error":
                raise ShoalError(response.error.code, response.error.message)
            if body != "batch":
                raise ShoalError(BAD_REQUEST, "expected a ReplayBatch, got %s" % body)
            batch = response.batch
            if batches is not None:
                batches.append(batch)
            window -= len(batch.events)
            for event in batch.events:
                yield event
            if batch.done:
                return
            #  Top up when half the window is spent: the node never stalls
            #  on a client that keeps reading, and never runs ahead of one
            #  that does not.
            if window <= credit // 2:
                grant = pb.Request()
                grant.credit.replay_id = replay_id
                grant.credit.credit = credit - window
                self.send(grant)
                window = credit

    def consumer(self, name, op, cursors=None, timeout=None):
        """ConsumerRequest: op "get", "ack" (cursors: (origin, stream, seq)
        tuples), "list" or "delete". Returns the ConsumerReply."""
        request = pb.Request()
        request.consumer.name = name
        request.consumer.op = op
        for origin, stream, seq in cursors or ():
            cursor = request.consumer.cursors.add()
            cursor.origin = node_id(origin)
            cursor.stream = stream
            cursor.head_seq = seq
        return self.call(request, "consumer", timeout)


class _Node(object):
    """What a Subscriber knows of one node."""

    def __init__(self, router):
        self.router = router  # ROUTER endpoint
        self.client = None  # Client, once reached
        self.id = None  # 16-byte node id
        self.name = ""  # node name
        self.pub = None  # PUB endpoint, connected to the SUB socket
        self.logs = {}  # origin -> (first_seq, head_seq) of the stream
        self.failures = 0  # requests that timed out in a row


class Subscriber(object):
    """Follows `stream` across the mesh from the seed ROUTER endpoints.

    start: "beginning" (every origin from its first held seq), "now"
    (origins known at start from after their head; origins found later
    from the first seq seen) or a dict {origin: first seq wanted} (hex
    or bytes keys; other origins from the beginning). types: deliver only
    these event types (gaps are still tracked over every event). mesh:
    the mesh name, needed by Hello to learn each node's PUB port.
    """

    def __init__(self, seeds, stream, start="beginning", types=None, mesh="default",
                 timeout=5.0, credit=256, refresh=2.0, context=None):
        if isinstance(seeds, str):
            seeds = [seeds]
        self.stream = stream
        self.types = set(types) if types else None
        self.mesh = mesh
        self.timeout = timeout
        self.credit = credit
        self.refresh = refresh
        self._context = context or zmq.Context.instance()
        self._start = start
        self._starts = {}
        if isinstance(start, dict):
            self._starts = dict((node_id(k), int(v)) for k, v in start.items())
        elif start not in ("beginning", "now"):
            raise ValueError("start is 'beginning', 'now' or {origin: seq}")
        self._client_id = os.urandom(ID_SIZE)
        self._nodes = {}  # ROUTER endpoint -> _Node
        self._expected = {}  # origin -> next seq to deliver
        self._head = {}  # origin -> highest seq known to exist
        self._early = {}  # origin -> {seq: Event} received ahead of a gap
        self._retry_at = {}  # origin -> monotonic time of the next repair try
        self._ready = deque()  # events to hand out, in delivery order
        self._connected = True  # SUB connected to the PUBs (see disconnect)
        self.stats = {
            "delivered": 0,  # events handed out by recv
            "filtered": 0,  # in order, but not of a wanted type
            "duplicates": 0,  # dropped: seq already passed or buffered
            "gaps_seq": 0,  # gaps seen from a seq jump
            "gaps_heartbeat": 0,  # gaps seen from a heartbeat's head
            "repairs": 0,  # replays run
            "repaired": 0,  # events received by replay
            "bad_messages": 0,  # undecodable or misframed PUB messages
            "lost": 0,  # seqs no node could replay (trimmed)
        }
        self._sub = self._context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 100000)
        self._sub.setsockopt(zmq.SUBSCRIBE, (stream + "/").encode())
        for seed in seeds:
            self._nodes[seed] = _Node(seed)
        self._discover()
        if not any(node.id for node in self._nodes.values()):
            self.close()
            raise ShoalTimeout("no node reachable at %s" % ", ".join(seeds))
        self._next_refresh = time.monotonic() + refresh
        self._repair_all()

    def close(self):
        for node in self._nodes.values():
            if node.client:
                node.client.close()
                node.client = None
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        while True:
            event = self.recv(None)
            if event is not None:
                yield event

    #  -- public ---------------------------------------------------------

    def recv(self, timeout=1.0):
        """The next event (a shoal_pb2.Event), or None after timeout seconds
        (None = wait for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._pump(left)
        return self._ready.popleft()

    def nodes(self):
        """[(name, id hex, router, pub)] of the nodes found so far."""
        return [(n.name, hex_id(n.id), n.router, n.pub) for n in self._nodes.values() if n.id]

    def positions(self):
        """{origin hex: next seq expected}."""
        return dict((hex_id(o), s) for o, s in self._expected.items())

    def disconnect(self):
        """Drops the live connections (what a network fault does); events
        published meanwhile come back by replay after reconnect()."""
        for node in self._nodes.values():
            if node.pub:
                self._sub.disconnect(node.pub)
        self._connected = False

    def reconnect(self):
        for node in self._nodes.values():
            if node.pub:
                self._sub.connect(node.pub)
        self._connected = True

    #  -- discovery ------------------------------------------------------

    def _client(self, node):
        if node.client is None:
            node.client = Client(node.router, self.timeout, self._context)
        return node.client

    def _forget_client(self, node):
        #  After a timeout the DEALER may still deliver the late reply:
        #  start afresh rather than read it as the answer to a later request.
        if node.client:
            node.client.close()
            node.client = None
        node.failures += 1

    def _discover(self):
        """Hello and Status to every known node; learns new nodes from their
        peer lists until no new one turns up."""
        todo = list(self._nodes.keys())
        seen = set()
        while todo:
            router = todo.pop()
            if router in seen:
                continue
            seen.add(router)
            node = self._nodes.setdefault(router, _Node(router))
            try:
                client = self._client(node)
                timeout = min(self.timeout, 1.0) if node.failures else self.timeout
                #  Hello every time: a node restarted on the same ROUTER
                #  endpoint may have another PUB port.
                hello = client.hello(self.mesh, "shoal-python", self._client_id, timeout)
                node.id = hello.node
                node.name = hello.name
                pub = "tcp://%s:%d" % (split_endpoint(router)[0], hello.pub_port)
                if pub != node.pub:
                    if node.pub and self._connected:
                        self._sub.disconnect(node.pub)
                    node.pub = pub
                    if self._connected:
                        self._sub.connect(pub)
                for peer in hello.known_peers:
                    if peer not in self._nodes:
                        todo.append(peer)
                status = client.status(timeout)
                node.failures = 0
            except ShoalTimeout:
                self._forget_client(node)
                continue
            except ShoalError:
                node.failures += 1
                continue
            node.logs = {}
            for log in status.logs:
                if log.stream == self.stream:
                    node.logs[log.origin] = (log.first_seq, log.head_seq)
                    self._learn_origin(log.origin, log.first_seq, log.head_seq)
            for peer in status.peers:
                if peer.endpoint and peer.endpoint not in self._nodes:
                    todo.append(peer.endpoint)

    def _learn_origin(self, origin, first, head):
        """Sets the start position of an origin seen for the first time."""
        if origin not in self._expected:
            if origin in self._starts:
                self._expected[origin] = max(self._starts[origin], 1)
            elif self._start == "now":
                self._expected[origin] = head + 1
            else:
                self._expected[origin] = max(first, 1)
        if head > self._head.get(origin, 0):
            self._head[origin] = head

    #  -- live traffic ---------------------------------------------------

    def _pump(self, timeout):
        """Waits up to timeout for live messages, handles what is there,
        refreshes discovery and repairs gaps."""
        now = time.monotonic()
        wait = self._next_refresh - now
        for retry in self._retry_at.values():
            wait = min(wait, retry - now)
        if timeout is not None:
            wait = min(wait, timeout)
        wait = max(wait, 0)
        if self._sub.poll(int(wait * 1000)):
            for _ in range(10000):
                try:
                    frames = self._sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_message(frames)
        if time.monotonic() >= self._next_refresh:
            self._discover()
            self._next_refresh = time.monotonic() + self.refresh
        self._repair_all()

    def _on_message(self, frames):
        if len(frames) != 2:
            self.stats["bad_messages"] += 1
            return
        topic, body = frames
        prefix = (self.stream + "/").encode()
        if not topic.startswith(prefix):
            self.stats["bad_messages"] += 1
            return
        try:
            if topic == prefix:
                heartbeat = pb.Heartbeat.FromString(body)
                if len(heartbeat.origin) != ID_SIZE or heartbeat.stream != self.stream:
                    raise ValueError("bad heartbeat")
                self._on_heartbeat(heartbeat.origin, heartbeat.head_seq)
            else:
                event = pb.Event.FromString(body)
                if len(event.origin) != ID_SIZE or event.stream != self.stream or event.seq == 0:
                    raise ValueError("bad event")
                self._on_live(event)
        except Exception:
            self.stats["bad_messages"] += 1

    def _on_heartbeat(self, origin, head):
        if origin not in self._expected:
            #  A new origin: "now" starts after its head, others at 1.
            self._learn_origin(origin, 1, head)
        if head > self._head.get(origin, 0):
            self._head[origin] = head
        if head >= self._expected[origin] and not self._early.get(origin):
            self.stats["gaps_heartbeat"] += 1

    def _on_live(self, event):
        origin = event.origin
        if origin not in self._expected:
            if self._start == "now" and origin not in self._starts:
                self._expected[origin] = event.seq
            else:
                self._learn_origin(origin, 1, 0)
        if event.seq > self._expected[origin] and not self._early.get(origin):
            self.stats["gaps_seq"] += 1
        self._on_event(event)

    def _on_event(self, event):
        """Delivers the event if it is next, buffers it if early, drops it
        if its seq was passed already."""
        origin, seq = event.origin, event.seq
        expected = self._expected[origin]
        if seq > self._head.get(origin, 0):
            self._head[origin] = seq
        if seq < expected:
            self.stats["duplicates"] += 1
            return
        if seq > expected:
            early = self._early.setdefault(origin, {})
            if seq in early:
                self.stats["duplicates"] += 1
            else:
                early[seq] = event
            return
        self._deliver(event)
        early = self._early.get(origin)
        while early:
            following = early.pop(self._expected[origin], None)
            if following is None:
                break
            self._deliver(following)

    def _deliver(self, event):
        self._expected[event.origin] = event.seq + 1
        if self.types is not None and event.type not in self.types:
            self.stats["filtered"] += 1
            return
        self._ready.append(event)
        self.stats["delivered"] += 1

    #  -- repair ---------------------------------------------------------

    def _holders(self, origin):
        """Nodes that can replay the origin's log: the origin first, then
        the nodes whose Status showed the log, then the rest."""
        nodes = [n for n in self._nodes.values() if n.id]
        nodes.sort(key=lambda n: (n.id != origin, origin not in n.logs, n.failures))
        return nodes

    def _repair_all(self):
        now = time.monotonic()
        for origin in list(self._expected.keys()):
            if self._head.get(origin, 0) < self._expected[origin]:
                continue
            if self._retry_at.get(origin, 0) > now:
                continue
            if self._repair(origin):
                self._retry_at.pop(origin, None)
            else:
                self._retry_at[origin] = now + 0.5

    def _repair(self, origin):
        """Replays [next expected, known head] of origin. True when the gap
        is closed (or can never be, the range being trimmed everywhere)."""
        trimmed_to = None
        for node in self._holders(origin):
            expected = self._expected[origin]
            head = self._head[origin]
            if head < expected:
                return True
            self.stats["repairs"] += 1
            try:
                for event in self._client(node).replay(origin, self.stream, expected, head,
                                                       self.credit):
                    self.stats["repaired"] += 1
                    self._on_event(event)
            except ShoalTimeout:
                self._forget_client(node)
                continue
            except ShoalError as error:
                if error.code == UNAVAILABLE and origin in node.logs:
                    first = node.logs[origin][0]
                    trimmed_to = max(trimmed_to or 0, first)
                continue
            if self._expected[origin] > head:
                return True
        if trimmed_to and trimmed_to > self._expected[origin]:
            #  Retention removed the range on every node that holds it.
            self.stats["lost"] += trimmed_to - self._expected[origin]
            self._expected[origin] = trimmed_to
            early = self._early.get(origin, {})
            for seq in [s for s in early if s < trimmed_to]:
                del early[seq]
            return False
        return False
