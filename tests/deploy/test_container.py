#!/usr/bin/env python3
"""The container image, end to end (ctest label "container").

Builds the unchanged top-level Dockerfile with the container engine it finds (podman or
docker), then runs the image as a person would: hcgw-sim and hcgw sharing one network namespace
(hcgw joins the simulator's) whose ports are published on 127.0.0.1 only, hcgw with the shipped
container configuration (plus an upstream pointing at the simulator), the key in a mounted
file named by HCGW_API_KEY_FILE, a client token made with the image's own `hcgw token new` (its
SHA-256 mounted where the container configuration expects it), a read-only root filesystem and
no capabilities. Real requests go through the published port with curl. It checks:

- the image's metadata: non-root numeric user, SIGTERM stop signal, port 8080, the HEALTHCHECK
  command, no key in its environment; `--version` runs; with no key given, `--check-config`
  refuses and says how to give one (nothing is baked in); with one, the default config is OK
  and listens on 0.0.0.0;
- GET /healthz and /readyz (no token needed), a contact GET without a token (401, nothing sent
  upstream), a contact GET with it, a validation error envelope, and a tag PUT that reaches the
  simulator with exactly `Authorization: Bearer <HelpCrunch key>` (not the client's token) and
  the tag in its body; no key-file warning in the log (the file is the container user's, 0600);
- the gateway process runs as a non-root UID (inside: `id -u`; outside: /proc/PID/status);
- the HEALTHCHECK reports healthy (podman: `podman healthcheck run`; docker: its own timer);
- `stop -t 15` (SIGTERM) while a slow request is in flight: the request is answered 200,
  the container exits with code 0, within the drain timeout (server.drain_timeout_ms), and
  hcgw logged "stopped".

Every container is removed at the end, whatever happened. Environment:
  HCGW_SOURCE_DIR         the project root (default: two levels above this file)
  HCGW_CONTAINER_ENGINE   the engine's command (a name on PATH or a path); default: podman,
                          else docker, whichever is found first and can run a container
  HCGW_TEST_IMAGE         use this image and skip the build (for quick reruns)
The engine's own environment passes through unchanged (CONTAINERS_CONF,
CONTAINERS_STORAGE_CONF, REGISTRIES_CONFIG_PATH for podman; DOCKER_HOST, DOCKER_CONFIG for
docker; the proxy variables for pulling the base image).

Before anything else it checks that the engine can work here: its command exists, `ENGINE info`
succeeds, and every base image the Dockerfile's FROM lines name is there or can be pulled and
runs a container. When none can, it prints one "skip - ..." line saying why and exits 77 (ctest:
skipped). From then on every problem is a failure: a Dockerfile that does not build fails.
Otherwise it prints one line per check and a closing "N passed, N failed" line and exits 0 only
if all passed.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HCGW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
IMAGE = os.environ.get("HCGW_TEST_IMAGE") or "localhost/hcgw:ctest"
# Names of this run's containers: the PID keeps two runs on one machine apart.
PREFIX = "hcgw-ctest-"
SIM, GW = f"{PREFIX}{os.getpid()}-sim", f"{PREFIX}{os.getpid()}-gw"
SIM_PORT = 8090          # inside the shared network namespace
KEY_PATH = "/run/secrets/helpcrunch-api-key"
CLIENT_HASH_PATH = "/run/secrets/hcgw-client.sha256"  # deploy/container/hcgw.conf's token_file
DRAIN_TIMEOUT_S = 10.0   # server.drain_timeout_ms in deploy/container/hcgw.conf
CONTAINER_UID = 10001   # the Dockerfile's USER
STOP_GRACE_S = 15        # stop -t: SIGKILL after this; must exceed the drain timeout
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


class Engine:
    """The container engine's command, and which of the two it is: podman, or docker (the
    Docker CLI, or podman behind a `docker` name, which says so in `--version`)."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.podman = False

    def run(self, *args, timeout=120):
        """Runs the engine with the environment as it is; returns (rc, stdout, stderr)."""
        try:
            p = subprocess.run([self.path, *args], capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return 124, "", f"no answer within {timeout} s"
        except OSError as e:
            return 127, "", str(e)
        return p.returncode, p.stdout, p.stderr


ENGINE = None  # the Engine chosen by find_engine()


def last_line(text, limit=160):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return (lines[-1][:limit] if lines else "no output")


def base_images():
    """The images the Dockerfile's FROM lines name (not its own stages), fully qualified as
    Docker resolves a short name (debian:bookworm-slim is docker.io/library/debian:...)."""
    images, stages = [], set()
    with open(os.path.join(SRC, "Dockerfile")) as f:
        for line in f:
            words = line.split()
            if len(words) < 2 or words[0].upper() != "FROM":
                continue
            words = [w for w in words[1:] if not w.startswith("--")]
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            image = words[0]
            if image.lower() in stages or image in images:
                continue
            images.append(image)
    qualified = []
    for image in images:
        first = image.split("/")[0]
        if "/" not in image:
            image = "docker.io/library/" + image
        elif "." not in first and ":" not in first and first != "localhost":
            image = "docker.io/" + image
        qualified.append(image)
    return qualified


def usable(engine, images):
    """None when this engine can build and run here, else why not (one phrase)."""
    rc, out, err = engine.run("info", timeout=60)
    if rc != 0:
        return f"`{engine.name} info` failed: {last_line(err or out)}"
    rc, out, _ = engine.run("--version", timeout=30)
    engine.podman = rc == 0 and out.lower().startswith("podman")
    for image in images:
        if engine.run("image", "inspect", image, timeout=60)[0] != 0:
            rc, out, err = engine.run("pull", image, timeout=900)
            if rc != 0:
                return f"the base image {image} cannot be pulled: {last_line(err or out)}"
        rc, out, err = engine.run("run", "--rm", image, "true", timeout=300)
        if rc != 0:
            return f"`{engine.name} run {image}` failed: {last_line(err or out)}"
    return None


def find_engine():
    """The first engine that can work here (HCGW_CONTAINER_ENGINE alone when it is set), or
    None and the reasons of each one tried."""
    named = os.environ.get("HCGW_CONTAINER_ENGINE")
    images = base_images() if "HCGW_TEST_IMAGE" not in os.environ else []
    why = []
    for command in ([named] if named else ["podman", "docker"]):
        path = shutil.which(command)
        if not path:
            why.append(f"{command}: not found")
            continue
        engine = Engine(path)
        problem = usable(engine, images)
        if problem is None:
            return engine, why
        why.append(f"{command}: {problem}")
    return None, why


def engine(*args, check_rc=False, timeout=120, quiet_stderr=True):
    """Runs the container engine found by find_engine(); returns (rc, stdout, stderr)."""
    rc, out, err = ENGINE.run(*args, timeout=timeout)
    if quiet_stderr:
        # Without systemd, podman complains that it cannot start healthcheck timers; the test
        # runs the check by hand (podman healthcheck run), so those lines are noise.
        err = "\n".join(l for l in err.splitlines() if "systemd" not in l)
    if check_rc and rc != 0:
        raise RuntimeError(f"{ENGINE.name} {' '.join(args)}: exit {rc}: {err.strip()}")
    return rc, out, err


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


def remove(*names):
    """Removes these containers, one at a time and in this order: a container whose network
    namespace another one joined can be removed only after it."""
    for name in names:
        # podman waits 10 s for a running container to stop unless told -t 0; docker kills.
        engine("rm", "-f", *(["-t", "0"] if ENGINE.podman else []), name)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cleanup_stale():
    """Removes the containers of earlier runs that were killed before their own cleanup."""
    _, out, _ = engine("ps", "-a", "--filter", f"name={PREFIX}", "--format", "{{.Names}}")
    stale = [n for n in out.split() if re.fullmatch(rf"{PREFIX}(\d+)-(sim|gw)", n)
             and not pid_alive(int(n.split("-")[2]))]
    remove(*sorted(stale, key=lambda n: not n.endswith("-gw")))  # each hcgw before the sims


def cleanup():
    remove(GW, SIM)


def unit_tests_passed(text):
    """True if the build log shows the build stage's unit tests passing: either their ctest
    summary, or a cache hit on the RUN step that builds and runs them. That step is one `&&`
    chain, so the engine commits its layer only when ctest passed; a cached layer means the
    tests passed on exactly these inputs (the same sources, the same toolchain layer), and it
    then says it used its cache instead of running them again. This is the case whenever the
    same tree was built before on this machine (a CI run right after a local build of it).
    """
    if re.search(r"100% tests passed, 0 tests failed out of \d+", text):
        return True
    lines = text.splitlines()
    for i, line in enumerate(lines):
        # podman: "STEP 7/9: RUN ..." then "--> Using cache"; Docker's classic builder:
        # "Step 7/9 : RUN ..." then " ---> Using cache".
        if re.search(r"STEP \d+/\d+ ?: RUN .*ctest --test-dir", line, re.I):
            return i + 1 < len(lines) and re.match(r"\s*-+> Using cache", lines[i + 1]) is not None
        # BuildKit (with plain progress): "#12 [build 6/6] RUN ..." and later "#12 CACHED".
        step = re.match(r"(#\d+) \[.*\] RUN .*ctest --test-dir", line)
        if step:
            return any(l.strip() == step.group(1) + " CACHED" for l in lines[i + 1:])
    return False


def build():
    old = engine("image", "inspect", "--format", "{{.Id}}", IMAGE)[1].strip()
    log = os.path.join(tempfile.gettempdir(), "hcgw-container-build.log")
    t0 = time.monotonic()
    # --format docker: the OCI image format (podman's default) has no HEALTHCHECK. BuildKit
    # writes its steps as plain text only when asked.
    fmt = ["--format", "docker"] if ENGINE.podman else []
    env = dict(os.environ, BUILDKIT_PROGRESS=os.environ.get("BUILDKIT_PROGRESS", "plain"))
    with open(log, "w") as f:
        p = subprocess.run([ENGINE.path, "build", *fmt, "-t", IMAGE, SRC], stdout=f,
                           stderr=subprocess.STDOUT, timeout=1500, env=env,
                           stdin=subprocess.DEVNULL)
    with open(log) as f:
        text = f.read()
    if not check(p.returncode == 0, f"the image builds ({time.monotonic() - t0:.0f} s)",
                 f"exit {p.returncode}; last lines of {log}:\n" + "\n".join(text.splitlines()[-40:])):
        return False
    check(unit_tests_passed(text),
          "the build stage's unit tests passed (run now, or cached from a run that passed)",
          f"no ctest summary and no cached layer for the build-and-test step in {log}")
    new = engine("image", "inspect", "--format", "{{.Id}}", IMAGE)[1].strip()
    if old and old != new:
        engine("rmi", old)  # the previous build of this tag; refused harmlessly if still in use
    # The build stage leaves an untagged image per build (with the toolchain layer, ~750 MB when
    # install-deps.sh changed). Keep the newest, whose layers are the cache of the next build.
    _, out, _ = engine("images", "--filter", "dangling=true", "--filter",
                       "label=io.hcgw.stage=build", "--format", "{{.CreatedAt}} {{.ID}}")
    for line in sorted(out.splitlines(), reverse=True)[1:]:
        engine("rmi", line.split()[-1])
    return True


def check_image(tmp):
    """Checks the image; returns the client token made with it (or None)."""
    rc, out, err = engine("image", "inspect", IMAGE)
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

    rc, out, err = engine("run", "--rm", "--no-healthcheck", IMAGE, "--version")
    check(rc == 0 and out.startswith("hcgw "), "hcgw --version runs in the image", out + err)
    rc, out, err = engine("run", "--rm", "--no-healthcheck", IMAGE, "token", "new", "ctest")
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
    rc, out, err = engine("run", "--rm", "--no-healthcheck", *mount, IMAGE, "--check-config")
    check(rc == 1 and "HCGW_API_KEY" in err,
          "with no key given, --check-config refuses and names HCGW_API_KEY", f"rc={rc} {err}")
    rc, out, err = engine("run", "--rm", "--no-healthcheck", *mount, "-e", "HCGW_API_KEY=k",
                          IMAGE, "--check-config")
    check(rc == 0 and "configuration OK" in out,
          "the image's default configuration is valid", f"rc={rc} {out}{err}")
    rc, out, err = engine("run", "--rm", "--no-healthcheck", "--entrypoint", "/bin/cat",
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

    # The simulator's container owns the network namespace and publishes both ports; hcgw
    # joins it, so it reaches the simulator on 127.0.0.1 (a pod, said the engine-neutral way).
    engine("run", "-d", "--name", SIM, "-p", f"127.0.0.1:{gw_port}:8080",
           "-p", f"127.0.0.1:{sim_port}:{SIM_PORT}", "--read-only", "--no-healthcheck",
           "--entrypoint", "/usr/local/bin/hcgw-sim", IMAGE,
           "--address", "0.0.0.0", "--port", str(SIM_PORT), "--key", key, "--rate-limit", "0",
           check_rc=True)
    engine("run", "-d", "--name", GW, "--network", f"container:{SIM}", "--read-only",
           "--cap-drop", "ALL",
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
    rc, out, err = engine("exec", GW, "id", "-u")
    uid = out.strip()
    check(rc == 0 and uid.isdigit() and int(uid) != 0, "exec: id -u is non-root",
          f"{uid} {err}")
    rc, out, _ = engine("inspect", "--format", "{{.State.Pid}}", GW)
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
    if ENGINE.podman:
        # No timer runs the HEALTHCHECK where podman has no systemd: run it by hand.
        rc, out, err = engine("healthcheck", "run", GW)
        check(rc == 0, "podman healthcheck run: exit 0", f"rc={rc} {out}{err}")
        _, out, _ = engine("inspect", "--format", "{{.State.Health.Status}}", GW)
    else:
        # Docker has no "healthcheck run": its daemon runs the check on its own timer (first
        # after --start-period, then every --interval); the command itself, run the same way:
        rc, out, err = engine("exec", GW, "/usr/local/bin/hcgw", "--probe",
                              "http://127.0.0.1:8080/healthz")
        check(rc == 0, "the HEALTHCHECK command: exit 0", f"rc={rc} {out}{err}")
        deadline = time.monotonic() + 40
        while True:
            _, out, _ = engine("inspect", "--format", "{{.State.Health.Status}}", GW)
            if out.strip() != "starting" or time.monotonic() > deadline:
                break
            time.sleep(1)
    check(out.strip() == "healthy", "the container's health is healthy", out.strip())


def graceful_stop(base, sim, token):
    # A slow upstream answer keeps one request in flight while SIGTERM arrives. no-cache: the
    # contact cache holds this customer from the calls before, and would answer at once.
    delay_ms = 2000
    status, _, body = curl("POST", f"{sim}/_sim/script", body=json.dumps({"delay_ms": delay_ms}))
    check(status == 200, "the simulator took a delayed answer", f"{status} {body}")
    slow = subprocess.Popen(["curl", "-sS", "--noproxy", "*", "-m", "20", "-o", "/dev/null",
                             "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}",
                             "-H", "Cache-Control: no-cache", f"{base}/contacts/{CONTACT}"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    t0 = time.monotonic()
    rc, _, err = engine("stop", "-t", str(STOP_GRACE_S), GW, timeout=STOP_GRACE_S + 30)
    took = time.monotonic() - t0
    code = slow.communicate(timeout=30)[0].strip()
    check(rc == 0, "stop (SIGTERM) succeeds", err)
    check(code == "200", "the request in flight at SIGTERM is answered 200", code)
    _, out, _ = engine("inspect", "--format", "{{.State.ExitCode}} {{.State.Status}}", GW)
    check(out.split()[:2] == ["0", "exited"], "hcgw exits with code 0 (not killed)", out.strip())
    check(took < DRAIN_TIMEOUT_S + 1.0,
          f"it stops within the drain timeout ({took:.1f} s < {DRAIN_TIMEOUT_S:.0f} s + 1 s)")
    check(took >= delay_ms / 1000 - 0.5 - 0.3, "it waited for the request in flight",
          f"{took:.1f} s")
    _, out, err = engine("logs", GW)
    check('"msg":"stopped"' in out + err, "hcgw logged \"stopped\"", (out + err)[-500:])
    check("readable by other users" not in out + err, "no key-file permission warning",
          (out + err)[:500])


def main():
    global ENGINE
    # ctest's timeout and Ctrl-C end the test with a signal; clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    ENGINE, why = find_engine()
    if ENGINE is None:
        # Not a defect of the project: this machine cannot run containers (no engine, no
        # daemon, no base image, no privileges, as inside most containers).
        print("skip - no container engine can build and run a container here: "
              + "; ".join(why) + " (HCGW_CONTAINER_ENGINE chooses the engine)", flush=True)
        return 77
    print(f"# engine: {ENGINE.path} ({'podman' if ENGINE.podman else 'docker'})", flush=True)
    cleanup_stale()
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
                        _, out, err = engine("logs", name)
                        print(f"# logs of {name}:\n{out}{err}")
    except Exception as e:  # a failed step is a failed check, and cleanup still runs
        check(False, "the container test ran to its end", repr(e))
    finally:
        cleanup()
        rc, out, _ = engine("ps", "-a", "--format", "{{.Names}}")
        left = [n for n in out.split() if n in (SIM, GW)]
        check(not left, "no test container is left", " ".join(left))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
