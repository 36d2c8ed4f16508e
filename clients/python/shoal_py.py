#!/usr/bin/python3
"""shoal_py - a small shoal command-line client in Python (example).

Uses only shoal_client (pyzmq + protobuf). shoal_pb2.py is generated at
build time into the build tree's clients/python; run from there, or put
that directory on PYTHONPATH.

  shoal_py.py --node tcp://127.0.0.1:7001 status
  shoal_py.py --node ENDPOINT pub STREAM TYPE [--key K] [--payload TEXT] [--id HEX] [--header N=V]...
  shoal_py.py --node ENDPOINT sub STREAM [--from beginning|now] [--type T]... [--count N] [--mesh M]
  shoal_py.py --node ENDPOINT replay ORIGIN STREAM [--from N] [--to M] [--credit C]

Exit status: 0 ok, 1 error (a node's Error or no reply), 2 usage.
"""

import argparse
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shoal_client  # noqa: E402


def event_json(event):
    """One event as a JSON object, every field of the contract."""
    try:
        payload = json.loads(event.payload.decode("utf-8"))
        encoding = "json"
    except ValueError:
        payload = base64.b64encode(event.payload).decode()
        encoding = "base64"
    return json.dumps({
        "origin": event.origin.hex(), "stream": event.stream, "seq": event.seq,
        "type": event.type, "key": event.key, "time_ns": event.time_ns, "id": event.id.hex(),
        "correlation_id": event.correlation_id, "causation_id": event.causation_id,
        "schema_version": event.schema_version, "content_type": event.content_type,
        "payload_encoding": encoding, "payload": payload, "headers": dict(event.headers),
    }, sort_keys=False)


def main(argv):
    parser = argparse.ArgumentParser(prog="shoal_py.py", description="a shoal client in Python")
    parser.add_argument("--node", required=True, help="a node's ROUTER endpoint, tcp://HOST:PORT")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the node's logs, peers and counters")
    pub = commands.add_parser("pub", help="publish one event through the node")
    pub.add_argument("stream")
    pub.add_argument("type")
    pub.add_argument("--key", default="")
    pub.add_argument("--payload", default="")
    pub.add_argument("--content-type", default="")
    pub.add_argument("--id", default=None, help="idempotency key, 32 hex digits")
    pub.add_argument("--header", action="append", default=[], help="NAME=VALUE")
    sub = commands.add_parser("sub", help="follow a stream across the mesh, gap-free")
    sub.add_argument("stream")
    sub.add_argument("--from", dest="start", default="beginning", choices=["beginning", "now"])
    sub.add_argument("--type", action="append", default=[])
    sub.add_argument("--count", type=int, default=0, help="stop after N events")
    sub.add_argument("--mesh", default="default")
    replay = commands.add_parser("replay", help="replay a range of one origin's log")
    replay.add_argument("origin", help="node id, 32 hex digits")
    replay.add_argument("stream")
    replay.add_argument("--from", dest="from_seq", type=int, default=1)
    replay.add_argument("--to", dest="to_seq", type=int, default=0)
    replay.add_argument("--credit", type=int, default=256)
    args = parser.parse_args(argv)

    try:
        if args.command == "status":
            with shoal_client.Client(args.node, args.timeout) as client:
                status = client.status()
            print("node %s %s" % (status.name, status.node.hex()))
            for log in status.logs:
                print("  log %s/%s first %d head %d" % (log.origin.hex(), log.stream, log.first_seq,
                                                       log.head_seq))
            for peer in status.peers:
                print("  peer %s %s %s %s" % (peer.name, peer.node.hex(), peer.endpoint, peer.state))
            for name in sorted(status.counters):
                print("  %s %d" % (name, status.counters[name]))
        elif args.command == "pub":
            headers = {}
            for header in args.header:
                name, sep, value = header.partition("=")
                if not sep or not name:
                    parser.error("--header needs NAME=VALUE, got %r" % header)
                headers[name] = value
            with shoal_client.Client(args.node, args.timeout) as client:
                ack = client.publish(args.stream, args.type, args.payload, key=args.key,
                                     id=args.id, content_type=args.content_type,
                                     headers=headers)
            print("%s/%s/%d%s" % (ack.origin.hex(), ack.stream, ack.seq,
                                  " duplicate" if ack.duplicate else ""))
        elif args.command == "sub":
            with shoal_client.Subscriber([args.node], args.stream, args.start, args.type or None,
                                         args.mesh, args.timeout) as subscriber:
                count = 0
                for event in subscriber:
                    print(event_json(event), flush=True)
                    count += 1
                    if args.count and count >= args.count:
                        break
        elif args.command == "replay":
            with shoal_client.Client(args.node, args.timeout) as client:
                for event in client.replay(args.origin, args.stream, args.from_seq, args.to_seq,
                                           args.credit):
                    print(event_json(event), flush=True)
    except shoal_client.ShoalError as error:
        print("shoal_py: %s" % error, file=sys.stderr)
        return 1
    except shoal_client.ShoalTimeout as error:
        print("shoal_py: %s (is shoald running there?)" % error, file=sys.stderr)
        return 1
    except ValueError as error:
        print("shoal_py: %s" % error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
