"""The test-support base modules: the one HTTP-server base and the one polling helper."""
import http.client
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.testing.http import LocalHTTPServer
from intelmq_crossborder.testing.polling import WaitTimeout, wait_until


class Echo(LocalHTTPServer):
    """Answers every GET with its path; counts requests."""

    def __init__(self, port=0):
        super().__init__(port=port)
        self.hits = 0

    def handler_class(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits += 1
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return Handler


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_server_serves_between_start_and_stop():
    server = Echo()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    with server as running:
        assert running is server and server.running
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert get(server.base_url + "/a/b?c") == (200, b"/a/b?c")
    assert not server.running and server.hits == 1
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{server.port}/")
    server.stop()                                   # idempotent


def test_restart_binds_the_same_port_and_a_fixed_port_is_honoured():
    first = Echo().start()
    port = first.port
    first.stop()
    assert first.start().port == port              # a peer that comes back where it was
    assert get(first.base_url + "/again") == (200, b"/again")
    first.stop()
    with Echo(port=port) as second:                 # a new server on the port a test just closed
        assert get(second.base_url + "/x") == (200, b"/x")


def test_never_started_server_stops_quietly_and_start_is_idempotent():
    Echo().stop()
    server = Echo().start()
    try:
        assert server.start() is server and server.port == server.start().port
    finally:
        server.stop()


def test_concurrent_requests_are_served_in_threads():
    gate = threading.Event()

    class Slow(Echo):
        def handler_class(self):
            base = super().handler_class()

            class Handler(base):
                def do_GET(self):
                    if self.path == "/wait":
                        gate.wait(5)
                    super().do_GET()
            return Handler

    with Slow() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/wait")                 # held open by the handler
        assert get(server.base_url + "/other") == (200, b"/other")   # not queued behind it
        gate.set()
        assert conn.getresponse().read() == b"/wait"
        conn.close()


def test_a_handler_that_is_not_a_request_handler_is_refused():
    class Wrong(LocalHTTPServer):
        def handler_class(self):
            return object

    with pytest.raises(TypeError):
        Wrong().start()


# --- polling --------------------------------------------------------------------------------

def test_wait_until_returns_the_first_truthy_value():
    calls = []

    def predicate():
        calls.append(1)
        return len(calls) >= 3 and {"n": len(calls)}

    assert wait_until(predicate, 5, interval=0.01) == {"n": 3}
    assert len(calls) == 3


def test_wait_until_times_out_naming_what_it_waited_for():
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"timed out after 0.2s waiting for the queue to drain"):
        wait_until(lambda: False, 0.2, interval=0.05, message="the queue to drain")
    assert 0.2 <= time.monotonic() - start < 2
    assert issubclass(WaitTimeout, AssertionError) and issubclass(WaitTimeout, CrossBorderError)


def test_wait_until_message_may_be_computed_at_the_deadline():
    state = {"left": 7}
    with pytest.raises(WaitTimeout, match="7 left"):
        wait_until(lambda: False, 0.05, interval=0.01, message=lambda: f"{state['left']} left")


def test_wait_until_checks_once_more_at_the_deadline():
    """A condition that becomes true during the last interval is seen, not reported as a timeout."""
    deadline = time.monotonic() + 0.1
    assert wait_until(lambda: time.monotonic() >= deadline, 0.1, interval=10) is True


def test_wait_until_with_zero_timeout_calls_once():
    assert wait_until(lambda: "yes", 0) == "yes"
    with pytest.raises(WaitTimeout):
        wait_until(lambda: None, 0)


@pytest.mark.parametrize("timeout, interval", [(-1, 0.1), (1, 0), (1, -0.5)])
def test_wait_until_refuses_nonsense_arguments(timeout, interval):
    with pytest.raises(ValueError):
        wait_until(lambda: True, timeout, interval=interval)
