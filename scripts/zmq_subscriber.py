#!/usr/bin/env python3
"""Print the messages of a streamer ZeroMQ sink, one line per message.

Examples::

    # the sink in its default mode (pub, binds tcp://127.0.0.1:5555): all sources
    python scripts/zmq_subscriber.py
    # only source cam1 (topic = topic_prefix + source id), stop after 100 messages
    python scripts/zmq_subscriber.py --topic cam1 --count 100
    # a sink in push mode
    python scripts/zmq_subscriber.py --pull
    # CURVE: this client's key pair and the sink's public key
    python scripts/zmq_subscriber.py --curve-secret-key client.key_secret \\
        --curve-server-key server.key

Each line: the topic, then for a frame ``seq``, ``pts_s`` and the number of tracks
(or detections); for an event its type and fields; ``--raw`` prints the decoded
message as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import zmq
import zmq.auth


def describe(message: dict[str, Any]) -> str:
    """One human-readable line for a frame or event message."""
    schema = message.get("schema", "?")
    if schema.startswith("streamer.frame/"):
        rows = message.get("tracks", message.get("detections", []))
        kind = "tracks" if "tracks" in message else "detections"
        extra = " analytics" if "analytics" in message else ""
        return (
            f"frame seq={message.get('seq')} pts_s={message.get('pts_s')} {kind}={len(rows)}{extra}"
        )
    if schema.startswith("streamer.event/"):
        fields = {k: v for k, v in message.items() if k not in ("schema", "type", "source_id")}
        return f"event {message.get('type')} " + " ".join(f"{k}={v}" for k, v in fields.items())
    return f"unknown schema {schema!r}"


def decode(payload: bytes, fmt: str) -> dict[str, Any]:
    if fmt == "msgpack":
        import msgpack

        obj = msgpack.unpackb(payload, raw=False)
    else:
        obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError(f"not a message object: {payload[:60]!r}")
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="sink endpoint")
    parser.add_argument("--pull", action="store_true", help="PULL (sink mode push), not SUB")
    parser.add_argument("--bind", action="store_true", help="bind (a sink with bind: false)")
    parser.add_argument("--topic", default="", help="SUB topic prefix (default: all)")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0: never)")
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    parser.add_argument("--raw", action="store_true", help="print each message as JSON")
    parser.add_argument("--curve-secret-key", help="this client's key pair file (.key_secret)")
    parser.add_argument("--curve-server-key", help="the sink's public key file (.key)")
    args = parser.parse_args(argv)
    if bool(args.curve_secret_key) != bool(args.curve_server_key):
        parser.error("--curve-secret-key and --curve-server-key go together")

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL if args.pull else zmq.SUB)
    try:
        if args.curve_secret_key:
            public, secret = zmq.auth.load_certificate(args.curve_secret_key)
            server_public, _ = zmq.auth.load_certificate(args.curve_server_key)
            if secret is None:
                parser.error(f"{args.curve_secret_key}: no secret key in it")
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.curve_serverkey = server_public
        if not args.pull:
            sock.subscribe(args.topic.encode("utf-8"))
        (sock.bind if args.bind else sock.connect)(args.endpoint)
        received = 0
        while args.count <= 0 or received < args.count:
            parts = sock.recv_multipart()
            topic, payload = (parts[0], parts[-1]) if len(parts) > 1 else (b"", parts[0])
            message = decode(payload, args.format)
            text = json.dumps(message) if args.raw else describe(message)
            print(f"{topic.decode('utf-8', 'replace')} {text}", flush=True)
            received += 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
