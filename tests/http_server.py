"""A file server on 127.0.0.1 for installer tests: honours HTTP Range, logs requests, can drop a transfer."""

import http.server
import re
import socket
import threading
from pathlib import Path


class ModelServer:
    """Serves the files of `root`. `drop_after[name] = n` cuts the next transfer of `name` after n bytes,
    `drop_every[name] = n` every transfer of it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests = []  # (path, Range header or None, status)
        self.drop_after = {}
        self.drop_every = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                path = server.root / name
                range_header = self.headers.get("Range")
                if not path.is_file():
                    server.requests.append((name, range_header, 404))
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if match:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                server.requests.append((name, range_header, 206 if match else 200))
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop_after.pop(name, server.drop_every.get(name))
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


#: Sockets bound by `refused_url`, kept open (never listening) for the rest of the test session: a port that was freed
#: could be taken by another server (another test, another process) and then answer.
_HELD_PORTS = []


def refused_url(name: str) -> str:
    """An address on 127.0.0.1 where nothing listens: connecting is refused at once. The port stays bound to a
    socket that never listens (the kernel refuses connections to it), so nothing else can take it."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(holder)
    return f"http://127.0.0.1:{holder.getsockname()[1]}/{name}"
