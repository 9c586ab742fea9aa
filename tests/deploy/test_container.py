#!/usr/bin/env python3
"""The container image, end to end (ctest label "container").

Builds the unchanged top-level Dockerfile with ../shared/tools/container.sh (podman), then runs
the image as a person would: hcgw-sim and hcgw in one pod whose ports are published on
127.0.0.1 only, hcgw with the shipped container configuration (plus an upstream pointing at the
simulator), the key in a mounted file named by HCGW_API_KEY_FILE, a client token made with the
image's own `hcgw token new` (its SHA-256 mounted where the container configuration expects
it), a read-only root filesystem and no capabilities. Real requests go through the published
port with curl. It checks:

- the image's metadata: non-root numeric user, SIGTERM stop signal, port 8080, the HEALTHCHECK
  command, no key in its environment; `--version` runs; with no key given, `--check-config`
  refuses and says how to give one (nothing is baked in); with one, the default config is OK
  and listens on 0.0.0.0;
- GET /healthz and /readyz (no token needed), a contact GET without a token (401, nothing sent
  upstream), a contact GET with it, a validation error envelope, and a tag PUT that reaches the
  simulator with exactly `Authorization: Bearer <HelpCrunch key>` (not the client's token) and
  the tag in its body; no key-file warning in the log (the file is the container user's, 0600);
- the gateway process runs as a non-root UID (inside: `id -u`; outside: /proc/PID/status);
- `podman healthcheck run` reports healthy;
- `podman stop -t 15` (SIGTERM) while a slow request is in flight: the request is answered 200,
  the container exits with code 0, within the drain timeout (server.drain_timeout_ms), and
  hcgw logged "stopped".

Every container and the pod are removed at the end, whatever happened. Environment:
  HCGW_SOURCE_DIR     the project root (default: two levels above this file)
  HCGW_CONTAINER_SH   container.sh (default: $HCGW_SOURCE_DIR/../shared/tools/container.sh)
  HCGW_TEST_IMAGE     use this image and skip the build (for quick reruns)
Prints one line per check and a closing "N passed, N failed" line; exits 0 only if all passed,
77 (ctest: skipped) inside a podman container, where podman cannot run.
"""
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HCGW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
CONTAINER_SH = os.environ.get("HCGW_CONTAINER_SH") or os.path.normpath(
    os.path.join(SRC, "..", "shared", "tools", "container.sh"))
IMAGE = os.environ.get("HCGW_TEST_IMAGE") or "localhost/hcgw:ctest"
POD, SIM, GW = "hcgw-ctest-pod", "hcgw-ctest-sim", "hcgw-ctest-gw"
SIM_PORT = 8090          # inside the pod
KEY_PATH = "/run/secrets/helpcrunch-api-key"
CLIENT_HASH_PATH = "/run/secrets/hcgw-client.sha256"  # deploy/container/hcgw.conf's token_file
DRAIN_TIMEOUT_S = 10.0   # server.drain_timeout_ms in deploy/container/hcgw.conf
CONTAINER_UID = 10001   # the Dockerfile's USER
STOP_GRACE_S = 15        # podman stop -t: SIGKILL after this; must exceed the drain timeout
CONTACT = "1568834"      # a seed customer of hcgw-sim

passed = 0
failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {what}", flush=True)
    else:
        failed += 1
        print(f"FAIL - {what}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def podman(*args, check_rc=False, timeout=120, quiet_stderr=True):
    """Runs podman through container.sh; returns (rc, stdout, stderr)."""
    p = subprocess.run([CONTAINER_SH, "podman", *args], capture_output=True, text=True,
                       timeout=timeout)
    err = p.stderr
    if quiet_stderr:
        # Without systemd, podman complains that it cannot start healthcheck timers; the test
        # runs the check by hand (podman healthcheck run), so those lines are noise.
        err = "\n".join(l for l in err.splitlines() if "systemd" not in l)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: exit {p.returncode}: {err.strip()}")
    return p.returncode, p.stdout, err


def curl(method, url, body=None, headers=(), timeout=15):
    """Real curl; returns (status, headers text, body text)."""
    with tempfile.NamedTemporaryFile() as hdr:
        cmd = ["curl", "-sS", "--noproxy", "*", "-m", str(timeout), "-X", method,
               "-D", hdr.name, "-o", "-", "-w", "\n%{http_code}", url]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", body]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)
        out, _, code = p.stdout.rpartition("\n")
        with open(hdr.name, encoding="latin-1") as f:
            head = f.read()
    return int(code or 0), head, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cleanup():
    # Removing the pod removes its containers (and their anonymous volumes).
    podman("pod", "rm", "-f", "-t", "0", POD)
    podman("rm", "-f", "-t", "0", SIM, GW)


def unit_tests_passed(text):
    """True if the build log shows the build stage's unit tests passing: either their ctest
    summary, or a cache hit on the RUN step that builds and runs them. That step is one `&&`
    chain, so podman commits its layer only when ctest passed; a cached layer means the tests
    passed on exactly these inputs (the same sources, the same toolchain layer), and podman
    then prints "--> Using cache" instead of running them again. This is the case whenever the
    same tree was built before on this machine (CI runs right after the session that built it).
    """
    if re.search(r"100% tests passed, 0 tests failed out of \d+", text):
        return True
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.search(r"STEP \d+/\d+: RUN .*ctest --test-dir", line):
            return i + 1 < len(lines) and lines[i + 1].startswith("--> Using cache")
    return False


def build():
    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE)[1].strip()
    log = os.path.join(tempfile.gettempdir(), "hcgw-container-build.log")
    t0 = time.monotonic()
    with open(log, "w") as f:
        p = subprocess.run([CONTAINER_SH, "build", "-t", IMAGE, SRC], stdout=f,
                           stderr=subprocess.STDOUT, timeout=1500)
    with open(log) as f:
        text = f.read()
    if not check(p.returncode == 0, f"the image builds ({time.monotonic() - t0:.0f} s)",
                 f"exit {p.returncode}; last lines of {log}:\n" + "\n".join(text.splitlines()[-40:])):
        return False
    check(unit_tests_passed(text),
          "the build stage's unit tests passed (run now, or cached from a run that passed)",
          f"no ctest summary and no cached layer for the build-and-test step in {log}")
    new = podman("image", "inspect", "--format", "{{.Id}}", IMAGE)[1].strip()
    if old and old != new:
        podman("rmi", old)  # the previous build of this tag; refused harmlessly if still in use
    # The build stage leaves an untagged image per build (with the toolchain layer, ~750 MB when
    # install-deps.sh changed). Keep the newest, whose layers are the cache of the next build.
    _, out, _ = podman("images", "--filter", "dangling=true", "--filter",
                       "label=io.hcgw.stage=build", "--format", "{{.CreatedAt}} {{.ID}}")
    for line in sorted(out.splitlines(), reverse=True)[1:]:
        podman("rmi", line.split()[-1])
    return True


def check_image(tmp):
    """Checks the image; returns the client token made with it (or None)."""
    rc, out, err = podman("image", "inspect", IMAGE)
    if not check(rc == 0, "the image exists", err):
        return None
    img = json.loads(out)[0]
    cfg = img.get("Config") or {}
    user = cfg.get("User", "")
    uid = user.split(":")[0]
    check(uid.isdigit() and int(uid) != 0, "the image's user is a numeric non-root UID", user)
    check(cfg.get("StopSignal") in ("SIGTERM", "15"), "STOPSIGNAL is SIGTERM",
          cfg.get("StopSignal"))
    check("8080/tcp" in (cfg.get("ExposedPorts") or {}), "EXPOSE 8080")
    hc = (img.get("Healthcheck") or cfg.get("Healthcheck") or {}).get("Test")
    check(hc == ["CMD", "/usr/local/bin/hcgw", "--probe", "http://127.0.0.1:8080/healthz"],
          "HEALTHCHECK runs hcgw --probe on /healthz", hc)
    env = " ".join(cfg.get("Env") or [])
    check("HCGW_API_KEY" not in env, "no key in the image's environment", env)
    print(f"# image {IMAGE}: {img.get('Size', 0) / 1e6:.1f} MB", flush=True)

    rc, out, err = podman("run", "--rm", "--no-healthcheck", IMAGE, "--version")
    check(rc == 0 and out.startswith("hcgw "), "hcgw --version runs in the image", out + err)
    rc, out, err = podman("run", "--rm", "--no-healthcheck", IMAGE, "token", "new", "ctest")
    token = re.search(r"^token: (\S+)$", out, re.M)
    digest = re.search(r"^token_sha256: ([0-9a-f]{64})$", out, re.M)
    if not check(rc == 0 and token and digest, "hcgw token new runs in the image", out + err):
        return None
    client = {"token": token.group(1), "sha256": digest.group(1)}
    hash_file = os.path.join(tmp, "client.sha256")
    with open(hash_file, "w") as f:
        f.write(client["sha256"] + "\n")
    os.chmod(hash_file, 0o644)  # a hash, not a secret
    mount = ["-v", f"{hash_file}:{CLIENT_HASH_PATH}:ro"]
    rc, out, err = podman("run", "--rm", "--no-healthcheck", *mount, IMAGE, "--check-config")
    check(rc == 1 and "HCGW_API_KEY" in err,
          "with no key given, --check-config refuses and names HCGW_API_KEY", f"rc={rc} {err}")
    rc, out, err = podman("run", "--rm", "--no-healthcheck", *mount, "-e", "HCGW_API_KEY=k",
                          IMAGE, "--check-config")
    check(rc == 0 and "configuration OK" in out,
          "the image's default configuration is valid", f"rc={rc} {out}{err}")
    rc, out, err = podman("run", "--rm", "--no-healthcheck", "--entrypoint", "/bin/cat",
                          IMAGE, "/etc/hcgw/hcgw.conf")
    check(re.search(r'^\s*address\s*=\s*"0\.0\.0\.0"\s*;', out, re.M) is not None,
          "the image's configuration listens on 0.0.0.0", out[:200])
    return client


def start(tmp, key, gw_port, sim_port):
    """Starts the pod, the simulator and hcgw; tmp already holds client.sha256."""
    with open(os.path.join(SRC, "deploy", "container", "hcgw.conf")) as f:
        shipped = f.read()
    conf = os.path.join(tmp, "hcgw.conf")
    with open(conf, "w") as f:
        # The shipped container configuration, with the simulator as the upstream.
        f.write(shipped + f'\nupstream = {{ base_url = "http://127.0.0.1:{SIM_PORT}/v1"; '
                          f'timeout_ms = 8000; }};\n')
    keyfile = os.path.join(tmp, "helpcrunch-api-key")
    with open(keyfile, "w") as f:
        f.write(key + "\n")
    os.chmod(conf, 0o644)
    # As a secret store would: the container user's own file, readable by it alone.
    os.chmod(keyfile, 0o600)
    os.chown(keyfile, CONTAINER_UID, CONTAINER_UID)

    podman("pod", "create", "--name", POD, "-p", f"127.0.0.1:{gw_port}:8080",
           "-p", f"127.0.0.1:{sim_port}:{SIM_PORT}", check_rc=True)
    podman("run", "-d", "--name", SIM, "--pod", POD, "--read-only", "--no-healthcheck",
           "--entrypoint", "/usr/local/bin/hcgw-sim", IMAGE,
           "--address", "0.0.0.0", "--port", str(SIM_PORT), "--key", key, "--rate-limit", "0",
           check_rc=True)
    podman("run", "-d", "--name", GW, "--pod", POD, "--read-only", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges",
           "-v", f"{conf}:/etc/hcgw/hcgw.conf:ro", "-v", f"{keyfile}:{KEY_PATH}:ro",
           "-v", f"{os.path.join(tmp, 'client.sha256')}:{CLIENT_HASH_PATH}:ro",
           "-e", f"HCGW_API_KEY_FILE={KEY_PATH}", IMAGE, check_rc=True)


def wait_healthy(base, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if curl("GET", base + "/healthz", timeout=2)[0] == 200:
                return True
        except (subprocess.SubprocessError, ValueError):
            pass
        time.sleep(0.2)
    return False


def requests_through(base, sim, key, token):
    auth = [f"Authorization: Bearer {token}"]
    status, head, body = curl("GET", base + "/healthz")
    check(status == 200 and json.loads(body or "{}").get("status") == "ok",
          "GET /healthz through the published port is 200 ok", f"{status} {body}")
    status, _, body = curl("GET", base + "/readyz")
    check(status == 200, "GET /readyz is 200", f"{status} {body}")

    status, head, body = curl("GET", f"{base}/contacts/{CONTACT}")
    code = json.loads(body).get("error", {}).get("code") if body.startswith("{") else None
    check(status == 401 and re.search(r"^www-authenticate: Bearer", head, re.I | re.M),
          "GET /contacts/{id} without a client token is 401 with WWW-Authenticate",
          f"{status} {code} {body[:200]}")
    status, _, body = curl("GET", f"{base}/contacts/{CONTACT}",
                           headers=["Authorization: Bearer not-a-client-token"])
    check(status == 401, "a wrong client token is 401", f"{status} {body[:200]}")
    status, _, body = curl("GET", f"{sim}/_sim/requests")
    check(status == 200 and json.loads(body).get("requests") == [],
          "refused callers spent no upstream call", body[:300])

    status, head, body = curl("GET", f"{base}/contacts/{CONTACT}", headers=auth)
    doc = json.loads(body) if status == 200 else {}
    check(status == 200 and str(doc.get("id")) == CONTACT,
          "GET /contacts/{id} is 200 with the simulator's customer", f"{status} {body[:200]}")
    check(re.search(r"^x-request-id: \S+", head, re.I | re.M) is not None,
          "the answer has an X-Request-Id header")

    status, _, body = curl("GET", f"{base}/contacts/0", headers=auth)
    code = json.loads(body).get("error", {}).get("code") if body.startswith("{") else None
    check(status == 400 and code == "invalid_contact_id",
          "a bad id gets the 400 error envelope", f"{status} {body}")

    tag = "Container Test"
    status, _, body = curl("PUT", f"{base}/contacts/{CONTACT}/tags/Container%20Test",
                           headers=auth)
    names = [t.get("name") for t in json.loads(body).get("tags", [])] if status == 200 else []
    check(status == 200 and tag in names, "PUT /contacts/{id}/tags/{name} is 200 and adds the tag",
          f"{status} {body[:200]}")
    status, _, body = curl("GET", f"{sim}/_sim/requests")
    reqs = json.loads(body).get("requests", []) if status == 200 else []
    puts = [r for r in reqs if r.get("method") == "PUT"
            and r.get("path") == f"/v1/customers/{CONTACT}/tags"]
    check(len(puts) == 1, "the tag PUT reached the simulator once", json.dumps(reqs)[:300])
    if puts:
        check(puts[0].get("authorization") == f"Bearer {key}",
              "upstream got the mounted HelpCrunch key as Bearer, not the client's token")
        check(json.loads(puts[0].get("body") or "{}") == {"tags": [{"name": tag}]},
              "upstream got the tag in its JSON body", puts[0].get("body"))


def non_root():
    rc, out, err = podman("exec", GW, "id", "-u")
    uid = out.strip()
    check(rc == 0 and uid.isdigit() and int(uid) != 0, "podman exec: id -u is non-root",
          f"{uid} {err}")
    rc, out, _ = podman("inspect", "--format", "{{.State.Pid}}", GW)
    pid = out.strip()
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        cap = re.search(r"^CapEff:\s+(\S+)", status, re.M).group(1)
        check(all(u != "0" for u in uids), "the hcgw process's real/effective/saved UIDs are "
              "non-root (seen from the host)", " ".join(uids))
        check(int(cap, 16) == 0, "the hcgw process has no effective capabilities", cap)
    except (OSError, AttributeError) as e:
        check(False, "read the hcgw process's status from the host", str(e))


def healthcheck():
    rc, out, err = podman("healthcheck", "run", GW)
    check(rc == 0, "podman healthcheck run: exit 0", f"rc={rc} {out}{err}")
    _, out, _ = podman("inspect", "--format", "{{.State.Health.Status}}", GW)
    check(out.strip() == "healthy", "the container's health is healthy", out.strip())


def graceful_stop(base, sim, token):
    # A slow upstream answer keeps one request in flight while SIGTERM arrives.
    delay_ms = 2000
    status, _, body = curl("POST", f"{sim}/_sim/script", body=json.dumps({"delay_ms": delay_ms}))
    check(status == 200, "the simulator took a delayed answer", f"{status} {body}")
    slow = subprocess.Popen(["curl", "-sS", "--noproxy", "*", "-m", "20", "-o", "/dev/null",
                             "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}",
                             f"{base}/contacts/{CONTACT}"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    t0 = time.monotonic()
    rc, _, err = podman("stop", "-t", str(STOP_GRACE_S), GW, timeout=STOP_GRACE_S + 30)
    took = time.monotonic() - t0
    code = slow.communicate(timeout=30)[0].strip()
    check(rc == 0, "podman stop (SIGTERM) succeeds", err)
    check(code == "200", "the request in flight at SIGTERM is answered 200", code)
    _, out, _ = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.Status}}", GW)
    check(out.split()[:2] == ["0", "exited"], "hcgw exits with code 0 (not killed)", out.strip())
    check(took < DRAIN_TIMEOUT_S + 1.0,
          f"it stops within the drain timeout ({took:.1f} s < {DRAIN_TIMEOUT_S:.0f} s + 1 s)")
    check(took >= delay_ms / 1000 - 0.5 - 0.3, "it waited for the request in flight",
          f"{took:.1f} s")
    _, out, err = podman("logs", GW)
    check('"msg":"stopped"' in out + err, "hcgw logged \"stopped\"", (out + err)[-500:])
    check("readable by other users" not in out + err, "no key-file permission warning",
          (out + err)[:500])


def in_podman_container():
    """podman marks its containers with /run/.containerenv (a Docker-made sandbox, where podman
    does run, has only /.dockerenv)."""
    return os.path.exists("/run/.containerenv")


def main():
    if in_podman_container() and not os.environ.get("HCGW_CONTAINER_TEST_FORCE"):
        # podman inside a podman container (../shared/tools/fresh-ci.sh runs CI in one) has no
        # privileges to make its own; CI on the machine itself runs this test.
        print("skip - running inside a podman container, where podman cannot run containers "
              "(HCGW_CONTAINER_TEST_FORCE=1 tries anyway)")
        print("0 passed, 0 failed, 1 skipped")
        return 77
    if not os.access(CONTAINER_SH, os.X_OK):
        print(f"FAIL - container.sh not found at {CONTAINER_SH} (set HCGW_CONTAINER_SH)")
        print("0 passed, 1 failed")
        return 1
    # ctest's timeout and Ctrl-C end the test with a signal; clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    cleanup()  # leftovers of a run that was killed
    try:
        ok = True
        if "HCGW_TEST_IMAGE" not in os.environ:
            ok = build()
        with tempfile.TemporaryDirectory(prefix="hcgw-ctest-") as tmp:
            client = check_image(tmp) if ok else None
            if client:
                key = "ctest-" + secrets.token_hex(12)
                gw_port, sim_port = free_port(), free_port()
                base, sim = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{sim_port}"
                start(tmp, key, gw_port, sim_port)
                if check(wait_healthy(base), "hcgw answers on the published port"):
                    requests_through(base, sim, key, client["token"])
                    non_root()
                    healthcheck()
                    graceful_stop(base, sim, client["token"])
                else:
                    for name in (GW, SIM):
                        _, out, err = podman("logs", name)
                        print(f"# logs of {name}:\n{out}{err}")
    except Exception as e:  # a failed step is a failed check, and cleanup still runs
        check(False, "the container test ran to its end", repr(e))
    finally:
        cleanup()
        rc, out, _ = podman("ps", "-a", "--filter", "name=hcgw-ctest", "--format", "{{.Names}}")
        check(out.strip() == "", "no test container is left", out.strip())
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
