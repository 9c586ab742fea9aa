"""A minimal Redis client for the deploy tests (RESP2 over one TCP connection): enough to sign
in as a user and see what Redis allows. Python's standard library only."""
import socket


class RespError(Exception):
    """An error answer (-NOPERM ..., -NOAUTH ..., -WRONGPASS ...)."""


class Resp:
    """One connection; calling it sends one command and returns the answer as a Python value
    (a string, an int, None or a list), or raises RespError."""

    def __init__(self, port, host="127.0.0.1", timeout=5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:n].decode()
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        raise OSError("bad answer from Redis: %r" % line)

    def close(self):
        self.f.close()
        self.sock.close()
