"""delayrelay --rate: one link shared by every connection through the relay.

The bench's long-distance figures are only as good as the link the relay
models, so its rate limit is checked here: bytes arrive intact, one stream
cannot go faster than the link, and two streams share it instead of each
getting the full rate.  Times have generous slack (lower bounds at 0.8x of
the ideal, upper bounds only against hangs)."""
import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELAY = os.path.join(ROOT, "build", "tools", "delayrelay")
MiB = 1 << 20


def _payload(n, seed):
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


class _Sender:
    """Sends payload to every client that connects, then closes."""

    def __init__(self, payload):
        self.payload = payload
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._send, args=(c,), daemon=True).start()

    def _send(self, c):
        with c:
            c.sendall(self.payload)

    def close(self):
        self.sock.close()


@pytest.fixture
def relay_of():
    procs = []

    def start(target_port, *args):
        p = subprocess.Popen([RELAY, *args, "0", "127.0.0.1:%d" % target_port, "5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return int(p.stdout.readline())

    yield start
    for p in procs:
        p.terminate()
        assert p.wait(timeout=10) == 0


def _fetch(port, out, i):
    s = socket.create_connection(("127.0.0.1", port))
    got = bytearray()
    with s:
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            got += b
    out[i] = bytes(got)


def _timed_fetches(port, n):
    out = [None] * n
    threads = [threading.Thread(target=_fetch, args=(port, out, i)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return time.monotonic() - t0, out


def test_rate_limits_one_stream_and_bytes_arrive_intact(relay_of):
    data = _payload(8 * MiB, 1)
    snd = _Sender(data)
    try:
        port = relay_of(snd.port, "--rate", "64mbit")
        took, out = _timed_fetches(port, 1)
    finally:
        snd.close()
    assert out[0] == data
    # 8 MiB at 64 Mbit/s is 1.05 s.
    assert 0.8 <= took < 30, took


def test_rate_is_shared_by_all_connections(relay_of):
    data = _payload(4 * MiB, 2)
    snd = _Sender(data)
    try:
        port = relay_of(snd.port, "--rate", "8MB")
        took, out = _timed_fetches(port, 3)
    finally:
        snd.close()
    assert all(o == data for o in out)
    # 12 MiB over one 8 MB/s link: 1.57 s, not the 0.52 s of three links.
    assert 1.25 <= took < 30, took


def test_without_rate_the_relay_is_not_limited(relay_of):
    data = _payload(8 * MiB, 3)
    snd = _Sender(data)
    try:
        port = relay_of(snd.port)
        took, out = _timed_fetches(port, 1)
    finally:
        snd.close()
    assert out[0] == data
    assert took < 0.8, took


@pytest.mark.parametrize("bad", ["fast", "0", "10xbit", "-5mbit"])
def test_bad_rate_is_refused(bad):
    r = subprocess.run([RELAY, "--rate", bad, "0", "127.0.0.1:1", "5"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--rate" in r.stderr
