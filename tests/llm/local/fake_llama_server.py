"""Stand-in for the server subprocess (``-m hieramas.llm.local.launcher --config_file X``).

Run as ``fake_llama_server.py MODE -m ... --config_file X``; MODE is ``ok`` (serve
``/v1/models`` from the config and the config itself at ``/config``), ``wrong`` (serve
other model ids), ``crash`` (print and exit 3) or ``mute`` (never answer).
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def main() -> None:
    mode = sys.argv[1]
    config = json.loads(Path(sys.argv[sys.argv.index("--config_file") + 1]).read_text())
    if mode == "crash":
        print("fake server: cannot load model", flush=True)
        raise SystemExit(3)
    if mode == "mute":
        time.sleep(60)
        return
    ids = [m["model_alias"] for m in config["models"]] if mode == "ok" else ["someone-else"]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v1/models":
                body = {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}
            elif self.path == "/config":
                body = config
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    HTTPServer((config["host"], config["port"]), Handler).serve_forever()


if __name__ == "__main__":
    main()
