"""A seed-era client (python-socketio, whole text with `code_change`) against the real all-in-one
`duet` binary: one client ends with exactly its text, a lagging client keeps what the other saved,
bursts from two places keep both, acked text survives a killed server.

Run by scripts/test.sh (`python -m unittest discover tests/py`); needs the dev `duet` binary and the
built browser client, as the end-to-end tests do.

The same scenarios across two hubs (`SeedClientsAcrossHubs`: each interview's clients connected
straight to different hubs, so every edit crosses Redis) run when `DUET_SEED_HUBS` (the hubs' URLs,
comma-separated) and `DUET_SEED_API` (the public URL: nginx) are set; tests/cluster/seed.test.mjs
runs them on the native cluster."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
import json

import socketio

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DUET = os.path.join(ROOT, "target", "debug", "duet")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Duet:
    """A running `duet` on a throw-away SQLite database; `kill()` and `start()` keep the database."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="duet-py-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        env.update(
            PORT=str(self.port),
            HOST="127.0.0.1",
            DUET_DATA_DIR=self.data,
            DATABASE_URL="sqlite://" + os.path.join(self.data, "duet.sqlite3"),
            DUET_FRONTEND_DIR=os.path.join(ROOT, "frontend", "dist"),
            RUST_LOG=env.get("RUST_LOG", "warn"),
        )
        self.proc = subprocess.Popen([DUET], cwd=ROOT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("duet did not become healthy")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def close(self):
        self.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    def socket_url(self, i):
        """Where the `i`-th client of an interview connects: the one server."""
        return self.url

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())

    def new_interview(self):
        status, body = self.request("POST", "/api/session", {"language": "python", "title": "seed"})
        assert status == 201, status
        return body["session_code"]

    def stored_text(self, code, expected, timeout=5.0):
        """The text over REST (`code`), once it equals `expected` or the time is up (saves are debounced)."""
        deadline = time.time() + timeout
        while True:
            _, body = self.request("GET", f"/api/session/{code}")
            if body["code"] == expected or time.time() > deadline:
                return body["code"]
            time.sleep(0.1)


class Hubs:
    """A running scaled deployment: interviews created and read through `api` (nginx), the `i`-th
    client of an interview connected straight to hub `i mod n`."""

    def __init__(self, api, hubs):
        self.url = api
        self.hubs = hubs

    def socket_url(self, i):
        return self.hubs[i % len(self.hubs)]

    request = Duet.request
    new_interview = Duet.new_interview
    stored_text = Duet.stored_text


class SeedClient:
    """A client of the original design: it sends its whole text and shows what it is sent."""

    def __init__(self, url, code, name):
        self.sio = socketio.Client(reconnection=False)
        self.text = None
        self.updates = []
        self.sio.on("sync_code", self._sync)
        self.sio.on("code_updated", self._updated)
        self.sio.connect(url, transports=["websocket"])
        ack = self.sio.call("join_session", {"session_code": code, "name": name}, timeout=5)
        assert ack["ok"], ack
        deadline = time.time() + 5
        while self.text is None and time.time() < deadline:
            time.sleep(0.01)

    def _sync(self, data):
        self.text = data["code"]

    def _updated(self, data):
        self.updates.append(data["code"])
        self.text = data["code"]

    def change(self, text, wait=True):
        """Sends `text`; waits for its ack (the change is stored) unless `wait` is false."""
        self.text = text
        if wait:
            ack = self.sio.call("code_change", {"code": text}, timeout=10)
            assert ack.get("ok"), ack
        else:
            self.sio.emit("code_change", {"code": text})

    def close(self):
        self.sio.disconnect()


class Scenarios:
    """The scenarios, against `self.duet` (a `Duet` or `Hubs`); client `i` of an interview connects to
    `self.duet.socket_url(i)`."""

    def client(self, i, code, name):
        return SeedClient(self.duet.socket_url(i), code, name)

    def test_one_client_ends_with_exactly_its_text(self):
        code = self.duet.new_interview()
        c = self.client(0, code, "Solo")
        texts = [
            "hello world\n",
            "hello there\n",
            "",
            "def f():\n    return 1\n\nprint(f())\n",
            "def f():\n    return 2\n\nprint(f())\n",  # a word replaced
            "def f():\n    return 2\nprint(f())\n",  # a line deleted
            "    return 2\nprint(f())\n",  # the first line deleted
            "something else entirely\r\n",  # the whole text replaced
            "caf\u00e9 e\u0301 \U0001F600\r\nx",  # accents, a combining mark, an emoji, CRLF
        ]
        for t in texts:
            c.change(t)
            self.assertEqual(self.duet.stored_text(code, t), t)
        self.assertEqual(c.updates, [], "a client alone is never sent a merged text")
        c.close()

    def test_a_lagging_client_keeps_what_the_other_saved(self):
        code = self.duet.new_interview()
        f = self.client(0, code, "F")
        f.change("def main():\n    pass\n")
        lag = self.client(1, code, "L")
        lag.sio.handlers["/"].pop("code_updated")  # L shows nothing it is sent: it lags
        self.assertEqual(lag.text, "def main():\n    pass\n")
        text = lag.text
        for i in range(20):
            text += f"line {i} by F\n"
            f.change(text)
        lag.change("def main(argv):\n    pass\n")
        final = self.duet.stored_text(code, None, timeout=1.5)
        for i in range(20):
            self.assertIn(f"line {i} by F\n", final)
        self.assertTrue(final.startswith("def main(argv):\n    pass\n"), final)
        self.assertEqual(final.count("pass"), 1, final)
        f.close()
        lag.close()

    def test_bursts_in_two_places_keep_both(self):
        code = self.duet.new_interview()
        a = self.client(0, code, "A")
        a.change("top\n\nbottom\n")
        b = self.client(1, code, "B")
        time.sleep(0.2)
        # Neither waits for the other: each types at its end of the text.
        ta, tb = "top\n\nbottom\n", "top\n\nbottom\n"
        for i in range(15):
            ta = ta.replace("top\n", f"top\na{i}\n", 1) if i == 0 else ta.replace(f"a{i-1}\n", f"a{i-1}\na{i}\n", 1)
            tb = tb + f"b{i}\n"
            a.change(ta, wait=False)
            b.change(tb, wait=False)
        a.change(a.text)
        b.change(b.text)
        # Both replicas (on two hubs in the scaled run) settle on one text, and it is the stored one.
        self.assertTrue(_until(lambda: a.text == b.text), (a.text, b.text))
        final = self.duet.stored_text(code, a.text)
        self.assertEqual(final, a.text)
        lines = final.split("\n")
        for i in range(15):
            self.assertEqual(lines.count(f"a{i}"), 1, final)
            self.assertEqual(lines.count(f"b{i}"), 1, final)
        self.assertEqual(lines.count("top"), 1, final)
        self.assertEqual(lines.count("bottom"), 1, final)
        for line in lines:
            self.assertRegex(line, r"^(top|bottom|a\d+|b\d+|)$", "no line spliced from two")
        a.close()
        b.close()


def _until(check, timeout=5.0):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


class SeedClients(Scenarios, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.duet = Duet().start()

    @classmethod
    def tearDownClass(cls):
        cls.duet.close()

    def test_acknowledged_text_survives_a_killed_server(self):
        code = self.duet.new_interview()
        c = SeedClient(self.duet.url, code, "K")
        c.change("kept\n")
        c.change("kept\nand this\n")
        c.close()
        self.duet.kill()  # perhaps before the debounced text save: the edits are stored regardless
        self.duet.start()
        d = SeedClient(self.duet.url, code, "After")
        self.assertEqual(d.text, "kept\nand this\n")
        self.assertEqual(self.duet.stored_text(code, "kept\nand this\n"), "kept\nand this\n")
        d.change("kept\nand this\nand more\n")
        self.assertEqual(self.duet.stored_text(code, "kept\nand this\nand more\n"), "kept\nand this\nand more\n")
        d.close()


@unittest.skipUnless(
    os.environ.get("DUET_SEED_HUBS") and os.environ.get("DUET_SEED_API"),
    "DUET_SEED_HUBS / DUET_SEED_API not set (tests/cluster/seed.test.mjs sets them on the native cluster)",
)
class SeedClientsAcrossHubs(Scenarios, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.duet = Hubs(os.environ["DUET_SEED_API"], os.environ["DUET_SEED_HUBS"].split(","))


if __name__ == "__main__":
    unittest.main()
