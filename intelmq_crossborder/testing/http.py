"""The one base of the local HTTP(S) test servers (the Elasticsearch and MISP fakes, the CSAF
provider, the fault-injecting server of the tests).

A subclass implements :meth:`LocalHTTPServer.handler_class` (a ``BaseHTTPRequestHandler`` class
that reaches the server object through a closure or a class attribute); the base binds
``127.0.0.1`` (port 0: a free one), serves from a daemon thread, one thread per connection, and
stops cleanly::

    with MyFake() as fake:          # start() ... stop()
        requests.get(fake.base_url)
"""
from __future__ import annotations

import functools
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

HOST = "127.0.0.1"


class LocalHTTPServer:
    """A threaded HTTP server on 127.0.0.1 for tests; a context manager.

    ``port``: 0 for a free port (the default), or a fixed one, e.g. to bring a server back on the
    port a test just closed (the listening socket is bound with SO_REUSEADDR).  A server started
    again after :meth:`stop` binds the port it had.
    ``tls``: a server-side :class:`ssl.SSLContext`; the server then speaks HTTPS.
    The socket is bound by :meth:`start`, so :attr:`port` and :attr:`base_url` are known from then on.
    """

    def __init__(self, port: int = 0, tls: Optional[ssl.SSLContext] = None):
        self._port = port
        self._tls = tls
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def handler_class(self) -> type:
        """The request handler class that serves this server's requests."""
        raise NotImplementedError

    # -- life cycle --
    def start(self):
        """Bind and serve (idempotent); returns the server, for ``fake = Fake().start()``."""
        if self._httpd is not None:
            return self
        handler = self.handler_class()
        if not (isinstance(handler, type) and issubclass(handler, BaseHTTPRequestHandler)):
            raise TypeError("handler_class() must return a BaseHTTPRequestHandler subclass")
        httpd = ThreadingHTTPServer((HOST, self._port), handler)
        httpd.daemon_threads = True          # a handler stuck on a stalled client does not block stop()
        if self._tls is not None:
            httpd.socket = self._tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._port = httpd.server_address[1]
        # a short poll interval: stop() (shutdown) returns within 50 ms instead of up to 0.5 s
        self._thread = threading.Thread(target=functools.partial(httpd.serve_forever, poll_interval=0.05),
                                        name=f"{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent; a server never started has nothing to close)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=10)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses --
    @property
    def port(self) -> int:
        """The bound port (the requested one before the first :meth:`start`, the last bound after :meth:`stop`)."""
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def base_url(self) -> str:
        """``scheme://127.0.0.1:port`` without a trailing slash."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started: no port yet")
        return f"{self.scheme}://{HOST}:{self.port}"
