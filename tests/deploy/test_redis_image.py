#!/usr/bin/env python3
"""The Redis image of deploy/redis, end to end (ctest label "container").

Builds deploy/redis/Dockerfile with the engine test_container.py finds (podman or docker; the
same rules, the same skip), then runs the image as compose and Kubernetes do: a read-only root
filesystem, no capabilities, no new privileges, a tmpfs for the ACL, the password as a mounted
file named by HCGW_REDIS_PASSWORD_FILE, Redis's port published on 127.0.0.1 only. It checks:

- the image's metadata: the numeric non-root user 10002, the start script as entry point, the
  probe as HEALTHCHECK, no password in its environment;
- without a password file the container refuses to start, saying why (no open Redis);
- with one, the HEALTHCHECK passes (PING as the ACL user), Redis runs as UID 10002, and the
  password is on no command line and in no log;
- through the published port, the ACL user signs in with the password and may use its own keys
  and scripts, but not FLUSHALL, CONFIG, KEYS or other keys; the default user is off;
- `stop` (SIGTERM): Redis exits 0, having written nothing.

Prints one line per check and "N passed, N failed"; exits 0 when all passed, 77 (skipped) when
no engine can build and run a container here, else 1. Environment: HCGW_SOURCE_DIR,
HCGW_CONTAINER_ENGINE (as test_container.py), HCGW_TEST_REDIS_IMAGE (use this image, skip the
build).
"""
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import test_container as tc  # noqa: E402  (the engine, check() and its counters)
from resp import Resp, RespError  # noqa: E402

IMAGE = os.environ.get("HCGW_TEST_REDIS_IMAGE") or "localhost/hcgw-redis:ctest"
NAME = f"hcgw-redis-ctest-{os.getpid()}"
REDIS_UID = "10002"      # deploy/redis/Dockerfile's USER
PASSWORD_PATH = "/run/secrets/hcgw-redis/password"
ACL_DIR = "/var/lib/hcgw-redis"
START_S = 30


def run_args(tmp, password_file, port):
    return ["run", "-d", "--name", NAME, "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", ACL_DIR,
            "-e", f"HCGW_REDIS_PASSWORD_FILE={PASSWORD_PATH}",
            *(["-v", f"{password_file}:{PASSWORD_PATH}:ro"] if password_file else []),
            "-p", f"127.0.0.1:{port}:6379", IMAGE]


def build():
    old = tc.engine("image", "inspect", "--format", "{{.Id}}", IMAGE)[1].strip()
    fmt = ["--format", "docker"] if tc.ENGINE.podman else []
    t0 = time.monotonic()
    rc, out, err = tc.engine("build", *fmt, "-t", IMAGE, os.path.join(tc.SRC, "deploy", "redis"),
                             timeout=900)
    new = tc.engine("image", "inspect", "--format", "{{.Id}}", IMAGE)[1].strip()
    if old and old != new:
        tc.engine("rmi", old)  # the previous build of this tag; refused harmlessly if in use
    return tc.check(rc == 0, f"the Redis image builds ({time.monotonic() - t0:.0f} s)",
                    "\n".join((out + err).splitlines()[-30:]))


def check_image():
    _, out, _ = tc.engine("image", "inspect", "--format",
                          "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Env}}",
                          IMAGE)
    user, entry, env = (out.strip().split("|") + ["", "", ""])[:3]
    tc.check(user == f"{REDIS_UID}:{REDIS_UID}", "the image runs as 10002:10002", user)
    tc.check("hcgw-redis-start" in entry, "the entry point is hcgw-redis-start", entry)
    tc.check("PASS" not in env.upper().replace("PASSWORD_FILE", ""),
             "no password in the image's environment", env)
    _, out, _ = tc.engine("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE)
    tc.check("hcgw-redis-probe" in out, "the HEALTHCHECK runs hcgw-redis-probe", out.strip())


def refuses_without_password(tmp):
    tc.remove(NAME)
    rc, _, err = tc.engine(*run_args(tmp, None, tc.free_port()))
    deadline = time.monotonic() + START_S
    status = ""
    while time.monotonic() < deadline:
        status = tc.engine("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                           NAME)[1].strip()
        if status.startswith("exited"):
            break
        time.sleep(0.5)
    _, out, err = tc.engine("logs", NAME)
    tc.check(status.startswith("exited") and not status.endswith(" 0"),
             "without a password file Redis does not start", status)
    tc.check("hcgw-redis-start: cannot read the password file" in out + err,
             "and says why", (out + err)[-300:])
    tc.remove(NAME)


def healthy():
    deadline = time.monotonic() + START_S
    while True:
        if tc.ENGINE.podman:
            rc, out, err = tc.engine("healthcheck", "run", NAME)
        else:
            rc, out, err = tc.engine("exec", NAME, "/usr/local/bin/hcgw-redis-probe")
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return tc.check(rc == 0, "the HEALTHCHECK passes (PING as the ACL user)",
                    f"rc={rc} {out}{err}")


def acl(port, password):
    c = Resp(port)
    try:
        tc.check(c("AUTH", "hcgw", password) == "OK", "the ACL user signs in with the password")
        tc.check(c("SET", "hcgw:ctest", "1", "PX", "60000") == "OK" and
                 c("GET", "hcgw:ctest") == "1", "it reads and writes its own keys")
        tc.check(c("EVAL", "return redis.call('INCR', KEYS[1])", 1, "hcgw:ctest:n") == 1,
                 "it runs a script on its own keys")
        for cmd in (("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*"), ("GET", "other"),
                    ("EVAL", "return redis.call('FLUSHALL')", 0)):
            try:
                c(*cmd)
                ok, why = False, "allowed"
            except RespError as e:
                ok, why = True, str(e)
            tc.check(ok, f"it may not {' '.join(map(str, cmd[:2]))}", why)
    finally:
        c.close()
    c = Resp(port)
    try:
        for args in (("GET", "hcgw:ctest"), ("AUTH", "default", "")):
            try:
                c(*args)
                ok, why = False, "allowed"
            except RespError as e:
                ok, why = str(e).startswith(("NOAUTH", "WRONGPASS")), str(e)
            tc.check(ok, f"the default user is off ({args[0]})", why)
    finally:
        c.close()


def inside(password):
    _, out, _ = tc.engine("exec", NAME, "id", "-u")
    tc.check(out.strip() == REDIS_UID, "Redis runs as UID 10002", out.strip())
    _, out, _ = tc.engine("exec", NAME, "cat", "/proc/1/cmdline")
    tc.check("redis-server" in out and password not in out,
             "PID 1 is redis-server, and the password is on no command line",
             out.replace("\0", " "))


def stops(password):
    t0 = time.monotonic()
    rc, _, err = tc.engine("stop", "-t", "10", NAME, timeout=60)
    took = time.monotonic() - t0
    _, out, _ = tc.engine("inspect", "--format", "{{.State.ExitCode}}", NAME)
    tc.check(rc == 0 and out.strip() == "0", f"stop (SIGTERM): exit code 0 ({took:.1f} s)",
             f"{err} {out}")
    _, out, err = tc.engine("logs", NAME)
    tc.check(password not in out + err, "the password is in no log line")
    tc.check("DB saved" not in out + err and "Saving" not in out + err,
             "nothing was saved on the way out", (out + err)[-300:])


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tc.ENGINE, why = tc.find_engine()
    if tc.ENGINE is None:
        print("skip - no container engine can build and run a container here: "
              + "; ".join(why) + " (HCGW_CONTAINER_ENGINE chooses the engine)", flush=True)
        return 77
    print(f"# engine: {tc.ENGINE.path}", flush=True)
    try:
        ok = "HCGW_TEST_REDIS_IMAGE" in os.environ or build()
        if ok:
            check_image()
            with tempfile.TemporaryDirectory(prefix="hcgw-redis-ctest-") as tmp:
                os.chmod(tmp, 0o755)
                refuses_without_password(tmp)
                password = "ctest-" + secrets.token_hex(16)
                pw = os.path.join(tmp, "password")
                with open(pw, "w") as f:
                    f.write(password + "\n")
                os.chmod(pw, 0o644)  # readable by the container's UID, as a Secret with fsGroup
                port = tc.free_port()
                tc.engine(*run_args(tmp, pw, port), check_rc=True)
                if healthy():
                    acl(port, password)
                    inside(password)
                    stops(password)
                else:
                    _, out, err = tc.engine("logs", NAME)
                    print(f"# logs of {NAME}:\n{out}{err}")
    except Exception as e:  # a failed step is a failed check, and cleanup still runs
        tc.check(False, "the Redis image test ran to its end", repr(e))
    finally:
        tc.remove(NAME)
        _, out, _ = tc.engine("ps", "-a", "--format", "{{.Names}}")
        tc.check(NAME not in out.split(), "no test container is left")
    print(f"{tc.passed} passed, {tc.failed} failed")
    return 0 if tc.failed == 0 and tc.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
