"""A webhook receiver for cfgd's tests, on maintained libraries: it verifies
each request's Standard Webhooks signature with `standardwebhooks` and
parses its body with `cloudevents`, then appends what it got to a JSON
lines file.

    webhook_receiver.py SECRET OUT.jsonl [PORT]

Prints `listening PORT` once it is. What it answers is set by POSTing JSON
to /_mode: {"status": 500} answers 500 to every event, {"delay": 2.5}
waits that long before answering, {} answers 204 again. A request whose
signature does not verify is answered 400 and recorded with "verified":
false; one that is not a valid CloudEvent, 422 with its "error". Each recorded line: webhook-id, timestamp, cfgd-replica, status
answered, verified, the CloudEvent's attributes and data (or Slack's body),
and the raw body and headers (for the tampering test).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET, OUT = sys.argv[1], sys.argv[2]
PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 0
VERIFIER = Webhook(SECRET)
LOCK = threading.Lock()
MODE = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/_mode":
            with LOCK:
                MODE.clear()
                MODE.update(json.loads(body or b"{}"))
            return self.answer(204)
        with LOCK:
            mode = dict(MODE)
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {
            "webhook_id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "replica": headers.get("cfgd-replica"),
            "received": time.time(),
            "headers": headers,
            "raw": body.decode("utf-8", "replace"),
        }
        try:
            VERIFIER.verify(body, headers)
            record["verified"] = True
        except WebhookVerificationError as e:
            record["verified"] = False
            record["error"] = str(e)
        if record["verified"]:
            if headers.get("content-type", "").startswith("application/cloudevents+json"):
                try:
                    event = from_http_event(HTTPMessage(headers=headers, body=body))
                except Exception as e:
                    record["error"] = f"not a valid CloudEvent: {e}"
                    record["status"] = 422
                    with LOCK, open(OUT, "a") as out:
                        out.write(json.dumps(record) + "\n")
                    return self.answer(422)
                record["event"] = {
                    "id": event.get_id(),
                    "type": event.get_type(),
                    "source": event.get_source(),
                    "subject": event.get_subject(),
                    "specversion": event.get_specversion(),
                }
                record["data"] = event.get_data()
            else:
                record["data"] = json.loads(body)
        if mode.get("delay"):
            time.sleep(float(mode["delay"]))
        status = 400 if not record["verified"] else int(mode.get("status", 204))
        record["status"] = status
        with LOCK, open(OUT, "a") as out:
            out.write(json.dumps(record) + "\n")
        self.answer(status)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
