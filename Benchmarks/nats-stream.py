#!/usr/bin/env python3
"""Creates a JetStream stream on a NATS cluster and waits until the stream has a leader
(before that, a publish is silently dropped): nats-stream.py PORT NAME SUBJECTS REPLICAS.
Speaks the NATS text protocol directly, so the baseline needs no NATS client package."""
import json
import socket
import sys
import time

port, name, subjects, replicas = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
config = json.dumps({"name": name, "subjects": [subjects], "num_replicas": replicas, "storage": "file"}).encode()


def request(subject, payload):
    """One JetStream API request; its JSON reply, or an error text."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            lines = connection.makefile("rb")
            lines.readline()  # INFO
            connection.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.setup 1\r\n')
            connection.sendall(b"PUB %s _INBOX.setup %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
            while True:
                line = lines.readline().decode()
                if not line:
                    return "connection closed"
                if line.startswith("MSG"):
                    return lines.readline().decode()
    except OSError as error:
        return str(error)


deadline = time.time() + 60
while True:
    reply = request("$JS.API.STREAM.CREATE." + name, config)
    if '"error"' not in reply and reply.startswith("{"):
        break
    if time.time() > deadline:
        sys.exit("could not create stream %s: %s" % (name, reply.strip()))
    time.sleep(0.5)
while True:
    reply = request("$JS.API.STREAM.INFO." + name, b"")
    if reply.startswith("{") and json.loads(reply).get("cluster", {}).get("leader"):
        break
    if time.time() > deadline:
        sys.exit("stream %s has no leader: %s" % (name, reply.strip()))
    time.sleep(0.2)
