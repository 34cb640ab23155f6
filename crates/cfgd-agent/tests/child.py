"""A child program for cfgd-agent's tests: records what it read at start,
on every SIGHUP (its reload) and at SIGTERM (after which it exits 7), one
JSON line each, to the file named by its first argument. The files it
reads are the rest of its arguments; the environment it reports is every
variable starting with APP_."""
import json
import os
import signal
import sys

out, files = sys.argv[1], sys.argv[2:]


def record(event):
    contents = {}
    for path in files:
        try:
            with open(path) as f:
                contents[path] = f.read()
        except FileNotFoundError:
            contents[path] = None
    env = {k: v for k, v in os.environ.items() if k.startswith("APP_")}
    line = json.dumps({"event": event, "pid": os.getpid(), "files": contents, "env": env})
    with open(out, "a") as f:
        f.write(line + "\n")


def on_term(*_):
    record("term")
    sys.exit(7)


signal.signal(signal.SIGHUP, lambda *_: record("reload"))
signal.signal(signal.SIGTERM, on_term)
with open(out + ".pid", "w") as f:
    f.write(str(os.getpid()))
record("start")
while True:
    signal.pause()
