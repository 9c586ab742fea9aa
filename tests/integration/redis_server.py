"""A real redis-server for the integration tests (Debian's package, installed by
scripts/install-deps.sh): started on a free loopback port in a temporary folder, nothing saved to
disk, with the ACL user that docs/configuration.md tells operators to create for hcgw. It can be
paused (SIGSTOP), resumed, stopped and started again on the same port.

Tests that need it skip (unittest.SkipTest; ctest counts the file passed) when redis-server is
missing.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ADMIN_PASSWORD = "admin-pw-for-tests"
HCGW_PASSWORD = "hcgw-pw-4-tests"
START_TIMEOUT_S = 10


def require():
    if shutil.which("redis-server") is None:
        raise unittest.SkipTest("redis-server is not installed (scripts/install-deps.sh)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    def __init__(self):
        require()
        self.dir = tempfile.mkdtemp(prefix="hcgw-redis-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write("bind 127.0.0.1\nport %d\ndir %s\nlogfile %s/redis.log\nsave \"\"\n"
                    "appendonly no\ndaemonize no\n"
                    "user default on >%s ~* &* +@all\n"
                    "user hcgw on >%s ~hcgw:* resetchannels -@all +eval +evalsha +get +set "
                    "+pttl +time +select +ping +hmget +hset +pexpire +del +incr\n"
                    % (self.port, self.dir, self.dir, ADMIN_PASSWORD, HCGW_PASSWORD))
        self.password_file = os.path.join(self.dir, "password")
        with open(self.password_file, "w") as f:
            f.write(HCGW_PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def group(self, **extra):
        g = {"url": self.url, "username": "hcgw", "password_file": self.password_file,
             "timeout_ms": 50}
        g.update(extra)
        return g

    def start(self):
        self.proc = subprocess.Popen(["redis-server", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not start on port %d" % self.port)

    def command(self, *args):
        """One command as the admin user; returns a simple or bulk string, an int, or a list."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            f = s.makefile("rb")

            def send(parts):
                out = b"*%d\r\n" % len(parts)
                for p in parts:
                    p = p if isinstance(p, bytes) else str(p).encode()
                    out += b"$%d\r\n%s\r\n" % (len(p), p)
                s.sendall(out)

            def read():
                line = f.readline().rstrip(b"\r\n")
                kind, rest = line[:1], line[1:]
                if kind == b"+":
                    return rest.decode()
                if kind == b"-":
                    raise AssertionError("redis error: " + rest.decode())
                if kind == b":":
                    return int(rest)
                if kind == b"$":
                    n = int(rest)
                    if n < 0:
                        return None
                    data = f.read(n + 2)[:n]
                    return data.decode(errors="replace")
                if kind == b"*":
                    return [read() for _ in range(int(rest))]
                raise OSError("bad redis answer %r" % line)

            send(["AUTH", "default", ADMIN_PASSWORD])
            read()
            send(list(args))
            return read()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
