"""A local HTTP(S) server that misbehaves on demand, for the peer-fault tests.

``mode``: ``ok`` (200 with ``body``, or the answer of ``forward``), ``slow`` (sleeps ``delay``
s, then answers as ``ok``), ``error`` (HTTP ``status``), ``drop`` (closes the connection
without an answer), ``trickle`` (sends headers announcing a large body, then one byte every
``delay`` s; with ``delay`` above the client's read timeout that is a peer that stalls in the
middle of the body), ``cut`` (announces the full length of the ``ok`` answer, sends half of
it and closes the connection).

``forward``: a base URL (``http://127.0.0.1:port``); in ``ok`` mode every request is passed
on to it and its answer relayed, so the server stands in front of a real fake peer
(intelmq_crossborder/testing/fake_misp.py, intelmq_crossborder/testing/csaf_provider.py) whose faults can be switched on and off while
the bots keep the same URL. ``only``: a regular expression; the fault applies to the
requests whose path matches it, the others are answered as ``ok``.
``tls``: a dict from ``tests.exchange_helpers.make_pki`` (``server_cert``, ``server_key``, ``ca``):
HTTPS, requiring a client certificate signed by that CA.
Life cycle and addresses come from intelmq_crossborder.testing.http.LocalHTTPServer:
``with FaultServer(...) as fault`` (or ``start()`` / ``stop()``), then ``fault.url``.

``requests`` records ``(method, path, mode)`` (the mode the request got), ``arrivals`` the
``time.monotonic()`` of each, ``received`` the body of each PUT answered 2xx (also late, after
``slow``) by path.
"""
import http.client
import re
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from intelmq_crossborder.testing.http import LocalHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultServer(LocalHTTPServer):
    def __init__(self, forward=None, tls=None):
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["server_cert"], tls["server_key"])
            ctx.load_verify_locations(tls["ca"])
            ctx.verify_mode = ssl.CERT_REQUIRED
        super().__init__(tls=ctx)
        self.mode, self.delay, self.status, self.body = "ok", 5.0, 500, b"{}"
        self.forward = forward
        self.only = None
        self.requests = []
        self.arrivals = []
        self.received = {}
        self._stop = threading.Event()
        self._record = threading.Lock()

    @property
    def url(self):
        return self.base_url

    def start(self):
        self._stop.clear()
        return super().start()

    def stop(self):
        self._stop.set()           # releases the handlers of slow and trickle answers first
        super().stop()

    def handler_class(self):
        return self._handler()

    def count(self, mode=None, path=None) -> int:
        """Requests that got ``mode`` (any if None) and whose path contains ``path``."""
        return sum(1 for _, p, m in list(self.requests) if (mode is None or m == mode) and (path is None or path in p))

    def _mode_for(self, path):
        if self.only is not None and not re.search(self.only, path):
            return "ok"
        return self.mode

    def _upstream(self, method, path, headers, data):
        """(status, headers, body) of the ``ok`` answer: the forward target's, or ``body``."""
        if not self.forward:
            return 200, [], self.body
        target = urlsplit(self.forward)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            conn.request(method, target.path.rstrip("/") + path, body=data or None,
                         headers={k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP})
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                mode = outer._mode_for(self.path)
                with outer._record:
                    outer.requests.append((self.command, self.path, mode))
                    outer.arrivals.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                if mode == "slow":
                    outer._stop.wait(outer.delay)
                elif mode == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                elif mode == "error":
                    self.send_response(outer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                elif mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 ** 6))
                    self.end_headers()
                    while not outer._stop.is_set():
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                        outer._stop.wait(outer.delay)
                    return
                try:
                    status, headers, body = outer._upstream(self.command, self.path, self.headers, data)
                except OSError:
                    status, headers, body = 502, [], b""
                if mode in ("ok", "slow") and self.command == "PUT" and 200 <= status < 300:
                    outer.received[self.path] = data
                try:
                    self.send_response(status)
                    for name, value in headers:
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if mode == "cut":
                        self.wfile.write(body[:len(body) // 2])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(body)
                except OSError:          # the client gave up (timeout): fine
                    pass

            do_GET = do_PUT = do_POST = do_HEAD = _answer

        return Handler
