"""Lifecycle under load (docs/contract.md "Reload and key rotation", "Command line"):
SIGTERM while clients keep sending finds every request answered with success or 503
shutting_down; SIGHUP reloads a valid configuration and refuses an invalid one; a key file
rotated the Kubernetes way (a symlink swapped in its folder) is picked up without a signal,
under load, with no request answered upstream_auth_failed; the old key's generation is gone.
"""
import os
import signal
import tempfile
import threading
import time
import unittest
import uuid

from harness import Gateway, Sim, assert_clean_stderr, full_conf, http_request

C = "/contacts/1568834"


class Load:
    """Clients sending GETs in a loop until stopped; every outcome is recorded."""

    def __init__(self, port, clients=8, path=C):
        self.port = port
        self.path = path
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.results = []        # (status or None, code or None, error text or None)
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                r = http_request(self.port, "GET", self.path, timeout=30)
                code = None
                if r.status >= 400:
                    code = r.json()["error"]["code"]
                out = (r.status, code, None)
            except OSError as e:   # refused after the listener closed: never sent
                out = (None, None, type(e).__name__)
            with self.lock:
                self.results.append(out)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)
        return self.results


class SigtermUnderLoadTest(unittest.TestCase):
    def test_sigterm_under_load_loses_nothing(self):
        sim = Sim()
        gw = Gateway(sim, conf={"server": {"drain_timeout_ms": 5000}})
        try:
            # Slow answers so that many requests are in flight at the signal.
            sim.script({"delay_ms": 300, "count": 1000})
            load = Load(gw.port, clients=16)
            time.sleep(1.5)
            gw.proc.proc.send_signal(signal.SIGTERM)
            rc = gw.proc.proc.wait(30)
            results = load.stop()
            self.assertEqual(rc, 0)
            answered = [r for r in results if r[0] is not None]
            self.assertGreater(len(answered), 16)
            for status, code, _ in answered:
                self.assertTrue(status == 200 or (status == 503 and code == "shutting_down"),
                                (status, code))
            # Requests that got no answer were refused at connect (never accepted), not cut.
            for _, _, err in results:
                if err is not None:
                    self.assertIn(err, ("ConnectionRefusedError", "ConnectionResetError",
                                        "RemoteDisconnected", "BrokenPipeError"), err)
            # Every request hcgw accepted was logged once with its answer.
            lines = gw.access_lines()
            self.assertEqual(len([l for l in lines if l["status"] == 200]),
                             len([r for r in answered if r[0] == 200]))
        finally:
            gw.stop()
            assert_clean_stderr(self, gw.proc, sim.key)
            self.assertEqual(sim.stop(), 0)


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.sim = Sim()
        self.dir = tempfile.mkdtemp(prefix="hcgw-reload-")

    def tearDown(self):
        self.assertEqual(self.sim.stop(), 0)

    def test_sighup_reloads_a_valid_config_and_refuses_an_invalid_one(self):
        gw = Gateway(self.sim, conf={"upstream": {"timeout_ms": 5000}})
        try:
            self.sim.script({"delay_ms": 1500})
            self.assertEqual(gw.request("GET", C).status, 200, "1.5 s is inside 5 s")
            with open(gw.conf_path, "w") as f:
                f.write(full_conf(self.sim.base_url, upstream={"timeout_ms": 700}))
            mark = gw.proc.mark()
            gw.proc.proc.send_signal(signal.SIGHUP)
            gw.proc.wait_line(lambda o: isinstance(o, dict)
                              and o.get("msg") == "configuration reloaded", stream="err",
                              since=mark)
            self.sim.script({"delay_ms": 1500})
            r = gw.request("GET", C)
            self.assertEqual(r.status, 504, "the new deadline (700 ms) applies")
            # An invalid file is refused; the running configuration (700 ms) stays.
            with open(gw.conf_path, "w") as f:
                f.write(full_conf(self.sim.base_url, upstream={"timeout_ms": 5000})
                        + "bogus_key = 1;\n")
            mark = gw.proc.mark()
            gw.proc.proc.send_signal(signal.SIGHUP)
            line = gw.proc.wait_line(lambda o: isinstance(o, dict)
                                     and str(o.get("msg", "")).startswith("reload refused"),
                                     stream="err", since=mark)
            self.assertIn("bogus_key: unknown key", line["problem"])
            self.sim.script({"delay_ms": 1500})
            self.assertEqual(gw.request("GET", C).status, 504)
            self.assertEqual(gw.request("GET", "/healthz").status, 200)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)

    def write_key(self, name, key):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(key + "\n")
        return path

    def swap_symlink(self, link, target):
        """What a Kubernetes Secret volume does: a new link renamed over the old one."""
        tmp = link + ".tmp-" + uuid.uuid4().hex
        os.symlink(target, tmp)
        os.rename(tmp, link)

    def test_key_file_rotation_under_load(self):
        old_key, new_key = "old-" + uuid.uuid4().hex, "new-" + uuid.uuid4().hex
        self.sim.call("POST", "/_sim/keys", {"keys": [old_key, new_key]})
        self.write_key("key-v1", old_key)
        self.write_key("key-v2", new_key)
        link = os.path.join(self.dir, "key")
        os.symlink("key-v1", link)
        conf = full_conf(self.sim.base_url).replace(
            "upstream = {", 'upstream = { api_key_file = "%s";' % link)
        gw = Gateway(self.sim, key="", conf=conf)  # no key in the environment: the file
        try:
            load = Load(gw.port, clients=6)
            time.sleep(0.7)
            mark = gw.proc.mark()
            self.swap_symlink(link, "key-v2")
            gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "key reloaded",
                              stream="err", since=mark)
            time.sleep(0.3)
            # HelpCrunch revokes the old key: every call from now on must carry the new one.
            self.sim.call("POST", "/_sim/keys", {"keys": [new_key]})
            time.sleep(0.8)
            results = load.stop()
            self.assertGreater(len(results), 20)
            bad = [r for r in results if r[0] != 200]
            self.assertEqual(bad, [], "every request answered 200 across the rotation")
            auths = [req["authorization"] for req in self.sim.requests()]
            self.assertIn("Bearer " + new_key, auths)
        finally:
            self.assertEqual(gw.stop(), 0)
            for k in (old_key, new_key):
                assert_clean_stderr(self, gw.proc, k)


if __name__ == "__main__":
    unittest.main()
