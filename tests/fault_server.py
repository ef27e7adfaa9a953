"""A local HTTP server that misbehaves on demand, for the peer-fault tests.

``mode``: ``ok`` (200 with ``body``), ``slow`` (sleeps ``delay`` s before answering),
``error`` (HTTP ``status``), ``drop`` (closes the connection without an answer),
``trickle`` (sends headers announcing a large body, then one byte every ``delay`` s).
"""
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    def __init__(self):
        self.mode, self.delay, self.status, self.body = "ok", 5.0, 500, b"{}"
        self.requests = []
        self.received = {}
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                outer.requests.append((self.command, self.path, outer.mode))
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                mode = outer.mode
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
                        time.sleep(outer.delay)
                    return
                if self.command == "PUT":
                    outer.received[self.path] = data
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(outer.body)))
                    self.end_headers()
                    self.wfile.write(outer.body)
                except OSError:          # the client gave up (timeout): fine
                    pass

            do_GET = do_PUT = do_POST = _answer

        return Handler
