"""A webhook receiver for the quickstart: prints every notification Vigil delivers.

python3 examples/quickstart/receiver.py [PORT]   # default 9095
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            shown = json.dumps(json.loads(body), indent=2)
        except json.JSONDecodeError:
            shown = body.decode(errors="replace")
        key = self.headers.get("Idempotency-Key")
        sys.stdout.write(f"--- {self.path} (Idempotency-Key: {key})\n{shown}\n")
        sys.stdout.flush()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9095
    sys.stdout.write(f"listening on http://127.0.0.1:{port}/notifications\n")
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
