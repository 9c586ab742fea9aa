"""The rules for Redis in deploy/, used by check_manifests.py (its "redis" command, and its k8s
and compose checks of the variants with Redis). Python's standard library plus PyYAML.

Three parts, each a function returning one line per problem:
- check_files: deploy/redis itself. redis.conf persists nothing, evicts only keys with a time
  to live (least recently used first), keeps protected mode, the debug and module commands
  off, and takes its users from the ACL file alone, never a password of its own. users.acl.in
  disables the default user and gives the hcgw user a password only through the placeholder
  hcgw-redis-start fills in (never a password or a hash in git), the keys of hcgw's prefix
  (every hcgw.conf with a redis group uses it), no channels, and exactly the commands hcgw
  uses: at least every command src/ sends or calls from its Lua scripts, and nothing outside
  a short list (no FLUSHALL, CONFIG, KEYS, SCAN, SELECT...). The Dockerfile runs a fixed
  non-root user from debian:bookworm-slim with the start script and the probe.
- check_k8s: a rendered overlay with Redis (deploy/kubernetes/components/redis): one Redis pod
  that never runs twice, with its own service account and the password Secret as a read-only
  file, the ACL on a memory emptyDir; a Service in front of it only; NetworkPolicies letting
  only the hcgw pods in (on 6379, and 4143 under Linkerd) and Redis out to nothing (or its
  mesh proxy's control plane); hcgw's redis.url at that Service, its password file from the
  same Secret, the account's quota within HelpCrunch's limit and maxReplicas x the fallback
  rate too; under a mesh, Redis in the mesh with mTLS and only hcgw's identity admitted.
- check_compose: the compose topology: at least two hcgw replicas on one Redis, Redis
  read-only with the ACL on a tmpfs and no published port, one password secret for both
  sides, the fallback arithmetic, and every secret file a throwaway.
"""
import glob
import os
import re

import yaml

from deploy_facts import (ACCOUNT_LIMIT_PER_MINUTE, DNS_PORTS, LINKERD_INBOUND_PORT,
                          MESH_NAMESPACES, NAMESPACE, matches)

REDIS_NAME = "hcgw-redis"
REDIS_LABELS = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": REDIS_NAME}
REDIS_PORT = 6379
ACL_USER = "hcgw"
ACL_DIR = "/var/lib/hcgw-redis"        # redis.conf's aclfile folder: a tmpfs in every runtime
ACL_PLACEHOLDER = "@HCGW_REDIS_PASSWORD_SHA256@"
PROBE = "/usr/local/bin/hcgw-redis-probe"
DEFAULT_KEY_PREFIX = "hcgw:"
# What the hcgw user may ever be given: what hcgw sends, what its scripts call, and what the
# shared cache and idempotency records are planned with. Anything else is a hole.
ALLOWED_COMMANDS = {"eval", "evalsha", "time", "get", "set", "pttl", "hmget", "hset", "del",
                    "incr", "pexpire", "ping"}
# Sent by hcgw but never subject to the ACL (AUTH), or needed only in a case the shipped
# configurations avoid: SELECT for a database other than 0, PING without a password.
NOT_REQUIRED = {"auth", "select", "ping"}
# The marker every secret file in deploy/ carries: a throwaway, never a real credential.
THROWAWAY_MARKER = "not-a-real"


# ----------------------------------------------------------------------------- helpers ---
def selects_redis(selector):
    return matches(selector, REDIS_LABELS)


def parse_url(url):
    """redis://host[:port][/db] -> (host, port, db), or None."""
    m = re.fullmatch(r"redis://(\[[^\]]+\]|[^:/]+)(?::(\d+))?(?:/(\d+))?", url or "")
    if not m:
        return None
    return m.group(1), int(m.group(2) or REDIS_PORT), int(m.group(3) or 0)


def redis_quota(conf):
    """(requests_per_minute, fallback, expected_replicas), the fallback derived as hcgw does."""
    rpm = conf.get(("quota", "requests_per_minute"), 120)
    expected = conf.get(("redis", "expected_replicas"), 1)
    fallback = conf.get(("quota", "fallback_requests_per_minute"))
    if fallback is None:
        fallback = 0 if rpm == 0 else max(1, rpm // max(1, expected))
    return rpm, fallback, expected


def check_conf_redis(where, conf, replicas, host, counted="maxReplicas"):
    """The redis group of an hcgw.conf for at most `replicas` replicas (what `counted` says)
    that reach Redis at `host`."""
    errs = []
    url = parse_url(conf.get(("redis", "url")))
    if url is None:
        return [f"{where}: no redis.url (redis://host:port/db): the replicas would each count "
                "alone"]
    h, port, db = url
    if h != host and not h.startswith(host + "."):
        errs.append(f"{where}: redis.url names {h!r}, not the Redis service {host!r}")
    if port != REDIS_PORT:
        errs.append(f"{where}: redis.url port {port} is not Redis's {REDIS_PORT}")
    if db != 0:
        errs.append(f"{where}: redis.url must use database 0 (redis.conf has one; the ACL user "
                    "may not SELECT)")
    if conf.get(("redis", "username")) != ACL_USER:
        errs.append(f"{where}: redis.username must be {ACL_USER!r}, the ACL user of "
                    "deploy/redis/users.acl.in (the default user is disabled)")
    if not conf.get(("redis", "password_file")):
        errs.append(f"{where}: redis.password_file is required: Redis admits no one without")
    rpm, fallback, expected = redis_quota(conf)
    if not 0 < rpm <= ACCOUNT_LIMIT_PER_MINUTE:
        errs.append(f"{where}: quota.requests_per_minute {rpm} (the burst included) must be "
                    f"1..{ACCOUNT_LIMIT_PER_MINUTE}: with Redis it is the account's own limit")
    if replicas * fallback > ACCOUNT_LIMIT_PER_MINUTE:
        errs.append(f"{where}: quota while Redis is away: {replicas} replicas ({counted}) x "
                    f"fallback_requests_per_minute {fallback} exceeds the account's "
                    f"{ACCOUNT_LIMIT_PER_MINUTE} a minute")
    if expected < replicas:
        errs.append(f"{where}: redis.expected_replicas {expected} is below the {replicas} "
                    f"replicas that may run ({counted})")
    return errs


# ------------------------------------------------------------------------------- files ---
def parse_redis_conf(text):
    """redis.conf as {directive: [argument strings]} (the last occurrence wins), and the list
    of every directive in order."""
    conf, order = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.findall(r'"[^"]*"|\S+', line)
        key = parts[0].lower()
        conf[key] = [p.strip('"') for p in parts[1:]]
        order.append(key)
    return conf, order


def parse_acl(text):
    """users.acl.in without its comment lines: {user: [rules]}, and problems of form."""
    users, errs = {}, []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] != "user" or len(parts) < 2:
            errs.append(f"users.acl.in:{n}: every line must be 'user NAME RULES...' (an ACL file "
                        "has no other lines)")
            continue
        if parts[1] in users:
            errs.append(f"users.acl.in:{n}: user {parts[1]} defined twice")
        users[parts[1]] = parts[2:]
    return users, errs


def source_commands(src_dir):
    """The Redis commands hcgw's sources send (argv[...] = "CMD") or call from Lua
    (redis.call('CMD')), lower case."""
    cmds = set()
    for path in sorted(glob.glob(os.path.join(src_dir, "*.c"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if "redis" not in os.path.basename(path) and "redis.call" not in text:
            continue
        cmds |= {c.lower() for c in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", text)}
        for rhs in re.findall(r"\bargv\[[^\]]*\]\s*=\s*([^;]*);", text):
            cmds |= {c.lower() for c in re.findall(r'"([A-Z]{3,})"', rhs)}
    return cmds


def hcgw_confs_with_redis(deploy_dir, parse_conf):
    """{relative path: parsed conf} of every hcgw.conf in deploy/ with a redis group."""
    out = {}
    for path in sorted(glob.glob(os.path.join(deploy_dir, "**", "hcgw.conf"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            conf = parse_conf(f.read())
        if conf.get(("redis", "url")):
            out[os.path.relpath(path, deploy_dir)] = conf
    return out


def check_files(redis_dir, deploy_dir, src_dir, parse_conf):
    errs = []

    def read(name):
        with open(os.path.join(redis_dir, name), encoding="utf-8") as f:
            return f.read()

    # redis.conf
    conf, order = parse_redis_conf(read("redis.conf"))
    R = "redis.conf"
    for key in ("requirepass", "masterauth", "masteruser", "user", "rename-command"):
        if key in conf:
            errs.append(f"{R}: {key}: the users come from the ACL file alone (a password here "
                        "would be in git, in clear)")
    want = {"protected-mode": ["yes"], "save": [""], "appendonly": ["no"],
            "enable-debug-command": ["no"], "enable-module-command": ["no"],
            "enable-protected-configs": ["no"], "port": [str(REDIS_PORT)],
            "databases": ["1"], "daemonize": ["no"]}
    for key, value in want.items():
        if conf.get(key) != value:
            errs.append(f"{R}: {key} must be {' '.join(value) or chr(34) * 2} "
                        f"(is {conf.get(key)!r})")
    if order.count("save") > 1:
        errs.append(f"{R}: save must appear once, as save \"\": nothing is persisted")
    mm = (conf.get("maxmemory") or ["0"])[0].lower()
    if not re.fullmatch(r"[1-9][0-9]*(b|k|kb|m|mb|g|gb)?", mm):
        errs.append(f"{R}: maxmemory must be set (a bound; 0 means none)")
    policy = (conf.get("maxmemory-policy") or ["noeviction"])[0]
    if policy not in ("volatile-lru", "volatile-lfu"):
        errs.append(f"{R}: maxmemory-policy {policy}: must be volatile-lru (or volatile-lfu): "
                    "evict hcgw's keys, all of which expire, least used first, so the quota "
                    "bucket goes last; never keys without a time to live; never refuse writes")
    aclfile = (conf.get("aclfile") or [""])[0]
    if os.path.dirname(aclfile) != ACL_DIR:
        errs.append(f"{R}: aclfile must be in {ACL_DIR} (the tmpfs hcgw-redis-start renders "
                    f"it into; is {aclfile!r})")

    # users.acl.in
    users, form = parse_acl(read("users.acl.in"))
    errs += form
    A = "users.acl.in"
    if set(users) != {"default", ACL_USER}:
        errs.append(f"{A}: the users must be default (off) and {ACL_USER}, no others "
                    f"(found {sorted(users)})")
    d = users.get("default", [])
    if "off" not in d or "on" in d or "nopass" in d or any(r[0] in "><#" for r in d):
        errs.append(f"{A}: the default user must be off, with no password")
    rules = users.get(ACL_USER, [])
    if "on" not in rules:
        errs.append(f"{A}: user {ACL_USER} must be on")
    secrets = [r for r in rules if r[0] in "><#" or r in ("nopass", "resetpass")]
    if secrets != ["#" + ACL_PLACEHOLDER]:
        errs.append(f"{A}: user {ACL_USER}'s only password rule must be #{ACL_PLACEHOLDER}, "
                    "which hcgw-redis-start fills in from the password file: never a password "
                    f"(>...), a hash or nopass in git (found {secrets})")
    prefixes = {c.get(("redis", "key_prefix"), DEFAULT_KEY_PREFIX)
                for c in hcgw_confs_with_redis(deploy_dir, parse_conf).values()}
    keys = [r for r in rules if r[0] in "~%" or r == "allkeys"]
    if keys != [f"~{p}*" for p in sorted(prefixes)] or not prefixes:
        errs.append(f"{A}: user {ACL_USER}'s keys must be exactly ~PREFIX* of the "
                    f"redis.key_prefix the configurations use ({sorted(prefixes)}); found "
                    f"{keys}")
    if "resetchannels" not in rules or any(r[0] == "&" or r == "allchannels" for r in rules):
        errs.append(f"{A}: user {ACL_USER} needs no channel (resetchannels, no &)")
    grants = [r for r in rules if r[0] in "+-" or r in ("allcommands", "nocommands")]
    if not grants or grants[0] != "-@all":
        errs.append(f"{A}: user {ACL_USER}'s commands must start from -@all")
    given = set()
    for r in grants[1:]:
        if r[0] != "+" or "@" in r or "|" in r:
            errs.append(f"{A}: user {ACL_USER}: {r}: only whole commands, one by one (+get), "
                        "no categories or subcommands")
            continue
        given.add(r[1:].lower())
    if given - ALLOWED_COMMANDS:
        errs.append(f"{A}: user {ACL_USER} is given {sorted(given - ALLOWED_COMMANDS)}, which "
                    f"hcgw never sends (allowed: {sorted(ALLOWED_COMMANDS)})")
    needed = source_commands(src_dir) - NOT_REQUIRED
    if not needed:
        errs.append(f"src: found no Redis command in {src_dir} (has the code moved? update "
                    "source_commands in tests/deploy/check_redis.py)")
    if needed - given:
        errs.append(f"{A}: user {ACL_USER} lacks {sorted(needed - given)}, which src/ sends or "
                    "calls from its scripts: hcgw would be refused and fall back for good")

    # The start script fills in the same placeholder.
    if ACL_PLACEHOLDER not in read("hcgw-redis-start"):
        errs.append(f"hcgw-redis-start: does not fill in {ACL_PLACEHOLDER}")
    for script in ("hcgw-redis-start", "hcgw-redis-probe"):
        if not os.access(os.path.join(redis_dir, script), os.X_OK):
            errs.append(f"{script}: must be executable (the image copies its mode)")

    # The Dockerfile.
    df = read("Dockerfile")
    D = "deploy/redis/Dockerfile"
    froms = re.findall(r"(?m)^FROM\s+(\S+)", df)
    if froms != ["debian:bookworm-slim"]:
        errs.append(f"{D}: must be FROM debian:bookworm-slim, hcgw's own base (found {froms})")
    users_ = re.findall(r"(?m)^USER\s+(\S+)", df)
    if not users_ or not re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users_[-1]):
        errs.append(f"{D}: USER must be a numeric non-root UID:GID")
    if not re.search(r"(?m)^ENTRYPOINT\s+\[\"/usr/local/bin/hcgw-redis-start\"\]", df):
        errs.append(f"{D}: ENTRYPOINT must be hcgw-redis-start (the ACL is rendered first)")
    if PROBE not in (re.search(r"(?ms)^HEALTHCHECK.*?CMD\s+(\[.*?\])", df) or [None, ""])[1]:
        errs.append(f"{D}: HEALTHCHECK must run {PROBE}")
    if ACL_DIR not in df:
        errs.append(f"{D}: must create {ACL_DIR}, the folder of the rendered ACL")
    if re.search(r"(?mi)^(ENV|ARG)\s+\S*(PASS|SECRET)", df):
        errs.append(f"{D}: no password in the image's environment or build arguments")
    return errs


# The hcgw.conf of each overlay with Redis and the one of the overlay it extends: the same but
# for the quota and the redis group (the copies must not drift apart).
CONF_PAIRS = [("kubernetes/overlays/redis/hcgw.conf", "kubernetes/base/hcgw.conf"),
              ("kubernetes/overlays/istio-redis/hcgw.conf", "kubernetes/overlays/istio/hcgw.conf"),
              ("kubernetes/overlays/linkerd-redis/hcgw.conf",
               "kubernetes/overlays/linkerd/hcgw.conf")]


def check_conf_pairs(deploy_dir, parse_conf):
    errs = []
    for with_redis, without in CONF_PAIRS:
        confs = []
        for rel in (with_redis, without):
            with open(os.path.join(deploy_dir, rel), encoding="utf-8") as f:
                confs.append({k: v for k, v in parse_conf(f.read()).items()
                              if not (isinstance(k, tuple) and k[0] in ("quota", "redis"))})
        keys = sorted({k for c in confs for k in c if confs[0].get(k) != confs[1].get(k)},
                      key=str)
        if keys:
            errs.append(f"deploy/{with_redis} differs from deploy/{without} in more than the "
                        f"quota and redis groups: {keys}")
    return errs


# -------------------------------------------------------------------------- kubernetes ---
def _secret_file_volume(container, path, vols):
    """(secret name, problems) of the Secret volume that holds `path` in `container`."""
    errs = []
    for m in container.get("volumeMounts") or []:
        v = vols.get(m["name"]) or {}
        if "secret" not in v or not path.startswith(m["mountPath"].rstrip("/") + "/"):
            continue
        rel = path[len(m["mountPath"].rstrip("/")) + 1:]
        items = v["secret"].get("items")
        if items is not None and rel not in [it["path"] for it in items]:
            errs.append(f"{path}: no item {rel} in Secret volume {m['name']}")
        if m.get("readOnly") is not True:
            errs.append(f"the Secret volume {m['name']} must be mounted readOnly")
        if m.get("subPath"):
            errs.append(f"the Secret volume {m['name']} is mounted with subPath: a rotated "
                        "password would never be seen")
        return v["secret"]["secretName"], errs
    return None, [f"{path} is not in a mounted Secret volume"]


def egress_redis_ports(rule, linkerd):
    """The ports of an egress rule that leads to the Redis pods alone, or None when the rule
    leads elsewhere (or also elsewhere)."""
    peers = rule.get("to") or []
    if not peers or any(set(p) != {"podSelector"} or not selects_redis(p["podSelector"])
                        for p in peers):
        return None
    allowed = {(REDIS_PORT, "TCP")} | ({(LINKERD_INBOUND_PORT, "TCP")} if linkerd else set())
    ports = {(p.get("port"), p.get("protocol", "TCP")) for p in rule.get("ports") or []}
    return ports if ports and ports <= allowed else None


def check_k8s(by_kind, mesh, gw_dep, gw, conf, hpa_max):
    """An overlay with Redis; gw_dep and gw are hcgw's Deployment and container."""
    errs = []
    linkerd = mesh == "linkerd"
    gw_pod = gw_dep["spec"]["template"]
    gw_labels = gw_pod["metadata"]["labels"]
    gw_sa = gw_pod["spec"].get("serviceAccountName", "default")

    def named(kind, name=REDIS_NAME):
        objs = [o for o in by_kind.get(kind, []) if o["metadata"]["name"] == name]
        if len(objs) != 1:
            errs.append(f"{kind}/{name}: expected exactly one, found {len(objs)}")
            return None
        return objs[0]

    dep, svc, np, sa = (named(k) for k in ("Deployment", "Service", "NetworkPolicy",
                                           "ServiceAccount"))
    if None in (dep, svc, np, sa):
        return errs
    W = f"Deployment/{REDIS_NAME}"
    tmpl = dep["spec"]["template"]
    labels = tmpl["metadata"]["labels"]
    pod = tmpl["spec"]
    if not all(labels.get(k) == v for k, v in REDIS_LABELS.items()):
        errs.append(f"{W}: the pod template must carry the labels {REDIS_LABELS}")
    if not selects_redis(dep["spec"]["selector"]) or matches(dep["spec"]["selector"], gw_labels):
        errs.append(f"{W}: spec.selector must select the Redis pods alone")
    if dep["spec"].get("replicas") != 1:
        errs.append(f"{W}: spec.replicas must be 1: two Redis pods would be two buckets, each "
                    "replica counting in its own")
    if (dep["spec"].get("strategy") or {}).get("type") != "Recreate":
        errs.append(f"{W}: strategy.type must be Recreate: a rolling update would run two Redis "
                    "pods, two buckets, at once")
    if pod.get("serviceAccountName") in (None, "default", gw_sa) or \
            sa["metadata"]["name"] != pod.get("serviceAccountName") or \
            sa.get("automountServiceAccountToken") is not False:
        errs.append(f"{W}: Redis needs a service account of its own ({REDIS_NAME}, no token): "
                    "in a mesh hcgw's identity is the one admitted to Redis")
    rc = next((c for c in pod["containers"] if c["name"] == "redis"), None)
    if rc is None:
        return errs + [f"{W}: no container named redis"]
    if REDIS_PORT not in {p["containerPort"] for p in rc.get("ports") or []}:
        errs.append(f"{W}: no containerPort {REDIS_PORT}")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    env = {e["name"]: e for e in rc.get("env") or []}
    pw_file = (env.get("HCGW_REDIS_PASSWORD_FILE") or {}).get("value")
    redis_secret = None
    if not pw_file:
        errs.append(f"{W}: HCGW_REDIS_PASSWORD_FILE must name the mounted password file")
    else:
        redis_secret, problems = _secret_file_volume(rc, pw_file, vols)
        errs += [f"{W}: {p}" for p in problems]
    acl = [m for m in rc.get("volumeMounts") or [] if m["mountPath"].rstrip("/") == ACL_DIR]
    if not acl or (vols.get(acl[0]["name"]) or {}).get("emptyDir", {}).get("medium") != "Memory":
        errs.append(f"{W}: {ACL_DIR} must be an emptyDir of medium Memory (the rendered ACL, "
                    "in memory only, on a read-only root filesystem)")
    cmd = (((rc.get("readinessProbe") or {}).get("exec") or {}).get("command") or [])
    if cmd[:1] != [PROBE]:
        errs.append(f"{W}: readinessProbe must exec {PROBE} (PING as the ACL user)")
    if any("pass" in a.lower() for a in (rc.get("args") or []) + (rc.get("command") or [])):
        errs.append(f"{W}: no password on Redis's command line")

    # The Service.
    S = f"Service/{REDIS_NAME}"
    if not all(v == labels.get(k) for k, v in svc["spec"]["selector"].items()) or \
            all(v == gw_labels.get(k) for k, v in svc["spec"]["selector"].items()):
        errs.append(f"{S}: selector must select the Redis pods alone")
    sports = svc["spec"]["ports"]
    if [p["port"] for p in sports] != [REDIS_PORT] or \
            sports[0].get("targetPort") not in (REDIS_PORT, *[p.get("name") for p in
                                                               rc.get("ports") or []
                                                               if p["containerPort"] ==
                                                               REDIS_PORT]):
        errs.append(f"{S}: must have the one port {REDIS_PORT}, to the container's {REDIS_PORT}")

    # hcgw's side: redis.url at the Service, the password from the same Secret.
    errs += check_conf_redis("ConfigMap", conf, hpa_max, REDIS_NAME)
    gvols = {v["name"]: v for v in gw_pod["spec"].get("volumes") or []}
    gpw = conf.get(("redis", "password_file"))
    if gpw:
        gw_secret, problems = _secret_file_volume(gw, gpw, gvols)
        errs += [f"Deployment/hcgw: redis.password_file: {p}" for p in problems]
        if gw_secret and redis_secret and gw_secret != redis_secret:
            errs.append(f"Deployment/hcgw: redis.password_file is from Secret {gw_secret}, Redis "
                        f"reads Secret {redis_secret}: one password, one Secret")

    # Redis's NetworkPolicy: in only from the hcgw pods, out to nothing but its proxy's needs.
    N = f"NetworkPolicy/{REDIS_NAME}"
    spec = np["spec"]
    if not selects_redis(spec["podSelector"]):
        errs.append(f"{N}: podSelector does not select the Redis pods")
    if set(spec.get("policyTypes") or []) != {"Ingress", "Egress"}:
        errs.append(f"{N}: policyTypes must be Ingress and Egress")
    want_in = {REDIS_PORT} | ({LINKERD_INBOUND_PORT} if linkerd else set())
    ing = spec.get("ingress") or []
    if not ing:
        errs.append(f"{N}: no ingress rule: hcgw could not reach Redis")
    for i, r in enumerate(ing):
        peers = r.get("from") or []
        if not peers or any(set(p) != {"podSelector"} or not matches(p["podSelector"], gw_labels)
                            for p in peers):
            errs.append(f"{N}: ingress[{i}] must admit the hcgw pods of this namespace alone")
        ports = {rc_port(p.get("port"), rc) for p in r.get("ports") or []}
        if ports != want_in:
            errs.append(f"{N}: ingress[{i}] must admit exactly ports {sorted(want_in)} (is "
                        f"{sorted(ports, key=str)})")
    for i, r in enumerate(spec.get("egress") or []):
        ports = {(p.get("port"), p.get("protocol", "TCP")) for p in r.get("ports") or []}
        to_ns = {((t.get("namespaceSelector") or {}).get("matchLabels") or {})
                 .get("kubernetes.io/metadata.name") for t in r.get("to") or []}
        if mesh and r.get("to") and ports and (
                (ports <= DNS_PORTS and to_ns == {"kube-system"}) or
                to_ns == {MESH_NAMESPACES[mesh]}):
            continue  # the proxy's DNS and control plane
        errs.append(f"{N}: egress[{i}]: Redis talks to no one" +
                    (f" (its {mesh} proxy: DNS and the control plane only)" if mesh else ""))

    # hcgw's NetworkPolicy lets it reach Redis (the rules are checked with hcgw's egress).
    hnp = next(o for o in by_kind["NetworkPolicy"] if o["metadata"]["name"] == "hcgw")
    seen = set()
    for r in hnp["spec"].get("egress") or []:
        seen |= {p for p, _ in egress_redis_ports(r, linkerd) or set()}
    if not want_in <= seen:
        errs.append(f"NetworkPolicy/hcgw: egress must allow the Redis pods on {sorted(want_in)}")

    if mesh == "istio":
        errs += _istio(by_kind, labels, gw_sa)
    elif mesh == "linkerd":
        errs += _linkerd(by_kind, tmpl, gw_sa)
    return errs


def rc_port(port, container):
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports") or []
                 if p.get("name") == port), port)


def _istio(by_kind, labels, gw_sa):
    errs = []
    if labels.get("sidecar.istio.io/inject") == "false":
        errs.append("istio: the Redis pod must have its sidecar (Redis's TLS is the mesh's)")
    if not [p for p in by_kind.get("PeerAuthentication", [])
            if p["spec"]["mtls"]["mode"] == "STRICT" and selects_redis(p["spec"].get("selector"))]:
        errs.append("istio: no PeerAuthentication with mtls.mode STRICT for the Redis pod")
    aps = [a for a in by_kind.get("AuthorizationPolicy", [])
           if selects_redis(a["spec"].get("selector"))]
    want = [f"cluster.local/ns/{NAMESPACE}/sa/{gw_sa}"]
    ok = bool(aps)
    for a in aps:
        for r in a["spec"]["rules"]:
            srcs = [f.get("source") or {} for f in r.get("from") or []]
            ports = [p for t in r.get("to") or [] for p in
                     (t.get("operation") or {}).get("ports") or []]
            ok &= a["spec"].get("action", "ALLOW") == "ALLOW" and bool(srcs) and \
                all(s == {"principals": want} for s in srcs) and ports == [str(REDIS_PORT)]
    if not ok:
        errs.append(f"istio: an AuthorizationPolicy for the Redis pod must admit {want} alone, "
                    f"on port {REDIS_PORT}")
    return errs


def _linkerd(by_kind, tmpl, gw_sa):
    errs = []
    ann = tmpl["metadata"].get("annotations") or {}
    if ann.get("linkerd.io/inject") != "enabled":
        errs.append("linkerd: the Redis pod lacks linkerd.io/inject: enabled (Redis's TLS is the "
                    "mesh's)")
    servers = {s["metadata"]["name"]: s for s in by_kind.get("Server", [])
               if selects_redis(s["spec"]["podSelector"])}
    if not servers or any(s["spec"].get("proxyProtocol") != "opaque" or
                          s["spec"]["port"] not in (REDIS_PORT, "redis")
                          for s in servers.values()):
        errs.append("linkerd: Redis's port needs a Server of proxyProtocol opaque")
    auths = {m["metadata"]["name"]: m for m in by_kind.get("MeshTLSAuthentication", [])}
    want = [{"kind": "ServiceAccount", "name": gw_sa, "namespace": NAMESPACE}]
    covered = set()
    for a in by_kind.get("AuthorizationPolicy", []):
        t = a["spec"]["targetRef"]
        if t["kind"] != "Server" or t["name"] not in servers:
            continue
        for r in a["spec"]["requiredAuthenticationRefs"]:
            m = auths.get(r["name"]) if r["kind"] == "MeshTLSAuthentication" else None
            spec = (m or {}).get("spec") or {}
            if spec.get("identityRefs") == want and not spec.get("identities"):
                covered.add(t["name"])
            else:
                errs.append(f"linkerd: AuthorizationPolicy/{a['metadata']['name']} must admit "
                            f"hcgw's service account alone ({want})")
    for s in servers:
        if s not in covered:
            errs.append(f"linkerd: Server/{s} has no AuthorizationPolicy admitting hcgw alone")
    return errs


# ----------------------------------------------------------------------------- compose ---
def _env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return env


def _secrets_used(svc):
    return [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets") or []]


def check_compose(doc, here, replicas, conf):
    """replicas: the names of the hcgw services; conf: their (one) parsed hcgw.conf."""
    errs = []
    services = doc.get("services") or {}
    secrets = doc.get("secrets") or {}
    for name, s in secrets.items():
        f = os.path.join(here, (s or {}).get("file", ""))
        if os.path.isfile(f):
            with open(f, encoding="utf-8") as fh:
                if THROWAWAY_MARKER not in fh.read():
                    errs.append(f"compose: secret {name}: {f} must be a throwaway (its content "
                                f"says {THROWAWAY_MARKER!r}): never a real credential in git")
    if len(replicas) < 2:
        errs.append(f"compose: at least two hcgw replicas share Redis (found {replicas})")
    rname = next((n for n, s in services.items()
                  if "hcgw-redis" in str((s or {}).get("image", ""))), None)
    if rname is None:
        return errs + ["compose: no Redis service (image hcgw-redis)"]
    r = services[rname]
    C = f"compose: {rname}"
    for p in r.get("ports") or []:
        if not str(p).startswith("127.0.0.1:"):
            errs.append(f"{C}: port {p}: Redis is for the replicas on the compose network; "
                        "publish nothing, or on 127.0.0.1 only")
    if r.get("read_only") is not True:
        errs.append(f"{C}: read_only must be true")
    if "ALL" not in (r.get("cap_drop") or []):
        errs.append(f"{C}: cap_drop must contain ALL")
    if ACL_DIR not in [str(t).split(":")[0] for t in r.get("tmpfs") or []]:
        errs.append(f"{C}: tmpfs must hold {ACL_DIR} (the rendered ACL)")
    line = (r.get("command") or []) + (r.get("entrypoint") or [])
    if any("pass" in str(a).lower() for a in line):
        errs.append(f"{C}: no password on Redis's command line")
    renv = _env(r)
    used = _secrets_used(r)
    pw = renv.get("HCGW_REDIS_PASSWORD_FILE", "")
    if pw not in [f"/run/secrets/{s}" for s in used]:
        errs.append(f"{C}: HCGW_REDIS_PASSWORD_FILE must name a secret it uses "
                    "(/run/secrets/NAME)")
    if any(k != "HCGW_REDIS_PASSWORD_FILE" and re.search("PASS|SECRET", k) for k in renv):
        errs.append(f"{C}: no password in the environment")
    if PROBE not in str((r.get("healthcheck") or {}).get("test")):
        errs.append(f"{C}: healthcheck must run {PROBE}")
    errs += check_conf_redis("compose: hcgw.conf", conf, len(replicas), rname,
                             "the hcgw services")
    gpw = conf.get(("redis", "password_file"), "")
    for name in replicas:
        if gpw not in [f"/run/secrets/{s}" for s in _secrets_used(services[name])]:
            errs.append(f"compose: {name}: redis.password_file {gpw} must be a secret it uses")
    if gpw and pw and gpw != pw:
        errs.append(f"compose: hcgw reads the Redis password from {gpw}, Redis from {pw}: one "
                    "password, one secret")
    return errs


# --------------------------------------------------------------------------- self-test ---
# check_manifests.py's self-test applies these to the renders with Redis and expects each to
# be caught: (name, mutate(docs), a phrase the problem must contain, the meshes it applies to).
def _is_redis(d):
    return (d["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "redis"


def _obj(docs, kind, redis=True):
    return next(d for d in docs if d["kind"] == kind and _is_redis(d) == redis)


def _rpod(docs):
    return _obj(docs, "Deployment")["spec"]["template"]["spec"]


def _rc(docs):
    return _rpod(docs)["containers"][0]


def _conf(docs, pattern, repl):
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    cm["data"]["hcgw.conf"] = re.sub(pattern, repl, cm["data"]["hcgw.conf"])


def _mount(docs, name, **change):
    for m in _rc(docs)["volumeMounts"]:
        if m["name"] == name:
            m.update(change)


def _hcgw_np(docs):
    return _obj(docs, "NetworkPolicy", redis=False)["spec"]


def _drop_redis_egress(docs, port=None):
    spec = _hcgw_np(docs)
    spec["egress"] = [r for r in spec["egress"] if not (
        egress_redis_ports(r, True) and (port is None or (port, "TCP") in
                                         egress_redis_ports(r, True)))]


ALL = (None, "istio", "linkerd")
K8S_MUTATIONS = [
    ("two Redis pods", lambda d: _obj(d, "Deployment")["spec"].update(replicas=2),
     "spec.replicas must be 1", ALL),
    ("Redis rolled, not recreated", lambda d: _obj(d, "Deployment")["spec"].update(
        strategy={"type": "RollingUpdate"}), "Recreate", ALL),
    ("Redis under hcgw's service account", lambda d: _rpod(d).update(
        serviceAccountName="hcgw"), "service account of its own", ALL),
    ("Redis's password in its environment", lambda d: _rc(d)["env"].append(
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": "hcgw-redis-password", "key": "password"}}}), "secret in the environment",
     ALL),
    ("Redis's password by subPath", lambda d: _mount(d, "redis-password", subPath="password"),
     "subPath", ALL),
    ("Redis's password mounted writable", lambda d: _mount(d, "redis-password",
                                                           readOnly=False), "readOnly", ALL),
    ("Redis's password on its command line", lambda d: _rc(d).update(
        args=["--requirepass", "x"]), "command line", ALL),
    ("the ACL on disk", lambda d: next(v for v in _rpod(d)["volumes"] if v["name"] == "acl")
     .update(emptyDir={}), "medium Memory", ALL),
    ("Redis's root filesystem writable", lambda d: _rc(d)["securityContext"].update(
        readOnlyRootFilesystem=False), "readOnlyRootFilesystem", ALL),
    ("Redis as root", lambda d: _rc(d)["securityContext"].update(runAsUser=0), "runAsUser", ALL),
    ("Redis's token mounted", lambda d: _rpod(d).update(automountServiceAccountToken=True),
     "automountServiceAccountToken", ALL),
    ("Redis never checked ready", lambda d: _rc(d).pop("readinessProbe"), "hcgw-redis-probe",
     ALL),
    ("Redis's Service selects hcgw", lambda d: _obj(d, "Service")["spec"].update(selector={
        "app.kubernetes.io/name": "hcgw", "app.kubernetes.io/component": "gateway"}),
     "Redis pods alone", ALL),
    ("Redis open to every pod", lambda d: _obj(d, "NetworkPolicy")["spec"]["ingress"][0].update(
        {"from": [{"podSelector": {}}]}), "hcgw pods of this namespace alone", ALL),
    ("Redis open to other namespaces", lambda d: _obj(d, "NetworkPolicy")["spec"]["ingress"][0][
        "from"][0].update(namespaceSelector={}), "hcgw pods of this namespace alone", ALL),
    ("Redis open on every port", lambda d: _obj(d, "NetworkPolicy")["spec"]["ingress"][0].pop(
        "ports"), "must admit exactly ports", ALL),
    ("Redis let out", lambda d: _obj(d, "NetworkPolicy")["spec"].setdefault("egress", []).append(
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}),
     "talks to no one", ALL),
    ("no NetworkPolicy for Redis", lambda d: d.remove(_obj(d, "NetworkPolicy")),
     "NetworkPolicy/hcgw-redis", ALL),
    ("hcgw cannot reach Redis", _drop_redis_egress, "egress must allow the Redis pods", ALL),
    ("hcgw reaches every pod on 6379", lambda d: [
        r.update(to=[{"podSelector": {}}]) for r in _hcgw_np(d)["egress"]
        if egress_redis_ports(r, True)], "only DNS", ALL),
    ("hcgw reaches Redis on every port", lambda d: [
        r.pop("ports") for r in _hcgw_np(d)["egress"] if egress_redis_ports(r, True)],
     "every port", ALL),
    ("redis.url elsewhere", lambda d: _conf(d, r"redis://hcgw-redis:", "redis://cache:"),
     "not the Redis service", ALL),
    ("database 1", lambda d: _conf(d, r"(redis://[^\"]*)/0", r"\1/1"), "database 0", ALL),
    ("the default user", lambda d: _conf(d, r"\n *username = [^\n]*", ""), "redis.username",
     ALL),
    ("the quota above the account's", lambda d: _conf(
        d, r"requests_per_minute = 120;", "requests_per_minute = 130;"), "1..120", ALL),
    ("a fallback too high for maxReplicas", lambda d: _conf(
        d, r"fallback_requests_per_minute = \d+", "fallback_requests_per_minute = 60"),
     "while Redis is away", ALL),
    ("fewer expected replicas than maxReplicas", lambda d: _conf(
        d, r"expected_replicas = \d+", "expected_replicas = 2"), "expected_replicas", ALL),
    ("hcgw's password from another Secret", lambda d: next(
        v for v in _obj(d, "Deployment", redis=False)["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "redis-password")["secret"].update(secretName="other"),
     "one password, one Secret", ALL),
    ("hcgw's password file outside the Secret", lambda d: _conf(
        d, r"password_file = \"[^\"]*\"", 'password_file = "/etc/hcgw/redis-password"'),
     "not in a mounted Secret", ALL),
    ("Redis without a sidecar", lambda d: _obj(d, "Deployment")["spec"]["template"]["metadata"][
        "labels"].update({"sidecar.istio.io/inject": "false"}), "must have its sidecar",
     ("istio",)),
    ("Redis's mTLS PERMISSIVE", lambda d: _obj(d, "PeerAuthentication")["spec"]["mtls"].update(
        mode="PERMISSIVE"), "STRICT for the Redis pod", ("istio",)),
    ("Redis open to any principal", lambda d: _obj(d, "AuthorizationPolicy")["spec"]["rules"][0][
        "from"][0]["source"].update(principals=["*"]), "alone", ("istio",)),
    ("Redis's proxy let out", lambda d: _obj(d, "NetworkPolicy")["spec"]["egress"].append(
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}),
     "talks to no one", ("istio", "linkerd")),
    ("Redis without a proxy", lambda d: _obj(d, "Deployment")["spec"]["template"]["metadata"][
        "annotations"].pop("linkerd.io/inject"), "linkerd.io/inject", ("linkerd",)),
    ("Redis's port not opaque", lambda d: _obj(d, "Server")["spec"].update(
        proxyProtocol="HTTP/1"), "opaque", ("linkerd",)),
    ("Redis open to another identity", lambda d: _obj(d, "MeshTLSAuthentication")["spec"][
        "identityRefs"].append({"kind": "ServiceAccount", "name": "web-frontend",
                                "namespace": "web"}), "alone", ("linkerd",)),
    ("Redis's inbound proxy port closed", lambda d: _obj(d, "NetworkPolicy")["spec"]["ingress"][
        0].update(ports=[{"port": "redis", "protocol": "TCP"}]), "must admit exactly ports",
     ("linkerd",)),
    ("hcgw's egress to Redis's proxy closed", lambda d: _drop_redis_egress(d, 4143),
     "egress must allow the Redis pods", ("linkerd",)),
]

# (file of deploy/redis, pattern, replacement, a phrase the problem must contain)
FILE_MUTATIONS = [
    ("redis.conf", r"protected-mode yes", "protected-mode no", "protected-mode"),
    ("redis.conf", r'save ""', "save 900 1", "save"),
    ("redis.conf", r"appendonly no", "appendonly yes", "appendonly"),
    ("redis.conf", r"maxmemory-policy volatile-lru", "maxmemory-policy noeviction",
     "maxmemory-policy"),
    ("redis.conf", r"maxmemory-policy volatile-lru", "maxmemory-policy allkeys-lru",
     "maxmemory-policy"),
    ("redis.conf", r"maxmemory-policy volatile-lru", "maxmemory-policy volatile-ttl",
     "maxmemory-policy"),
    ("redis.conf", r"maxmemory \d+mb", "maxmemory 0", "maxmemory must be set"),
    ("redis.conf", r"\Z", "\nrequirepass hunter2\n", "requirepass"),
    ("redis.conf", r"aclfile \S+", "aclfile /etc/redis/users.acl", "aclfile"),
    ("redis.conf", r"enable-debug-command no", "enable-debug-command yes",
     "enable-debug-command"),
    ("users.acl.in", r"user default off", "user default on nopass", "default user"),
    ("users.acl.in", r"\+ping", "+ping +flushall", "flushall"),
    ("users.acl.in", r"\+ping", "+ping +@admin", "only whole commands"),
    ("users.acl.in", r"\+eval ", "", "lacks ['eval']"),
    ("users.acl.in", r"\+time ", "", "lacks ['time']"),
    ("users.acl.in", r"(?m)(^user hcgw .*)~hcgw:\*", r"\1~*", "keys must be exactly"),
    ("users.acl.in", r"-@all \+eval", "+@all +eval", "start from -@all"),
    ("users.acl.in", r"#@HCGW_REDIS_PASSWORD_SHA256@", ">hunter2", "only password rule"),
    ("users.acl.in", r"#@HCGW_REDIS_PASSWORD_SHA256@", "#" + "ab" * 32, "only password rule"),
    ("users.acl.in", r"resetchannels -@all \+eval", "allchannels -@all +eval", "channel"),
    ("users.acl.in", r"\Z", "user admin on >x ~* +@all\n", "no others"),
    ("Dockerfile", r"USER 10002:10002", "USER root", "USER"),
    ("Dockerfile", r"FROM debian:bookworm-slim", "FROM redis:7", "bookworm-slim"),
    ("hcgw-redis-start", r"@HCGW_REDIS_PASSWORD_SHA256@", "@PASSWORD@", "does not fill in"),
]


def self_test_files(redis_dir, deploy_dir, src_dir, parse_conf, tmp):
    """Each FILE_MUTATIONS on a copy of deploy/redis in tmp must be caught; returns the
    number that were not."""
    import shutil
    failures = 0
    clean = check_files(redis_dir, deploy_dir, src_dir, parse_conf)
    if clean:
        print("self-test FAIL: deploy/redis must pass first:\n  " + "\n  ".join(clean))
        return 1
    for name, pattern, repl, expect in FILE_MUTATIONS:
        copy = os.path.join(tmp, "redis")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(redis_dir, copy)
        path = os.path.join(copy, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        mutated = re.sub(pattern, repl, text, count=1)
        with open(path, "w", encoding="utf-8") as f:
            f.write(mutated)
        errs = check_files(copy, deploy_dir, src_dir, parse_conf)
        hit = [e for e in errs if expect in e]
        if mutated == text or not hit:
            failures += 1
            print(f"self-test FAIL: deploy/redis/{name}: {repl.strip()!r}: no problem "
                  f"mentioning {expect!r} (got {errs})")
        else:
            print(f"self-test ok: deploy/redis/{name}: {repl.strip()!r} -> {hit[0]}")
    shutil.rmtree(os.path.join(tmp, "redis"), ignore_errors=True)
    return failures


def _svc(doc, name):
    return doc["services"][name]


# (name, mutate(compose document, folder to write stand-in files into), expected phrase)
COMPOSE_MUTATIONS = [
    ("Redis publishes its port", lambda d, t: _svc(d, "redis").update(ports=["6379:6379"]),
     "publish nothing"),
    ("Redis writable", lambda d, t: _svc(d, "redis").update(read_only=False), "read_only"),
    ("the ACL not on a tmpfs", lambda d, t: _svc(d, "redis").pop("tmpfs"), "tmpfs"),
    ("Redis's password on its command line", lambda d, t: _svc(d, "redis").update(
        command=["--requirepass", "x"]), "command line"),
    ("Redis's password in its environment", lambda d, t: _svc(d, "redis")["environment"]
     .update(REDIS_PASSWORD="x"), "environment"),
    ("Redis without its probe", lambda d, t: _svc(d, "redis").pop("healthcheck"),
     "hcgw-redis-probe"),
    ("two passwords", lambda d, t: _svc(d, "redis").update(
        secrets=["helpcrunch-api-key"],
        environment={"HCGW_REDIS_PASSWORD_FILE": "/run/secrets/helpcrunch-api-key"}),
     "one password, one secret"),
    ("one replica", lambda d, t: d["services"].pop("hcgw-2"), "at least two"),
    ("a real password in git", lambda d, t: d["secrets"]["hcgw-redis-password"].update(
        file=_write(t, ".selftest-password", "Xk3vQ9rLmT2pW8sNc4\n")), "throwaway"),
    ("a fallback too high for two replicas", lambda d, t: _conf_file(
        d, t, r"fallback_requests_per_minute = \d+", "fallback_requests_per_minute = 100"),
     "while Redis is away"),
    ("one expected replica", lambda d, t: _conf_file(
        d, t, r"expected_replicas = \d+", "expected_replicas = 1"), "expected_replicas"),
    ("Redis on the host", lambda d, t: _conf_file(
        d, t, r"redis://redis:", "redis://127.0.0.1:"), "not the Redis service"),
]


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)
    return "./" + name


def _conf_file(doc, folder, pattern, repl):
    """Point every replica at a mutated copy of its hcgw.conf."""
    for svc in doc["services"].values():
        vols = svc.get("volumes") or []
        for i, v in enumerate(vols):
            src, _, rest = str(v).partition(":")
            if rest.startswith("/etc/hcgw/hcgw.conf"):
                with open(os.path.join(folder, src), encoding="utf-8") as f:
                    text = re.sub(pattern, repl, f.read())
                vols[i] = _write(folder, ".selftest-hcgw.conf", text) + ":" + rest


def self_test_compose(path, check):
    """Each COMPOSE_MUTATIONS of the compose file must be caught by check(path)."""
    import copy
    failures = 0
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        base = yaml.safe_load(f)
    made = [os.path.join(folder, n) for n in (".selftest-compose.yaml", ".selftest-password",
                                              ".selftest-hcgw.conf")]
    try:
        for name, mutate, expect in COMPOSE_MUTATIONS:
            doc = copy.deepcopy(base)
            mutate(doc, folder)
            with open(made[0], "w", encoding="utf-8") as f:
                yaml.safe_dump(doc, f)
            errs = check(made[0])
            hit = [e for e in errs if expect in e]
            if not hit:
                failures += 1
                print(f"self-test FAIL: compose: {name}: no problem mentioning {expect!r} "
                      f"(got {errs})")
            else:
                print(f"self-test ok: compose: {name} -> {hit[0]}")
    finally:
        for m in made:
            if os.path.exists(m):
                os.unlink(m)
    return failures
