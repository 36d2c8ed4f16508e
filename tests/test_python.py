"""test_python - the Python client (clients/python) against live shoald.

Three shoald on loopback (--interface none, static peers, ephemeral
ports, a throwaway data directory), killed by pid at the end. The C CLI
publishes, the Python client subscribes, replays and publishes; the C
CLI's --json output is the independent check of every decoded field.
Gaps are made by dropping the subscriber's SUB connections mid-stream;
one node heartbeats every 200 ms (the gap shows in a heartbeat), one
never does within the test (the gap shows only as a seq jump).

Run by tests/test_python.sh, which picks the python3 that configure
found (Debian's, with python3-zmq and python3-protobuf) and sets
PYTHONPATH to the generated shoal_pb2 and the client module.
"""

import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import zmq

import shoal_client
import shoal_pb2 as pb
from shoal_client import Client, ShoalError, Subscriber

BUILDDIR = os.environ.get("SHOAL_BUILDDIR", ".")
SRCDIR = os.environ.get("SHOAL_SRCDIR", ".")
SHOALD = os.path.join(BUILDDIR, "nodes", "shoald")
SHOAL = os.path.join(BUILDDIR, "nodes", "shoal")
MESH = "pytest-%d" % os.getpid()

#  --------------------------------------------------------------------------
#  TAP

_count = 0
_failed = 0


def ok(cond, name):
    global _count, _failed
    _count += 1
    if not cond:
        _failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", _count, name), flush=True)
    return cond


def is_(got, want, name):
    if not ok(got == want, name):
        diag("got %r, want %r" % (got, want))


def diag(text):
    for line in str(text).splitlines():
        print("# " + line, flush=True)


def bail(text):
    print("Bail out! " + text, flush=True)
    raise SystemExit(1)


#  --------------------------------------------------------------------------
#  Processes: every shoald is killed by its pid at the end, and dies with
#  the test (PR_SET_PDEATHSIG) if the test itself is killed.

_procs = []
_tmpdir = tempfile.mkdtemp(prefix="shoal-python-")


def _child_setup():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _child_env():
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("SHOAL_"))
    env["HOME"] = _tmpdir
    env["XDG_DATA_HOME"] = _tmpdir
    return env


class Node(object):
    pass


def start_node(name, *extra):
    node = Node()
    node.name = name
    node.data = os.path.join(_tmpdir, name)
    argv = [SHOALD, "--data", node.data, "--name", name, "--mesh", MESH, "--interface", "none"]
    argv += list(extra)
    node.err = open(os.path.join(_tmpdir, name + ".log"), "w")
    node.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=node.err, env=_child_env(), preexec_fn=_child_setup)
    _procs.append(node.proc)
    line = b""
    deadline = time.monotonic() + 15
    while b"\n" not in line and time.monotonic() < deadline:
        ready, _, _ = select.select([node.proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(node.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    m = re.match(r"shoald: node (\S+) ([0-9a-f]{32}) pub (\S+) router (\S+) ", line.decode())
    if not m:
        with open(os.path.join(_tmpdir, name + ".log")) as f:
            diag(f.read())
        bail("shoald %s did not start" % name)
    node.id = bytes.fromhex(m.group(2))
    node.pub = m.group(3)
    node.router = m.group(4)
    return node


def alive(node):
    return node.proc.poll() is None


def shoal(*args, input=None):
    """Runs the C CLI; returns (exit status, stdout, stderr)."""
    run = subprocess.run([SHOAL, "--timeout", "5000"] + list(args), input=input,
                         capture_output=True, env=_child_env(), timeout=60,
                         preexec_fn=_child_setup)
    return run.returncode, run.stdout.decode(), run.stderr.decode()


def cleanup():
    for proc in _procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    shutil.rmtree(_tmpdir, ignore_errors=True)


#  --------------------------------------------------------------------------
#  Helpers

def collect(subscriber, want, timeout):
    """Receives until `want` (dict origin -> last seq) is reached or the
    timeout; returns {origin: [seqs in delivery order]} and the events."""
    got = {}
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(got.get(o) and got[o][-1] >= s for o, s in want.items()):
            break
        event = subscriber.recv(0.2)
        if event is not None:
            got.setdefault(event.origin, []).append(event.seq)
            events.append(event)
    return got, events


def exactly(seqs, first, last):
    return seqs == list(range(first, last + 1))


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


#  --------------------------------------------------------------------------
#  The tests

def test_basics(alpha):
    with Client(alpha.router) as client:
        client.ping()
        ok(True, "Ping gets a Pong")
        status = client.status()
        is_(status.node, alpha.id, "Status: node id is the one shoald printed")
        is_(status.name, "alpha", "Status: name")
        ok("published" in status.counters, "Status: counters")
        hello = client.hello(MESH)
        is_("tcp://127.0.0.1:%d" % hello.pub_port, alpha.pub, "Hello: pub_port is shoald's PUB")
        is_(hello.mesh, MESH, "Hello: mesh")


def test_subscribe(alpha, beta):
    #  alpha must know beta for the subscriber to find it through alpha.
    with Client(alpha.router) as client:
        ok(wait_for(lambda: any(p.node == beta.id for p in client.status().peers), 15),
           "alpha lists beta among its peers")
    subscriber = Subscriber([alpha.router], "orders", "beginning", mesh=MESH)
    found = sorted(name for name, _, _, _ in subscriber.nodes())
    is_(found, ["alpha", "beta"], "the subscriber finds beta through alpha's peer list")
    time.sleep(0.5)  # the SUB connections settle (slow joiner); gaps are repaired anyway

    event_id = "0123456789abcdef0123456789abcdef"
    start_ns = time.time_ns()
    rc, out, err = shoal("--node", alpha.router, "pub", "orders", "OrderPlaced", "--key", "k-1",
                         "--json-payload", '{"total":12.5,"items":["a","b"]}', "--content-type",
                         "application/json", "--correlation-id", "corr-1", "--causation-id",
                         "cause-1", "--schema-version", "3", "--id", event_id, "--header",
                         "region=eu", "--header", "tier=gold")
    ok(rc == 0 and out.strip() == "%s/orders/1" % alpha.id.hex(), "shoal pub on alpha: seq 1")
    if rc:
        diag(err)
    rc, _, err = shoal("--node", beta.router, "pub", "orders", "Tick",
                       input=b"".join(b"%d\n" % i for i in range(1, 6)))
    ok(rc == 0, "shoal pub on beta: 5 events from stdin")

    got, events = collect(subscriber, {alpha.id: 1, beta.id: 5}, 20)
    ok(exactly(got.get(alpha.id, []), 1, 1), "subscriber: alpha's event once")
    ok(exactly(got.get(beta.id, []), 1, 5), "subscriber: beta's 5 events once each, in order")
    placed = [e for e in events if e.origin == alpha.id]
    if not placed:
        bail("the subscriber received nothing from alpha")
    event = placed[0]
    #  Every field against what was published and against the C CLI's
    #  own decoding of the stored event.
    rc, out, _ = shoal("--node", alpha.router, "--json", "replay", "--origin", alpha.id.hex(),
                       "orders", "--from", "1", "--to", "1")
    ref = json.loads(out.splitlines()[0]) if rc == 0 and out.strip() else {}
    is_(event.origin.hex(), ref.get("origin"), "field origin matches the C CLI")
    is_(event.stream, "orders", "field stream")
    is_(event.seq, 1, "field seq")
    is_(event.type, "OrderPlaced", "field type")
    is_(event.key, "k-1", "field key")
    ok(start_ns - 5 * 10**9 <= event.time_ns <= time.time_ns() and event.time_ns == ref.get(
        "time_ns"), "field time_ns: set by the node when recorded, as the C CLI reads it")
    is_(event.id.hex(), event_id, "field id: the producer's idempotency key")
    is_(event.correlation_id, "corr-1", "field correlation_id")
    is_(event.causation_id, "cause-1", "field causation_id")
    is_(event.schema_version, 3, "field schema_version")
    is_(event.content_type, "application/json", "field content_type")
    is_(json.loads(event.payload), {"total": 12.5, "items": ["a", "b"]}, "field payload")
    is_(dict(event.headers), {"region": "eu", "tier": "gold"}, "field headers")
    is_(ref.get("headers"), dict(event.headers), "headers match the C CLI's")
    ticks = [e for e in events if e.origin == beta.id]
    is_([e.payload for e in ticks], [b"%d" % i for i in range(1, 6)],
        "beta's payloads are the stdin lines, in order")
    return subscriber


def test_replay(alpha):
    lines = b"".join(b"%d\n" % i for i in range(2, 42))
    rc, _, _ = shoal("--node", alpha.router, "pub", "orders", "Tick", input=lines)
    ok(rc == 0, "shoal pub on alpha: 40 more events (seq 2-41)")
    with Client(alpha.router) as client:
        batches = []
        events = list(client.replay(alpha.id, "orders", 10, 20, credit=3, batches=batches))
        is_([e.seq for e in events], list(range(10, 21)), "replay 10-20 gives seq 10-20 in order")
        is_([e.payload for e in events], [b"%d" % (s - 0) for s in range(10, 21)],
            "replayed payloads are what was published")
        ok(len(batches) >= 4 and all(len(b.events) <= 3 for b in batches),
           "credit 3: no batch holds more than 3 events (%d batches)" % len(batches))
        ok(batches[-1].done and not any(b.done for b in batches[:-1]),
           "only the last batch says done")
        is_(batches[-1].next_seq, 21, "the last batch's next_seq is to + 1")
        is_(batches[-1].head_seq, 41, "batches carry the log's head")
        whole = [e.seq for e in client.replay(alpha.id.hex(), "orders", credit=7)]
        is_(whole, list(range(1, 42)), "replay with to_seq 0: everything up to the head")
        typed = [e.seq for e in client.replay(alpha.id, "orders", types=["OrderPlaced"])]
        is_(typed, [1], "replay with a type filter gives only that type")
        batches = []
        empty = list(client.replay(alpha.id, "orders", 42, 0, batches=batches))
        ok(empty == [] and len(batches) == 1 and batches[0].done,
           "replay from head + 1: one empty batch with done")
        #  A replay given up half way does not disturb the next request.
        partial = client.replay(alpha.id, "orders", 1, 0, credit=2)
        next(partial)
        partial.close()
        is_(client.status().name, "alpha", "a request after an abandoned replay gets its own reply")


def test_publish(alpha):
    with Client(alpha.router) as client:
        event_id = os.urandom(16)
        ack = client.publish("py", "Measured", b"\x00\x01binary\xff", key="sensor-7", id=event_id,
                             content_type="application/octet-stream", correlation_id="c-9",
                             causation_id="z-9", schema_version=2,
                             headers={"unit": "C", "site": "lab"})
        is_(ack.origin, alpha.id, "PublishAck: origin is the node")
        is_((ack.stream, ack.seq, ack.duplicate), ("py", 1, False), "PublishAck: stream, seq 1")
        again = client.publish("py", "Measured", b"other", id=event_id)
        is_((again.seq, again.duplicate), (1, True), "a repeated id gets the first ack, duplicate")
        second = client.publish("py", "Measured", "text payload")
        is_((second.seq, second.duplicate), (2, False), "a new id gets seq 2")
        stored = list(client.replay(alpha.id, "py"))
        is_([e.seq for e in stored], [1, 2], "the duplicate was not recorded")
        first = stored[0]
        ok(first.payload == b"\x00\x01binary\xff" and first.key == "sensor-7"
           and first.id == event_id and first.content_type == "application/octet-stream"
           and first.correlation_id == "c-9" and first.causation_id == "z-9"
           and first.schema_version == 2 and dict(first.headers) == {"unit": "C", "site": "lab"}
           and first.time_ns > 0, "every field published from Python comes back by replay")
        ok(len(stored[1].id) == 16 and stored[1].id != event_id,
           "an event published without id gets a 16-byte id from the node")
    rc, out, _ = shoal("--node", alpha.router, "--json", "replay", "--origin", alpha.id.hex(),
                       "py")
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    ok(rc == 0 and len(lines) == 2 and lines[0]["id"] == event_id.hex()
       and lines[0]["headers"] == {"unit": "C", "site": "lab"}
       and lines[1]["payload_encoding"] == "base64",
       "the C CLI reads back what Python published")


def test_gap_heartbeat(alpha, beta, subscriber):
    #  Catch up with step test_replay's 40 events first.
    got, _ = collect(subscriber, {alpha.id: 41}, 20)
    ok(exactly(got.get(alpha.id, []), 2, 41), "subscriber: alpha's 40 live events once, in order")
    before = dict(subscriber.stats)
    subscriber.disconnect()
    time.sleep(0.3)
    rc1, _, _ = shoal("--node", alpha.router, "pub", "orders", "Tick",
                      input=b"".join(b"%d\n" % i for i in range(42, 62)))
    rc2, _, _ = shoal("--node", beta.router, "pub", "orders", "Tick",
                      input=b"".join(b"%d\n" % i for i in range(6, 16)))
    ok(rc1 == 0 and rc2 == 0, "while the SUB is disconnected: 20 events on alpha, 10 on beta")
    time.sleep(0.5)
    subscriber.reconnect()
    started = time.monotonic()
    #  Nothing more is published: only heartbeats can tell about the gap.
    got, events = collect(subscriber, {alpha.id: 61, beta.id: 15}, 20)
    took = time.monotonic() - started
    ok(exactly(got.get(alpha.id, []), 42, 61), "alpha's missed 20 events arrive once, in order")
    ok(exactly(got.get(beta.id, []), 6, 15), "beta's missed 10 events arrive once, in order")
    stats = subscriber.stats
    ok(stats["gaps_heartbeat"] > before["gaps_heartbeat"], "the gap was seen in a heartbeat")
    ok(stats["repaired"] - before["repaired"] >= 30, "the missed events came by replay (%d)"
       % (stats["repaired"] - before["repaired"]))
    ok(took < 10, "gap repaired %.2f s after reconnecting (heartbeat every 0.2 s)" % took)
    diag("heartbeat gap: %d events repaired in %.3f s after reconnect"
         % (stats["repaired"] - before["repaired"], took))
    extra = subscriber.recv(1.0)
    ok(extra is None, "nothing more is delivered (no duplicates)")


def test_gap_seq(gamma):
    with Client(gamma.router) as client:
        for i in range(3):
            client.publish("metrics", "Sample", "%d" % (i + 1))
    subscriber = Subscriber([gamma.router], "metrics", "beginning", mesh=MESH)
    got, _ = collect(subscriber, {gamma.id: 3}, 10)
    ok(exactly(got.get(gamma.id, []), 1, 3), "a late subscriber gets the history by replay")
    time.sleep(0.5)
    with Client(gamma.router) as client:
        client.publish("metrics", "Sample", "4")
    got, _ = collect(subscriber, {gamma.id: 4}, 10)
    ok(exactly(got.get(gamma.id, []), 4, 4), "then seq 4 live")
    subscriber.disconnect()
    time.sleep(0.3)
    with Client(gamma.router) as client:
        for i in range(5, 15):
            client.publish("metrics", "Sample", "%d" % i)
    subscriber.reconnect()
    #  No heartbeat comes from gamma during the test: the gap shows when a
    #  later event arrives. The SUB connection takes a moment, so publish
    #  until one gets through.
    delivered = []
    last = 14
    with Client(gamma.router) as client:
        for _ in range(20):
            last = client.publish("metrics", "Sample", "more").seq
            got, _ = collect(subscriber, {gamma.id: last}, 1.0)
            delivered += got.get(gamma.id, [])
            if delivered and delivered[-1] >= last:
                break
    ok(exactly(delivered, 5, last), "after the SUB reconnects, seq 5-%d arrive once, in order"
       % last)
    ok(subscriber.stats["gaps_seq"] >= 1 and subscriber.stats["gaps_heartbeat"] == 0,
       "the gap was seen from a seq jump (no heartbeat)")
    ok(subscriber.stats["repaired"] >= 3 + 10, "history and the missed events came by replay")
    subscriber.close()


def expect_error(client, request, code, name, raw=None):
    if raw is not None:
        client.send_raw(raw)
        request_id = 0
    else:
        request_id = client.send(request)
    try:
        response = client.recv(request_id)
    except shoal_client.ShoalTimeout:
        ok(False, name + ": no reply")
        return
    got = (response.WhichOneof("body"), response.error.code)
    if not ok(got == ("error", code) and response.error.message,
              "%s: Error %d (%s)" % (name, code, shoal_client.ERROR_NAMES[code])):
        diag("got %r %r" % (got, response.error.message))
    elif raw is None and response.request_id != request_id:
        ok(False, name + ": the error echoes the request id")


def test_errors(alpha):
    with Client(alpha.router) as client:
        head_before = [(l.origin, l.stream, l.head_seq) for l in client.status().logs]
        bad_before = client.status().counters["bad_requests"]
        expect_error(client, None, 1, "undecodable bytes", raw=[b"\xff\xff\xff\xff"])
        expect_error(client, None, 1, "a request in two frames", raw=[b"", b""])
        expect_error(client, pb.Request(), 1, "a Request with no body")
        r = pb.Request()
        r.publish.SetInParent()
        expect_error(client, r, 1, "PublishRequest without an event")
        r = pb.Request()
        r.publish.event.stream = "Bad Stream"
        r.publish.event.type = "T"
        expect_error(client, r, 1, "publish to an invalid stream name")
        r = pb.Request()
        r.publish.event.stream = "orders"
        expect_error(client, r, 1, "publish without a type")
        r = pb.Request()
        r.publish.event.stream = "orders"
        r.publish.event.type = "T"
        r.publish.event.id = b"abc"
        expect_error(client, r, 1, "publish with a 3-byte id")
        r = pb.Request()
        r.publish.event.stream = "orders"
        r.publish.event.type = "T"
        r.publish.event.payload = b"x" * 6000
        expect_error(client, r, 4, "an event over --max-event-size 4096")
        r.publish.event.payload = b"x" * 20000
        expect_error(client, None, 4, "a request far over the maximum",
                     raw=[r.SerializeToString()])
        r = pb.Request()
        r.replay.origin = b"abc"
        r.replay.stream = "orders"
        r.replay.credit = 10
        expect_error(client, r, 1, "replay with a 3-byte origin")
        r.replay.origin = alpha.id
        r.replay.stream = "-bad"
        expect_error(client, r, 1, "replay of an invalid stream name")
        r.replay.stream = "nosuchstream"
        expect_error(client, r, 2, "replay of an unknown stream")
        r.replay.stream = "orders"
        r.replay.origin = os.urandom(16)
        expect_error(client, r, 2, "replay of an unknown origin")
        r.replay.origin = alpha.id
        r.replay.from_seq = 9
        r.replay.to_seq = 5
        expect_error(client, r, 1, "replay with to_seq below from_seq")
        r.replay.from_seq = 1000
        r.replay.to_seq = 0
        expect_error(client, r, 3, "replay from beyond the head")
        r.replay.from_seq = 1
        r.replay.types.append("not a type!")
        expect_error(client, r, 1, "replay with an invalid type in the filter")
        r = pb.Request()
        r.hello.node = os.urandom(16)
        r.hello.mesh = "another-mesh"
        expect_error(client, r, 5, "Hello from another mesh")
        r.hello.node = b"abc"
        r.hello.mesh = MESH
        expect_error(client, r, 1, "Hello with a 3-byte node id")
        r = pb.Request()
        r.consumer.name = "nobody"
        r.consumer.op = "delete"
        expect_error(client, r, 2, "delete of an unknown consumer")
        r.consumer.op = "frobnicate"
        expect_error(client, r, 1, "consumer request with an unknown op")
        try:
            client.publish("Bad Stream", "T")
            ok(False, "Client.publish raises ShoalError for a bad stream")
        except ShoalError as error:
            is_(error.code, 1, "Client.publish raises ShoalError with code 1 for a bad stream")
        try:
            list(client.replay(alpha.id, "orders", 1000))
            ok(False, "Client.replay raises ShoalError beyond the head")
        except ShoalError as error:
            is_(error.code, 3, "Client.replay raises ShoalError with code 3 beyond the head")
        client.ping()
        status = client.status()
        ok(alive(alpha), "alpha is still running after every bad request")
        is_([(l.origin, l.stream, l.head_seq) for l in status.logs], head_before,
            "no log changed")
        ok(status.counters["bad_requests"] > bad_before, "alpha counted the bad requests")


def test_cli_example(alpha):
    script = os.path.join(SRCDIR, "clients", "python", "shoal_py.py")
    env = dict(os.environ)

    def run(*args):
        r = subprocess.run([sys.executable, script, "--node", alpha.router] + list(args),
                           capture_output=True, env=env, timeout=60)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    rc, out, _ = run("status")
    ok(rc == 0 and out.startswith("node alpha %s" % alpha.id.hex()), "shoal_py.py status")
    rc, out, _ = run("pub", "cli", "Note", "--payload", '{"n":1}', "--header", "a=b")
    is_((rc, out.strip()), (0, "%s/cli/1" % alpha.id.hex()), "shoal_py.py pub prints origin/stream/seq")
    rc, out, _ = run("replay", alpha.id.hex(), "cli")
    line = json.loads(out.splitlines()[0]) if rc == 0 and out.strip() else {}
    ok(line.get("payload") == {"n": 1} and line.get("headers") == {"a": "b"},
       "shoal_py.py replay prints the event as JSON")
    rc, out, _ = run("sub", "cli", "--count", "1", "--mesh", MESH)
    ok(rc == 0 and json.loads(out.splitlines()[0])["seq"] == 1 if out.strip() else False,
       "shoal_py.py sub --count 1 gets the event and exits")
    rc, _, err = run("replay", alpha.id.hex(), "nosuch")
    ok(rc == 1 and "error 2" in err, "shoal_py.py exits 1 and prints the node's error")


def test_beacon():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    delta = start_node("delta", "--interface", "lo", "--beacon-port", str(port),
                       "--beacon-interval-ms", "100")
    found = shoal_client.listen_beacons(port, MESH, 3.0)
    ok(delta.id in found, "a loopback beacon of delta is heard and decoded")
    host, beacon = found.get(delta.id, ("", {}))
    is_("tcp://%s:%d" % (host, beacon.get("pub_port", 0)), delta.pub,
        "beacon: source address and PUB port give delta's PUB endpoint")
    is_("tcp://%s:%d" % (host, beacon.get("router_port", 0)), delta.router,
        "beacon: ROUTER port")
    is_(beacon.get("leaving"), False, "beacon: not leaving")
    ok(not shoal_client.listen_beacons(port, "another-mesh", 0.5),
       "beacons of another mesh are not taken")
    delta.proc.terminate()
    ok(delta.proc.wait(10) == 0, "delta stops cleanly on SIGTERM")


def test_origin_restart():
    def free_endpoint():
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        endpoint = "tcp://127.0.0.1:%d" % probe.getsockname()[1]
        probe.close()
        return endpoint

    router = free_endpoint()
    args = ("--router", router, "--heartbeat-ms", "200")
    eps = start_node("epsilon", "--pub", free_endpoint(), *args)
    with Client(router) as client:
        for i in range(5):
            client.publish("restart", "Step", "%d" % (i + 1))
    subscriber = Subscriber([router], "restart", "beginning", mesh=MESH, refresh=0.5, timeout=2.0)
    got, _ = collect(subscriber, {eps.id: 5}, 10)
    ok(exactly(got.get(eps.id, []), 1, 5), "restart: the subscriber has seq 1-5")
    eps.proc.kill()
    eps.proc.wait()
    pub = free_endpoint()
    for _ in range(10):
        if pub != eps.pub:
            break
        pub = free_endpoint()
    again = start_node("epsilon", "--pub", pub, *args)
    ok(again.id == eps.id and again.router == router and again.pub != eps.pub,
       "restart: same id and ROUTER endpoint, another PUB port")
    with Client(router) as client:
        for i in range(5, 15):
            client.publish("restart", "Step", "%d" % (i + 1))
    got, _ = collect(subscriber, {eps.id: 15}, 20)
    ok(exactly(got.get(eps.id, []), 6, 15),
       "restart: seq 6-15 arrive once, in order, from the restarted origin's new PUB")
    subscriber.close()
    again.proc.kill()
    again.proc.wait()


def main():
    for path in (SHOALD, SHOAL):
        if not os.access(path, os.X_OK):
            print("1..0 # SKIP %s is not built" % path)
            return 0
    try:
        alpha = start_node("alpha", "--heartbeat-ms", "200", "--max-event-size", "4096")
        beta = start_node("beta", "--heartbeat-ms", "200", "--peer", alpha.router)
        gamma = start_node("gamma", "--heartbeat-ms", "3600000")
        test_basics(alpha)
        subscriber = test_subscribe(alpha, beta)
        test_replay(alpha)
        test_publish(alpha)
        test_gap_heartbeat(alpha, beta, subscriber)
        subscriber.close()
        test_gap_seq(gamma)
        test_errors(alpha)
        test_cli_example(alpha)
        test_beacon()
        test_origin_restart()
        ok(alive(alpha) and alive(beta) and alive(gamma), "every shoald ran to the end")
    finally:
        cleanup()
        zmq.Context.instance().destroy(linger=0)
    print("1..%d" % _count)
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
