"""An HTTP server that holds under abuse: one thread waits on all connections, a fixed pool answers whole requests.

`http.server.ThreadingHTTPServer` gives each connection a thread that blocks until the request arrives: a thousand
idle or half-sent connections are a thousand threads, and the next real request waits behind them. Here a selector
thread accepts every connection and reads, without blocking, until the request's head (request line and headers)
is complete; only then is the connection handed, with the bytes already read, to one of `workers` threads, which
reads the body under a socket timeout and a minimum rate (a body trickled a byte at a time is cut off). A
connection whose head is not complete within `head_timeout` seconds is closed, and so is the oldest waiting one when
more than `max_waiting` wait or when the process runs out of file descriptors, so a new connection always gets in.
Requests are answered with HTTP/1.0 (one request per connection), so no connection goes back to waiting.

A connection that breaks or times out while being answered is closed without a word: the client is gone.
"""

import errno
import io
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

logger = logging.getLogger(__name__)

#: The end of a request's head; a bare-LF client is answered too.
HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
#: A head larger than this is handed over as it is: the handler then answers 414/431 (http.server's limits).
MAX_HEAD_BYTES = 70 * 1024
RECV_BYTES = 64 * 1024
#: After the first `body_timeout` seconds of reading a request, it must have come at this rate on average.
MIN_BYTES_PER_SECOND = 16 * 1024
#: File descriptors left for the files the workers read and write when waiting connections are counted.
SPARE_DESCRIPTORS = 128
#: After answering: how long, and how many reads, to wait for the client's end of the request before closing. A
#: socket closed with unread bytes sends a reset, which can destroy the answer before the client has read it.
LINGER_SECONDS = 0.5
LINGER_READS = 16


def descriptor_limit() -> int:
    """How many files this process may open (4096 where the system does not say)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 4096
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class _HeadThenSocket(io.RawIOBase):
    """A readable stream of the bytes already received, then the socket's, which must keep up MIN_BYTES_PER_SECOND
    on average once `grace` seconds have passed (else TimeoutError)."""

    def __init__(self, head: bytes, sock: socket.socket, grace: float):
        self._head = memoryview(head)
        self._sock = sock
        self._grace = grace
        self._started = time.monotonic()
        self._received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        late = time.monotonic() - self._started - self._grace
        if late > 0 and self._received < late * MIN_BYTES_PER_SECOND:
            raise TimeoutError("the request comes too slowly")
        count = self._sock.recv_into(buffer)
        self._received += count
        return count


def _close_gently(sock: socket.socket) -> None:
    """Send the end of the answer, read what the client still sends (briefly), then close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_SECONDS)
        for _ in range(LINGER_READS):
            if not sock.recv(RECV_BYTES):
                break
    except OSError:
        pass
    finally:
        sock.close()


class BoundedRequestHandler(BaseHTTPRequestHandler):
    """A request handler fed by `BoundedHTTPServer`: `request` is (socket, head bytes already read)."""

    #: http.server answers a request line it cannot parse as HTTP/0.9, without a status line; no client speaks it.
    default_request_version = "HTTP/1.0"

    def setup(self):
        sock, head = self.request
        self.connection = sock
        sock.settimeout(self.server.body_timeout)
        self.rfile = io.BufferedReader(_HeadThenSocket(head, sock, self.server.body_timeout))
        self.wfile = sock.makefile("wb")
        self._answered = False

    def send_response_only(self, code, message=None):
        self._answered = True
        super().send_response_only(code, message)

    def send_error(self, code, message=None, explain=None):
        """http.server's error answers, with 405 (and the methods allowed) for a method this handler lacks."""
        if code == 501:  # http.server's answer to an unknown method
            allowed = [name[3:] for name in dir(self) if name.startswith("do_")]
            code, message = 405, f"Method not allowed; use {', '.join(sorted(allowed))}"
        super().send_error(code, message, explain)

    def parse_request(self) -> bool:
        """http.server's parsing, and a 400 where it gives up without a word (a request line of only blanks)."""
        if super().parse_request():
            return True
        if not self._answered:
            self.send_error(400, "Bad request line")
        return False


class BoundedHTTPServer:
    """Serve `handler_class` (a BoundedRequestHandler) on `address` with a selector thread and `workers` threads."""

    def __init__(self, address: tuple, handler_class, *, workers: int = 8, head_timeout: float = 10.0,
                 body_timeout: float = 10.0, max_waiting: int = 4096, backlog: int = 1024):
        self.handler_class = handler_class
        self.head_timeout, self.body_timeout = head_timeout, body_timeout
        self.max_waiting = max(16, min(max_waiting, descriptor_limit() - SPARE_DESCRIPTORS))
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.bind(address)
            self.socket.listen(backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="review-worker")
        self._waiting = {}  # socket -> [head bytes, deadline], in arrival order
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    # --- the selector loop -----------------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        self._stopped.clear()
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(poll_interval):
                    if key.fileobj is self.socket:
                        self._accept(selector)
                    else:
                        self._receive(selector, key.fileobj)
                self._expire(selector)
        finally:
            for sock in list(self._waiting):
                self._drop(selector, sock)
            selector.close()
            self._stop.clear()
            self._stopped.set()

    def _accept(self, selector) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("accept failed: %s", exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._waiting:  # make room for the next one
                    self._drop(selector, next(iter(self._waiting)))
                return
            sock.setblocking(False)
            self._waiting[sock] = [b"", time.monotonic() + self.head_timeout]
            selector.register(sock, selectors.EVENT_READ)
            if len(self._waiting) > self.max_waiting:
                self._drop(selector, next(iter(self._waiting)))

    def _receive(self, selector, sock: socket.socket) -> None:
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self._drop(selector, sock)
        state = self._waiting[sock]
        state[0] += data
        if any(end in state[0] for end in HEAD_ENDS) or len(state[0]) > MAX_HEAD_BYTES:
            selector.unregister(sock)
            del self._waiting[sock]
            self._pool.submit(self._answer, sock, state[0])

    def _expire(self, selector) -> None:
        now = time.monotonic()
        for sock in [sock for sock, (_, deadline) in self._waiting.items() if deadline < now]:
            self._drop(selector, sock)

    def _drop(self, selector, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        try:
            selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    # --- the workers -----------------------------------------------------------------------------------------

    def _answer(self, sock: socket.socket, head: bytes) -> None:
        try:
            sock.setblocking(True)
            self.handler_class((sock, head), sock.getpeername(), self)
        except OSError as exc:  # broken pipe, reset, timeout: the client went away
            logger.debug("connection closed early: %s", exc)
        except Exception as exc:  # a bug must not kill the worker nor print a traceback per request
            logger.error("Unexpected error while answering a request: %s: %s", type(exc).__name__, exc)
            logger.debug("details", exc_info=True)
        finally:
            _close_gently(sock)

    # --- stopping ------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop `serve_forever` (from another thread) and wait until it has."""
        self._stop.set()
        self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
