"""A loopback HTTP server for download tests: never any traffic beyond 127.0.0.1."""

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` under /good/, corrupted under /bad/, cut short under /broken/."""

    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        self.hits.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        data = self.files.get(name)
        if data is None:
            self.send_error(404)
            return
        if kind == "bad":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) + (1000 if kind == "broken" else 0)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if kind == "broken" else data)
        if kind == "broken":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the server dies mid-transfer

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[tuple[str, type[Handler]]]:
    """Run a server on a free loopback port; yields its base URL and its handler (files, hits)."""

    class Serving(Handler):
        pass

    Serving.files, Serving.hits = dict(files), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serving)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Serving
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def dead_url() -> str:
    """The URL of a loopback port with nothing listening (a download from it fails at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
