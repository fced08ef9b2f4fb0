"""A real HTTP server on loopback for tests that fetch: images, redirects, and misbehaving routes.

    with ImageServer() as server:
        png = server.add_image("/a.png", "astronaut.png")   # real bytes from skimage's sample photos
        server.add("/page", b"<html>", content_type="image/jpeg")
        server.add_redirect("/old", "/a.png")
        server.add_stall("/slow")                            # drips one byte at a time, forever
        server.add_endless("/huge")                          # streams without end
        fetch_image(server.url("/a.png"), allow_loopback=True)
        assert server.hits["/a.png"] == 1

It listens on 127.0.0.1 with a free port, one thread per connection.
``hits``, ``bytes_sent`` and ``request_headers`` are keyed by path (without
the query). ``wait_idle()`` waits until every handler has returned, e.g. before
reading ``bytes_sent`` of a streaming route. Pass ``ssl_context`` (server side)
to serve HTTPS.
"""

import importlib.util
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SAMPLE_IMAGES = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}


def sample_image(name: str) -> bytes:
    """The bytes of one of skimage's sample photos, e.g. ``astronaut.png``, ``rocket.jpg``."""
    return (SAMPLE_IMAGES / name).read_bytes()


class ImageServer:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None):
        self._routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self._ssl_context = ssl_context
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._active = 0
        self.hits: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.request_headers: dict[str, dict[str, str]] = {}
        self._httpd: ThreadingHTTPServer | None = None

    # --- Life cycle -------------------------------------------------------------

    def start(self) -> "ImageServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        if self._ssl_context is not None:
            self._httpd.socket = self._ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="image-server", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "ImageServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_idle(self, timeout: float = 10) -> bool:
        """Wait until no request is being handled; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(0.01)
        return False

    # --- Routes -------------------------------------------------------------------

    def add(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve ``body`` with a Content-Length (unless ``headers`` sets one)."""
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}

        def respond(handler):
            handler.send_response(status)
            for name, value in all_headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.write(body)

        self._routes[path] = respond

    def add_image(self, path: str, name: str, *, content_type: str | None = None) -> bytes:
        """Serve a sample photo (see ``sample_image``); returns its bytes."""
        body = sample_image(name)
        self.add(path, body, content_type=content_type or _TYPES[Path(name).suffix])
        return body

    def add_redirect(self, path: str, location: str, *, status: int = 302) -> None:
        self.add(path, b"", status=status, headers={"Location": location})

    def add_stall(self, path: str, *, interval: float = 0.05, during: str = "body", prefix: bytes = PNG_SIGNATURE):
        """Drip one byte every ``interval`` seconds until the client leaves.

        ``during="body"`` sends the headers at once and drips an image-looking
        body; ``during="headers"`` drips the header block itself.
        """

        def respond(handler):
            if during == "headers":
                handler.write(b"HTTP/1.0 200 OK\r\n")
                drip = b"X-Slow: " + b"a" * 1_000_000
            else:
                handler.send_response(200)
                handler.send_header("Content-Type", "image/png")
                handler.end_headers()
                handler.write(prefix)
                drip = b"\0" * 1_000_000
            for byte in drip:
                if self._closing.wait(interval) or not handler.write(bytes([byte])):
                    return

        self._routes[path] = respond

    def add_endless(self, path: str, *, prefix: bytes = PNG_SIGNATURE, content_type: str = "image/png") -> None:
        """Stream an image-looking body without end (no Content-Length) until the client leaves."""

        def respond(handler):
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.end_headers()
            handler.write(prefix)
            chunk = b"\0" * 65536
            while not self._closing.is_set() and handler.write(chunk):
                pass

        self._routes[path] = respond

    def add_handler(self, path: str, respond: Callable[[BaseHTTPRequestHandler], None]) -> None:
        """A custom route: ``respond(handler)``; ``handler.write(data)`` counts bytes and returns False once the client left."""
        self._routes[path] = respond


class _Handler(BaseHTTPRequestHandler):
    server_version = "ImageServer/1"
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        owner: ImageServer = self.server.owner
        self.route = self.path.split("?", 1)[0]
        with owner._lock:
            owner._active += 1
            owner.hits[self.route] += 1
            owner.request_headers[self.route] = dict(self.headers.items())
        try:
            respond = owner._routes.get(self.route)
            if respond is None:
                self.send_error(404)
            else:
                respond(self)
        finally:
            with owner._lock:
                owner._active -= 1

    def write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        with self.server.owner._lock:
            self.server.owner.bytes_sent[self.route] += len(data)
        return True

    def log_message(self, format, *args):  # noqa: A002  (the base class's signature)
        pass
