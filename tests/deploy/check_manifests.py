#!/usr/bin/env python3
"""Offline checks of deploy/: the Kubernetes objects kustomize renders, the compose file, the
systemd unit and deploy/redis. Python's standard library plus PyYAML (Debian: python3-yaml); no
cluster, no network. The rules for Redis are in check_redis.py, next to this file.

    check_manifests.py k8s RENDERED.yaml --variant VARIANT
        (VARIANT: base, istio, linkerd, redis, istio-redis, linkerd-redis)
    check_manifests.py self-test --base B.yaml [--VARIANT RENDERED.yaml]...
                                 [--unit hcgw.service] [--compose compose.yaml]
                                 [--redis-files deploy/redis] [--src src]
    check_manifests.py compose deploy/compose/compose.yaml
    check_manifests.py redis deploy/redis [src]
    check_manifests.py systemd deploy/systemd/hcgw.service

"k8s" does two things to every rendered object:
1. a schema check: apiVersion and kind are known, required fields are there, every field of
   the core kinds is a known field of the right type (a misspelt "readOnlyRootFileSystem" is
   an unknown field, not a silently ignored one), ports and quantities are well formed;
2. the rules deploy/ promises: a non-root, read-only, capability-less, RuntimeDefault-seccomp
   container; /healthz liveness and /readyz readiness on the served port; a grace period above
   the preStop pause plus server.drain_timeout_ms; the key as a read-only Secret file named by
   HCGW_API_KEY_FILE (never an environment value, never a subPath, never a Secret in git); the
   configuration from a ConfigMap at the -c path, listening on 0.0.0.0; the quota divided
   among the HorizontalPodAutoscaler's maxReplicas (requests_per_minute is a ceiling on every
   60 s window, the burst included); a NetworkPolicy letting in only labelled namespaces (and,
   under Linkerd, its inbound proxy port) and out only DNS (53) and HTTPS (443); per mesh
   overlay, its mTLS and authorization objects; and in the variants with Redis, the account's
   quota with maxReplicas x the fallback rate within the limit, and Redis's own objects
   (check_redis.py).
"self-test" removes or breaks each of those settings in turn and fails unless every
mutation is caught: the checks cannot rot into passing anything.
Each problem is one line; exit 0 when there are none.
"""
import copy
import os
import re
import sys
import tempfile

import yaml

import check_redis
from deploy_facts import (ACCOUNT_LIMIT_PER_MINUTE, DNS_PORTS, LINKERD_INBOUND_PORT,
                          MESH_NAMESPACES, NAMESPACE, matches)

CLIENT_LABEL = ("hcgw-client", "true")
HTTPS_PORTS = {(443, "TCP")}
CONF_DEFAULTS = {("listen", "address"): "127.0.0.1", ("listen", "port"): 8080,
                 ("server", "drain_timeout_ms"): 10000, ("quota", "requests_per_minute"): 120,
                 ("quota", "burst"): 10, ("", "auth"): "clients",
                 ("", "trust_mesh_identity"): False,
                 ("", "mesh_identity_header"): "x-forwarded-client-cert", "clients": []}
MESH_IDENTITY_HEADERS = {"istio": "x-forwarded-client-cert", "linkerd": "l5d-client-id"}
LINKERD_IDENTITY = "{name}.{namespace}.serviceaccount.identity.linkerd.cluster.local"
DEFAULT_CONF_PATH = "/etc/hcgw/hcgw.conf"

# ----------------------------------------------------------------------------- schema ----
# A schema is a type (str, int, bool), "quantity", "port" (int or name), "intstr", "any",
# a dict {field: schema} (fields ending in "!" are required), or a one-item list [schema].
STR, INT, BOOL, ANY = str, int, bool, "any"
MAP = {"*": STR}  # a string-to-string map (labels, annotations, data)

SELECTOR = {"matchLabels": MAP, "matchExpressions": [
    {"key!": STR, "operator!": STR, "values": [STR]}]}
META = {"name!": STR, "namespace": STR, "labels": MAP, "annotations": MAP}
PORT = "port"
PROBE = {"httpGet": {"path": STR, "port!": PORT, "scheme": STR, "httpHeaders": [
    {"name!": STR, "value!": STR}]},
    "tcpSocket": {"port!": PORT}, "exec": {"command": [STR]}, "grpc": {"port!": INT},
    "initialDelaySeconds": INT, "periodSeconds": INT, "timeoutSeconds": INT,
    "failureThreshold": INT, "successThreshold": INT, "terminationGracePeriodSeconds": INT}
SECCOMP = {"type!": STR, "localhostProfile": STR}
CONTAINER_SC = {"runAsNonRoot": BOOL, "runAsUser": INT, "runAsGroup": INT,
                "allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL,
                "privileged": BOOL, "capabilities": {"add": [STR], "drop": [STR]},
                "seccompProfile": SECCOMP, "procMount": STR}
HANDLER = {"exec": {"command": [STR]}, "httpGet": PROBE["httpGet"], "sleep": {"seconds!": INT}}
CONTAINER = {
    "name!": STR, "image!": STR, "imagePullPolicy": STR, "command": [STR], "args": [STR],
    "workingDir": STR,
    "ports": [{"name": STR, "containerPort!": INT, "protocol": STR, "hostPort": INT}],
    "env": [{"name!": STR, "value": STR, "valueFrom": ANY}], "envFrom": [ANY],
    "volumeMounts": [{"name!": STR, "mountPath!": STR, "readOnly": BOOL, "subPath": STR}],
    "resources": {"requests": {"*": "quantity"}, "limits": {"*": "quantity"}},
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE,
    "lifecycle": {"preStop": HANDLER, "postStart": HANDLER},
    "securityContext": CONTAINER_SC, "terminationMessagePolicy": STR}
POD_SPEC = {
    "containers!": [CONTAINER], "initContainers": [CONTAINER],
    "serviceAccountName": STR, "automountServiceAccountToken": BOOL,
    "terminationGracePeriodSeconds": INT, "enableServiceLinks": BOOL,
    "securityContext": {"runAsNonRoot": BOOL, "runAsUser": INT, "runAsGroup": INT,
                        "fsGroup": INT, "fsGroupChangePolicy": STR,
                        "supplementalGroups": [INT], "seccompProfile": SECCOMP},
    "topologySpreadConstraints": [{"maxSkew!": INT, "topologyKey!": STR,
                                   "whenUnsatisfiable!": STR, "labelSelector": SELECTOR}],
    "affinity": ANY, "nodeSelector": MAP, "tolerations": [ANY], "priorityClassName": STR,
    "volumes": [{"name!": STR,
                 "configMap": {"name!": STR, "defaultMode": INT, "items": [
                     {"key!": STR, "path!": STR, "mode": INT}]},
                 "secret": {"secretName!": STR, "defaultMode": INT, "optional": BOOL,
                            "items": [{"key!": STR, "path!": STR, "mode": INT}]},
                 "emptyDir": {"medium": STR, "sizeLimit": "quantity"}}]}
NP_PEER = {"namespaceSelector": SELECTOR, "podSelector": SELECTOR,
           "ipBlock": {"cidr!": STR, "except": [STR]}}
NP_PORT = {"port": PORT, "protocol": STR, "endPort": INT}

SCHEMAS = {
    ("v1", "Namespace"): {"metadata!": META},
    ("v1", "ServiceAccount"): {"metadata!": META, "automountServiceAccountToken": BOOL},
    ("v1", "ConfigMap"): {"metadata!": META, "data": MAP, "immutable": BOOL},
    ("v1", "Service"): {"metadata!": META, "spec!": {
        "type": STR, "selector!": MAP, "sessionAffinity": STR,
        "ports!": [{"name": STR, "port!": INT, "targetPort": PORT, "protocol": STR,
                    "appProtocol": STR}]}},
    ("apps/v1", "Deployment"): {"metadata!": META, "spec!": {
        "replicas": INT, "revisionHistoryLimit": INT, "minReadySeconds": INT,
        "progressDeadlineSeconds": INT, "selector!": SELECTOR,
        "strategy": {"type": STR, "rollingUpdate": {"maxUnavailable": "intstr",
                                                    "maxSurge": "intstr"}},
        "template!": {"metadata!": {"labels!": MAP, "annotations": MAP}, "spec!": POD_SPEC}}},
    ("policy/v1", "PodDisruptionBudget"): {"metadata!": META, "spec!": {
        "minAvailable": "intstr", "maxUnavailable": "intstr", "selector!": SELECTOR,
        "unhealthyPodEvictionPolicy": STR}},
    ("autoscaling/v2", "HorizontalPodAutoscaler"): {"metadata!": META, "spec!": {
        "scaleTargetRef!": {"apiVersion": STR, "kind!": STR, "name!": STR},
        "minReplicas": INT, "maxReplicas!": INT, "metrics": [ANY], "behavior": ANY}},
    ("networking.k8s.io/v1", "NetworkPolicy"): {"metadata!": META, "spec!": {
        "podSelector!": SELECTOR, "policyTypes": [STR],
        "ingress": [{"from": [NP_PEER], "ports": [NP_PORT]}],
        "egress": [{"to": [NP_PEER], "ports": [NP_PORT]}]}},
    # Mesh objects: the fields they need, checked loosely (their schemas are the mesh's).
    ("security.istio.io/v1", "PeerAuthentication"): {"metadata!": META, "spec!": {
        "selector": SELECTOR, "mtls!": {"mode!": STR}, "portLevelMtls": ANY}},
    ("security.istio.io/v1", "AuthorizationPolicy"): {"metadata!": META, "spec!": {
        "selector": SELECTOR, "action": STR, "rules!": [ANY], "targetRefs": ANY}},
    ("networking.istio.io/v1", "ServiceEntry"): {"metadata!": META, "spec!": ANY},
    ("policy.linkerd.io/v1beta1", "Server"): {"metadata!": META, "spec!": {
        "podSelector!": SELECTOR, "port!": PORT, "proxyProtocol": STR}},
    ("policy.linkerd.io/v1alpha1", "AuthorizationPolicy"): {"metadata!": META, "spec!": {
        "targetRef!": {"group": STR, "kind!": STR, "name!": STR},
        "requiredAuthenticationRefs!": [{"group": STR, "kind!": STR, "name!": STR}]}},
    ("policy.linkerd.io/v1alpha1", "MeshTLSAuthentication"): {"metadata!": META, "spec!": {
        "identities": [STR], "identityRefs": [{"kind!": STR, "name": STR,
                                                "namespace": STR}]}},
}
CLUSTER_SCOPED = {"Namespace"}
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def validate(value, schema, path, errs):
    """Checks value against schema; appends "path: reason" to errs."""
    if schema == ANY:
        return
    if schema == "quantity":
        if isinstance(value, bool) or not (isinstance(value, int) or
                                           (isinstance(value, str) and QUANTITY.match(value))):
            errs.append(f"{path}: not a quantity: {value!r}")
        return
    if schema in ("port", "intstr"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            errs.append(f"{path}: must be an integer or a name: {value!r}")
        elif schema == "port" and isinstance(value, int) and not 1 <= value <= 65535:
            errs.append(f"{path}: port out of range: {value}")
        elif schema == "port" and isinstance(value, str) and not PORT_NAME.match(value):
            errs.append(f"{path}: not a port name: {value!r}")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            errs.append(f"{path}: must be a list")
            return
        for i, item in enumerate(value):
            validate(item, schema[0], f"{path}[{i}]", errs)
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            errs.append(f"{path}: must be a mapping")
            return
        if "*" in schema:
            for k, v in value.items():
                validate(v, schema["*"], f"{path}.{k}", errs)
            return
        fields = {k.rstrip("!"): v for k, v in schema.items()}
        for k in schema:
            if k.endswith("!") and k[:-1] not in value:
                errs.append(f"{path}.{k[:-1]}: required field missing")
        for k, v in value.items():
            if k not in fields:
                errs.append(f"{path}.{k}: unknown field (misspelt? if it is a real field, add "
                            "it to the schema in tests/deploy/check_manifests.py)")
            else:
                validate(v, fields[k], f"{path}.{k}", errs)
        return
    if schema is int and (isinstance(value, bool) or not isinstance(value, int)):
        errs.append(f"{path}: must be an integer, not {value!r}")
    elif schema is not int and not isinstance(value, schema):
        errs.append(f"{path}: must be {schema.__name__}, not {value!r}")


# ----------------------------------------------------------------------------- helpers ---
CONF_VALUE = r'(\w+)\s*[=:]\s*("(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^;]+?)\s*;'


def conf_value(raw):
    raw = raw.strip()
    if raw.startswith('"'):
        return raw[1:-1]
    if raw.startswith("["):
        return re.findall(r'"((?:[^"\\]|\\.)*)"', raw)
    if raw in ("true", "false"):
        return raw == "true"
    return int(raw.rstrip("Ll"), 0)


def parse_conf(text):
    """An hcgw.conf (libconfig) read well enough for these checks, defaults filled in:
    {(group, key): value}, top-level keys under group "", and "clients": [{key: value}]."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'("(?:[^"\\]|\\.)*")|(#|//)[^\n]*', lambda m: m.group(1) or "", text)
    conf = dict(CONF_DEFAULTS)
    m = re.search(r"\bclients\s*[=:]\s*\((.*?)\)\s*;", text, re.S)
    if m:
        conf["clients"] = [{k.group(1): conf_value(k.group(2))
                            for k in re.finditer(CONF_VALUE, e.group(1))}
                           for e in re.finditer(r"\{(.*?)\}", m.group(1), re.S)]
        text = text[:m.start()] + text[m.end():]
    groups = re.compile(r"(\w+)\s*[=:]\s*\{(.*?)\}\s*;?", re.S)
    for g in groups.finditer(text):
        for k in re.finditer(CONF_VALUE, g.group(2)):
            conf[(g.group(1), k.group(1))] = conf_value(k.group(2))
    for k in re.finditer(CONF_VALUE, groups.sub("", text)):
        conf[("", k.group(1))] = conf_value(k.group(2))
    return conf


def port_number(port, container):
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def duration_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(text).strip())
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def prestop_seconds(container):
    pre = ((container.get("lifecycle") or {}).get("preStop") or {})
    if "sleep" in pre:
        return pre["sleep"].get("seconds", 0)
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0].endswith("sleep") and re.fullmatch(r"\d+", cmd[1]):
        return int(cmd[1])
    return 0


# ------------------------------------------------------------------------------ k8s ------
VARIANTS = ("base", "istio", "linkerd", "redis", "istio-redis", "linkerd-redis")
# The objects each variant has of these kinds, by name: anything else is a surprise.
NAMED_KINDS = ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
               "NetworkPolicy", "ServiceAccount")


def variant_parts(variant):
    """'istio-redis' -> ('istio', True); 'redis' -> (None, True); 'base' -> (None, False)."""
    mesh = variant.split("-")[0] if variant.split("-")[0] in MESH_NAMESPACES else None
    return mesh, variant == "redis" or variant.endswith("-redis")


def check_k8s(docs, variant):
    errs = []
    by_kind = {}
    mesh, redis = variant_parts(variant)
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            errs.append(f"document {i}: not a mapping")
            continue
        kind, api = d.get("kind"), d.get("apiVersion")
        name = (d.get("metadata") or {}).get("name")
        where = f"{kind}/{name}"
        if not kind or not api or not name:
            errs.append(f"document {i}: apiVersion, kind and metadata.name are required")
            continue
        if kind == "Secret":
            errs.append(f"{where}: a Secret in the manifests: the key must never be in git; "
                        "create it with kubectl create secret")
            continue
        schema = SCHEMAS.get((api, kind))
        if schema is None:
            errs.append(f"{where}: unknown apiVersion/kind {api} {kind} (HPA must be "
                        "autoscaling/v2, PDB policy/v1)")
            continue
        validate(d, dict(schema, **{"apiVersion!": STR, "kind!": STR}), where, errs)
        ns = d["metadata"].get("namespace")
        if kind not in CLUSTER_SCOPED and ns != NAMESPACE:
            errs.append(f"{where}: metadata.namespace is {ns!r}, not {NAMESPACE!r}")
        by_kind.setdefault(kind, []).append(d)
    if errs:
        return errs  # the rules below assume well-formed objects

    def one(kind, name="hcgw"):
        objs = [o for o in by_kind.get(kind, []) if o["metadata"]["name"] == name]
        if len(objs) != 1:
            errs.append(f"{kind}/{name}: expected exactly one, found {len(objs)}")
            return None
        return objs[0]

    for kind in NAMED_KINDS:
        want = {"hcgw"} | ({check_redis.REDIS_NAME} if redis and kind in (
            "Deployment", "Service", "NetworkPolicy", "ServiceAccount") else set())
        for o in by_kind.get(kind, []):
            if o["metadata"]["name"] not in want:
                errs.append(f"{kind}/{o['metadata']['name']}: not an object of the {variant} "
                            f"variant (expected {sorted(want)})" +
                            ("" if redis else ": Redis belongs to the overlays with -redis"))

    dep, svc, pdb, hpa, np = (one(k) for k in (
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
        "NetworkPolicy"))
    if None in (dep, svc, pdb, hpa, np):
        return errs
    tmpl = dep["spec"]["template"]
    pod_labels = tmpl["metadata"]["labels"]
    pod = tmpl["spec"]
    W = "Deployment/hcgw"
    if not matches(dep["spec"]["selector"], pod_labels):
        errs.append(f"{W}: spec.selector does not match the pod template's labels")
    containers = pod["containers"]
    gw = next((c for c in containers if c["name"] == "hcgw"), None)
    if gw is None:
        errs.append(f"{W}: no container named hcgw")
        return errs

    # The configuration: a ConfigMap mounted at the -c path.
    args = gw.get("args") or []
    conf_path = args[args.index("-c") + 1] if "-c" in args[:-1] else DEFAULT_CONF_PATH
    conf = None
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    cms = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    for m in gw.get("volumeMounts") or []:
        v = vols.get(m["name"]) or {}
        target = m["mountPath"] if m.get("subPath") else m["mountPath"].rstrip("/") + "/" + \
            os.path.basename(conf_path)
        if "configMap" in v and target == conf_path:
            cm = cms.get(v["configMap"]["name"])
            key = m.get("subPath") or os.path.basename(conf_path)
            if cm is None or key not in (cm.get("data") or {}):
                errs.append(f"{W}: volume {m['name']}: ConfigMap {v['configMap']['name']} "
                            f"with key {key} is not in the manifests")
            else:
                conf = parse_conf(cm["data"][key])
    if conf is None:
        errs.append(f"{W}: the configuration {conf_path} (hcgw -c) is not mounted from a "
                    "ConfigMap")
        conf = dict(CONF_DEFAULTS)
    if conf[("listen", "address")] not in ("0.0.0.0", "::"):
        errs.append(f"ConfigMap: listen.address is {conf[('listen', 'address')]!r}: a pod must "
                    "listen on 0.0.0.0 (or ::) to be reached")
    listen_port = conf[("listen", "port")]
    drain_s = conf[("server", "drain_timeout_ms")] / 1000.0
    clients = conf["clients"]
    if conf[("", "auth")] != "clients" or not clients:
        errs.append("ConfigMap: hcgw listens on the pod IP, so it must name its callers: "
                    'auth = "clients" with at least one client (anyone reaching the pod would '
                    "otherwise use the HelpCrunch key)")
    for c in clients:
        if not c.get("routes"):
            errs.append(f"ConfigMap: client {c.get('name')!r} has no routes")
    trust = conf[("", "trust_mesh_identity")]
    if mesh is None and trust:
        errs.append("ConfigMap: trust_mesh_identity must be false without a mesh: any caller "
                    "could send the identity header")
    if mesh is not None:
        want = MESH_IDENTITY_HEADERS[mesh]
        if trust is not True:
            errs.append(f"ConfigMap: trust_mesh_identity must be true in the {variant} overlay")
        if conf[("", "mesh_identity_header")].lower() != want:
            errs.append(f"ConfigMap: mesh_identity_header must be {want} in the {variant} "
                        "overlay")
        if any(not c.get("identity") for c in clients):
            errs.append(f"ConfigMap: every client needs an identity in the {variant} overlay")

    # Security: every pod (hcgw's, Redis's) and every container.
    for d in by_kind["Deployment"]:
        errs += check_pod_security(d)

    # The served port, the probes.
    served = {p["containerPort"] for p in gw.get("ports") or []}
    if listen_port not in served:
        errs.append(f"{W}: no containerPort for listen.port {listen_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (gw.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path:
            errs.append(f"{W}: {probe} must be an httpGet of {path} (is {get.get('path')!r})")
        elif port_number(get.get("port"), gw) != listen_port:
            errs.append(f"{W}: {probe} probes port {get.get('port')!r}, not listen.port "
                        f"{listen_port}")

    # Shutdown: the grace period covers the preStop pause and the drain.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    pause = prestop_seconds(gw)
    if not grace > pause + drain_s:
        errs.append(f"{W}: terminationGracePeriodSeconds {grace} must be above the preStop "
                    f"pause ({pause} s) plus server.drain_timeout_ms ({drain_s:g} s)")

    # The key: a read-only Secret file named by HCGW_API_KEY_FILE, nothing else.
    env = {e["name"]: e for e in gw.get("env") or []}
    if "HCGW_API_KEY" in env:
        errs.append(f"{W}: HCGW_API_KEY in the environment: the key must be a mounted file "
                    "(HCGW_API_KEY_FILE)")
    for d in by_kind["Deployment"]:
        for c in d["spec"]["template"]["spec"]["containers"]:
            cw = f"Deployment/{d['metadata']['name']}: container {c['name']}"
            for e in c.get("envFrom") or []:
                if "secretRef" in (e or {}):
                    errs.append(f"{cw}: envFrom a Secret puts a secret in the environment")
            for e in c.get("env") or []:
                if "secretKeyRef" in ((e.get("valueFrom") or {})):
                    errs.append(f"{cw}: env {e['name']} from a Secret puts a secret in the "
                                "environment")
    key_file = (env.get("HCGW_API_KEY_FILE") or {}).get("value")
    if not key_file:
        errs.append(f"{W}: HCGW_API_KEY_FILE is not set to the mounted key file")
    else:
        found = False
        for m in gw.get("volumeMounts") or []:
            v = vols.get(m["name"]) or {}
            if "secret" not in v or not key_file.startswith(m["mountPath"].rstrip("/") + "/"):
                continue
            found = True
            rel = key_file[len(m["mountPath"].rstrip("/")) + 1:]
            items = v["secret"].get("items")
            if items is not None and rel not in [it["path"] for it in items]:
                errs.append(f"{W}: HCGW_API_KEY_FILE {key_file}: no item {rel} in Secret "
                            f"volume {m['name']}")
            if m.get("readOnly") is not True:
                errs.append(f"{W}: the Secret volume {m['name']} must be mounted readOnly")
            if m.get("subPath"):
                errs.append(f"{W}: the Secret volume {m['name']} is mounted with subPath: a "
                            "rotated key would never be seen")
        if not found:
            errs.append(f"{W}: HCGW_API_KEY_FILE {key_file} is not in a mounted Secret volume")

    # Service, PDB, HPA.
    if not all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
        errs.append("Service/hcgw: selector does not match the pods")
    for p in svc["spec"]["ports"]:
        if port_number(p.get("targetPort", p["port"]), gw) != listen_port:
            errs.append(f"Service/hcgw: port {p['port']} does not target listen.port")
    if not matches(pdb["spec"]["selector"], pod_labels):
        errs.append("PodDisruptionBudget/hcgw: selector does not match the pods")
    hs = hpa["spec"]
    ref = hs["scaleTargetRef"]
    if ref["kind"] != "Deployment" or ref["name"] != dep["metadata"]["name"]:
        errs.append("HorizontalPodAutoscaler/hcgw: scaleTargetRef is not the hcgw Deployment")
    lo, hi = hs.get("minReplicas", 1), hs["maxReplicas"]
    if not 2 <= lo <= hi:
        errs.append(f"HorizontalPodAutoscaler/hcgw: need 2 <= minReplicas ({lo}) <= "
                    f"maxReplicas ({hi})")
    if "replicas" in dep["spec"]:
        errs.append(f"{W}: spec.replicas fights the HorizontalPodAutoscaler; leave it out")
    mina = pdb["spec"].get("minAvailable")
    if isinstance(mina, int) and mina >= lo:
        errs.append(f"PodDisruptionBudget/hcgw: minAvailable {mina} >= minReplicas {lo} "
                    "blocks every node drain")
    # requests_per_minute is a ceiling on every 60 s window, the burst included. With Redis
    # the bucket is the account's and the fallback rate is per replica (check_redis).
    rpm = conf[("quota", "requests_per_minute")]
    if redis:
        errs += check_redis.check_k8s(by_kind, mesh, dep, gw, conf, hi)
    elif conf.get(("redis", "url")):
        errs.append("ConfigMap: a redis group, but no Redis in the manifests: use an overlay "
                    "with Redis (overlays/redis, istio-redis, linkerd-redis)")
    elif rpm == 0 or hi * rpm > ACCOUNT_LIMIT_PER_MINUTE:
        errs.append(f"ConfigMap: quota is per process: maxReplicas {hi} x requests_per_minute "
                    f"{rpm} (the burst included) exceeds the account's "
                    f"{ACCOUNT_LIMIT_PER_MINUTE} a minute; divide it among the replicas")

    # NetworkPolicy.
    N = "NetworkPolicy/hcgw"
    ns_ = np["spec"]
    if not matches(ns_["podSelector"], pod_labels):
        errs.append(f"{N}: podSelector does not select the hcgw pods")
    if set(ns_.get("policyTypes") or []) != {"Ingress", "Egress"}:
        errs.append(f"{N}: policyTypes must be Ingress and Egress")
    ing = ns_.get("ingress") or []
    if not ing:
        errs.append(f"{N}: no ingress rule: nobody could call hcgw")
    for i, r in enumerate(ing):
        peers = r.get("from")
        if not peers:
            errs.append(f"{N}: ingress[{i}] has no from: it admits everyone")
        for p in peers or []:
            ml = (p.get("namespaceSelector") or {}).get("matchLabels") or {}
            if set(p) != {"namespaceSelector"} or ml.get(CLIENT_LABEL[0]) != CLIENT_LABEL[1]:
                errs.append(f"{N}: ingress[{i}] admits more than namespaces labelled "
                            f"{CLIENT_LABEL[0]}={CLIENT_LABEL[1]}")
        ports = {port_number(p.get("port"), gw) for p in r.get("ports") or []}
        if mesh == "linkerd" and ports != {listen_port, LINKERD_INBOUND_PORT}:
            errs.append(f"{N}: ingress[{i}] must admit listen.port {listen_port} and Linkerd's "
                        f"inbound proxy port {LINKERD_INBOUND_PORT} (meshed callers arrive "
                        "there), nothing else")
        elif mesh != "linkerd" and ports != {listen_port}:
            errs.append(f"{N}: ingress[{i}] must admit only listen.port {listen_port}")
    seen = set()
    mesh_ns = MESH_NAMESPACES.get(mesh)
    for i, r in enumerate(ns_.get("egress") or []):
        ports = {(p.get("port"), p.get("protocol", "TCP")) for p in r.get("ports") or []}
        if not ports or any(p[0] is None for p in ports):
            errs.append(f"{N}: egress[{i}] allows every port")
            continue
        to_ns = {((t.get("namespaceSelector") or {}).get("matchLabels") or {})
                 .get("kubernetes.io/metadata.name") for t in r.get("to") or []}
        if ports <= DNS_PORTS | HTTPS_PORTS:
            seen |= ports
        elif mesh_ns and r.get("to") and to_ns == {mesh_ns}:
            pass  # the mesh's control plane, in its own namespace only
        elif redis and check_redis.egress_redis_ports(r, mesh == "linkerd"):
            pass  # the Redis pods alone, on Redis's port (check_redis requires it)
        else:
            errs.append(f"{N}: egress[{i}] allows {sorted(ports, key=str)}: only DNS (53) and "
                        "HTTPS (443) may leave hcgw" +
                        (f" (and the {mesh_ns} control plane)" if mesh_ns else "") +
                        (" (and the Redis pods on 6379)" if redis else ""))
    if not DNS_PORTS <= seen:
        errs.append(f"{N}: egress must allow DNS on 53/UDP and 53/TCP")
    if not HTTPS_PORTS <= seen:
        errs.append(f"{N}: egress must allow HTTPS on 443/TCP")

    if mesh == "istio":
        errs += check_istio(by_kind, dep, pod_labels, gw, grace, pause + drain_s, clients)
    elif mesh == "linkerd":
        errs += check_linkerd(by_kind, dep, pod_labels, gw, grace, pause + drain_s, clients)
    return errs


def check_pod_security(dep):
    """The pod and every container of a Deployment: non-root, read-only, no capabilities,
    RuntimeDefault seccomp, no service-account token, resources."""
    errs = []
    W = f"Deployment/{dep['metadata']['name']}"
    pod = dep["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    if pod.get("automountServiceAccountToken") is not False:
        errs.append(f"{W}: automountServiceAccountToken must be false (it never calls the API)")
    for c in pod["containers"]:
        cw = f"{W}: container {c['name']}"
        sc = c.get("securityContext") or {}

        def eff(key):
            return sc.get(key, psc.get(key))
        if eff("runAsNonRoot") is not True:
            errs.append(f"{cw}: runAsNonRoot must be true")
        if eff("runAsUser") == 0:
            errs.append(f"{cw}: runAsUser is 0 (root)")
        if sc.get("readOnlyRootFilesystem") is not True:
            errs.append(f"{cw}: securityContext.readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errs.append(f"{cw}: securityContext.allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            errs.append(f"{cw}: securityContext.privileged must not be true")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            errs.append(f"{cw}: securityContext.capabilities.drop must contain ALL")
        if caps.get("add"):
            errs.append(f"{cw}: securityContext.capabilities.add must be empty")
        if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errs.append(f"{cw}: seccompProfile.type must be RuntimeDefault")
        res = c.get("resources") or {}
        for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
            for k in keys:
                if k not in (res.get(part) or {}):
                    errs.append(f"{cw}: resources.{part}.{k} is missing")
    return errs


def check_identities(variant, clients, admitted):
    """Every client named by identity must be a caller the mesh admits, or it is dead config
    (or a hint that the two lists drifted apart)."""
    errs = []
    for c in clients:
        if c.get("identity") and c["identity"] not in admitted:
            errs.append(f"{variant}: client {c.get('name')!r} identity {c['identity']!r} is not "
                        "admitted by the mesh's authorization policy: keep both lists in step")
    return errs


PRINCIPAL = re.compile(r"^[a-z0-9.-]+/ns/[a-z0-9-]+/sa/[a-z0-9-]+$")


def check_istio(by_kind, dep, pod_labels, gw, grace, stop_s, clients):
    errs = []
    ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
    nss = by_kind.get("Namespace") or [{}]
    ns_labels = (nss[0].get("metadata") or {}).get("labels") or {}
    if pod_labels.get("sidecar.istio.io/inject") != "true" and \
            ns_labels.get("istio-injection") != "enabled":
        errs.append("istio: no sidecar injection (pod label sidecar.istio.io/inject or "
                    "namespace label istio-injection)")
    proxy = yaml.safe_load(ann.get("proxy.istio.io/config") or "{}") or {}
    d = duration_seconds(proxy.get("terminationDrainDuration", "5s"))
    if d is None or not stop_s <= d < grace:
        errs.append(f"istio: proxy terminationDrainDuration must cover the preStop pause and "
                    f"the drain ({stop_s:g} s) and stay below the grace period ({grace} s)")
    pas = [p for p in by_kind.get("PeerAuthentication", [])
           if p["spec"]["mtls"]["mode"] == "STRICT" and
           (not p["spec"].get("selector") or matches(p["spec"]["selector"], pod_labels))]
    if not pas:
        errs.append("istio: no PeerAuthentication with mtls.mode STRICT for the hcgw pods")
    aps = [a for a in by_kind.get("AuthorizationPolicy", [])
           if matches(a["spec"].get("selector"), pod_labels)]
    if not aps:
        errs.append("istio: no AuthorizationPolicy selecting the hcgw pods")
    admitted = set()
    for a in aps:
        if a["spec"].get("action", "ALLOW") != "ALLOW":
            continue
        for i, r in enumerate(a["spec"]["rules"]):
            srcs = [f.get("source") or {} for f in r.get("from") or []]
            prins = [p for s in srcs for p in s.get("principals") or []]
            admitted |= {"spiffe://" + p for p in prins}
            if not srcs or any(set(s) != {"principals"} for s in srcs) or not prins or \
                    not all(PRINCIPAL.match(p) for p in prins):
                errs.append(f"istio: AuthorizationPolicy/{a['metadata']['name']} rules[{i}] "
                            "must admit callers by service account principals only "
                            "(<trust domain>/ns/<ns>/sa/<sa>, no wildcards)")
    return errs + check_identities("istio", clients, admitted)


def check_linkerd(by_kind, dep, pod_labels, gw, grace, stop_s, clients):
    errs = []
    ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
    if ann.get("linkerd.io/inject") != "enabled":
        errs.append("linkerd: the pod template lacks the annotation linkerd.io/inject: enabled")
    wait = ann.get("config.alpha.linkerd.io/proxy-wait-before-exit-seconds")
    if wait is None or not re.fullmatch(r"\d+", wait) or not stop_s <= int(wait) < grace:
        errs.append(f"linkerd: proxy-wait-before-exit-seconds must cover the preStop pause "
                    f"and the drain ({stop_s:g} s) and stay below the grace period ({grace} s)")
    servers = {s["metadata"]["name"]: s for s in by_kind.get("Server", [])
               if matches(s["spec"]["podSelector"], pod_labels)}
    if not servers:
        errs.append("linkerd: no Server selecting the hcgw pods")
    auths = {m["metadata"]["name"]: m for m in by_kind.get("MeshTLSAuthentication", [])}
    covered = set()
    admitted = set()
    for a in by_kind.get("AuthorizationPolicy", []):
        t = a["spec"]["targetRef"]
        if t["kind"] != "Server" or t["name"] not in servers:
            continue
        for r in a["spec"]["requiredAuthenticationRefs"]:
            m = auths.get(r["name"]) if r["kind"] == "MeshTLSAuthentication" else None
            ids = (m or {}).get("spec", {})
            names = (ids.get("identities") or []) + [i.get("name") for i in
                                                      ids.get("identityRefs") or []]
            if m is None or not names or any(n in (None, "*") for n in names) or \
                    any(i.get("kind") != "ServiceAccount" for i in ids.get("identityRefs") or []):
                errs.append(f"linkerd: AuthorizationPolicy/{a['metadata']['name']} must require "
                            "a MeshTLSAuthentication of named service accounts")
            else:
                covered.add(t["name"])
                admitted |= set(ids.get("identities") or [])
                admitted |= {LINKERD_IDENTITY.format(name=i.get("name"),
                                                     namespace=i.get("namespace", NAMESPACE))
                             for i in ids.get("identityRefs") or []}
    for s in servers:
        if s not in covered:
            errs.append(f"linkerd: Server/{s} has no AuthorizationPolicy by service account")
    return errs + check_identities("linkerd", clients, admitted)


# ---------------------------------------------------------------------------- compose ----
def check_compose(path):
    errs = []
    with open(path) as f:
        doc = yaml.safe_load(f)
    here = os.path.dirname(path)
    services = (doc or {}).get("services") or {}
    for s in ("hcgw", "hcgw-sim"):
        if not (services.get(s) or {}).get("image"):
            errs.append(f"compose: service {s} with an image is required")
    gw, sim = services.get("hcgw") or {}, services.get("hcgw-sim") or {}
    # The hcgw replicas: the services that run hcgw's image as hcgw (not as the simulator).
    replicas = [n for n, svc in services.items() if (svc or {}).get("image") == gw.get("image")
                and not (svc or {}).get("entrypoint")]
    for name, svc in services.items():
        svc = svc or {}
        for p in svc.get("ports") or []:
            if not str(p).startswith("127.0.0.1:"):
                errs.append(f"compose: {name}: port {p} must be published on 127.0.0.1 only")
        if svc.get("read_only") is not True:
            errs.append(f"compose: {name}: read_only must be true")
        if "ALL" not in (svc.get("cap_drop") or []):
            errs.append(f"compose: {name}: cap_drop must contain ALL")
    secrets = doc.get("secrets") or {}
    conf, key = None, None
    for name in replicas:
        svc = services[name]
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        if "HCGW_API_KEY" in env:
            errs.append(f"compose: {name}: the key must be a secret file, not HCGW_API_KEY")
        used = [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets") or []]
        kf = env.get("HCGW_API_KEY_FILE", "")
        if kf not in [f"/run/secrets/{s}" for s in used]:
            errs.append(f"compose: {name}: HCGW_API_KEY_FILE must name a secret it uses "
                        "(/run/secrets/NAME)")
        for s in used:
            f = os.path.join(here, (secrets.get(s) or {}).get("file", ""))
            if not os.path.isfile(f):
                errs.append(f"compose: secret {s}: file {f} is missing")
            elif kf == f"/run/secrets/{s}":
                with open(f) as fh:
                    key = fh.read().rstrip("\r\n")
        mounted = None
        for v in svc.get("volumes") or []:
            src, _, rest = str(v).partition(":")
            if rest.split(":")[0] == DEFAULT_CONF_PATH:
                mounted = src
                with open(os.path.join(here, src)) as fh:
                    conf = parse_conf(fh.read())
        if mounted is None:
            errs.append(f"compose: {name}: no configuration mounted at {DEFAULT_CONF_PATH}")
        grace = duration_seconds(svc.get("stop_grace_period", "10s"))
        if conf and (grace is None or grace <= conf[("server", "drain_timeout_ms")] / 1000):
            errs.append(f"compose: {name}: stop_grace_period must be above "
                        "server.drain_timeout_ms")
    sim_env = sim.get("environment") or {}
    if key is not None and sim_env.get("HCGW_SIM_KEY") != key:
        errs.append("compose: hcgw-sim's HCGW_SIM_KEY differs from the key hcgw is given")
    if conf is None:
        return errs
    if conf[("listen", "address")] != "0.0.0.0":
        errs.append("compose: hcgw.conf must listen on 0.0.0.0")
    if "hcgw-sim" not in str(conf.get(("upstream", "base_url"), "")):
        errs.append("compose: hcgw.conf's upstream.base_url must be the hcgw-sim service")
    if conf.get(("redis", "url")) or len(replicas) > 1:
        errs += check_redis.check_compose(doc, here, replicas, conf)
    elif conf[("quota", "requests_per_minute")] > ACCOUNT_LIMIT_PER_MINUTE:
        errs.append("compose: quota.requests_per_minute is above the account's limit")
    return errs


# ---------------------------------------------------------------------------- systemd ----
SYSTEMD_RULES = [
    ("ProtectSystem", lambda v: v == ["strict"], "ProtectSystem=strict"),
    ("NoNewPrivileges", lambda v: v == ["yes"], "NoNewPrivileges=yes"),
    ("CapabilityBoundingSet", lambda v: v == [""], "CapabilityBoundingSet= (empty)"),
    ("RestrictAddressFamilies", lambda v: v and set(" ".join(v).split()) <=
     {"AF_INET", "AF_INET6", "AF_UNIX"}, "RestrictAddressFamilies= of AF_INET, AF_INET6, AF_UNIX"),
    ("SystemCallFilter", lambda v: "@system-service" in v, "SystemCallFilter=@system-service"),
    ("Restart", lambda v: v and v[-1] in ("on-failure", "always"), "Restart=on-failure"),
    ("LoadCredential", lambda v: bool(v), "LoadCredential= for the key"),
    ("ProtectHome", lambda v: v and v[-1] in ("yes", "read-only", "tmpfs"), "ProtectHome="),
    ("PrivateTmp", lambda v: v == ["yes"], "PrivateTmp=yes"),
]


def parse_unit(text):
    unit, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        unit.setdefault((section, k.strip()), []).append(v.strip())
    return unit


def check_systemd(path):
    with open(path) as f:
        unit = parse_unit(f.read())
    errs = []
    svc = {k: v for (s, k), v in unit.items() if s == "Service"}
    for key, ok, want in SYSTEMD_RULES:
        if not ok(svc.get(key, [])):
            errs.append(f"systemd: [Service] needs {want}")
    user = (svc.get("User") or [""])[-1]
    if (svc.get("DynamicUser") or [""])[-1] != "yes" and user in ("", "root", "0"):
        errs.append("systemd: [Service] needs DynamicUser=yes or a non-root User=")
    envs = " ".join(svc.get("Environment", []))
    creds = [c.split(":")[0] for c in svc.get("LoadCredential", [])]
    if not any(f"HCGW_API_KEY_FILE=%d/{c}" in envs for c in creds):
        errs.append("systemd: Environment=HCGW_API_KEY_FILE=%d/<credential> must name the "
                    "LoadCredential")
    if re.search(r"\bHCGW_API_KEY=", envs) or svc.get("EnvironmentFile"):
        errs.append("systemd: the key must come only from LoadCredential")
    stop = duration_seconds((svc.get("TimeoutStopSec") or ["90s"])[-1] + "s"
                            if re.fullmatch(r"\d+", (svc.get("TimeoutStopSec") or ["90"])[-1])
                            else (svc.get("TimeoutStopSec") or ["90s"])[-1])
    if stop is None or stop <= CONF_DEFAULTS[("server", "drain_timeout_ms")] / 1000:
        errs.append("systemd: TimeoutStopSec must be above server.drain_timeout_ms (10 s)")
    return errs


# --------------------------------------------------------------------------- self-test ---
def _gw(docs):
    dep = _kind(docs, "Deployment")
    return dep, dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]["containers"][0]


def _kind(docs, kind):
    """The first object of a kind that is hcgw's, not Redis's."""
    return next(d for d in docs if d["kind"] == kind and not check_redis._is_redis(d))


def _conf_edit(docs, pattern, repl):
    cm = _kind(docs, "ConfigMap")
    cm["data"]["hcgw.conf"] = re.sub(pattern, repl, cm["data"]["hcgw.conf"])


def _mut(fn):
    def apply(docs):
        fn(docs, *_gw(docs))
    return apply


MUTATIONS = [
    ("runAsNonRoot removed", _mut(lambda d, dep, pod, c: (
        pod["securityContext"].pop("runAsNonRoot", None),
        c["securityContext"].pop("runAsNonRoot", None))), "runAsNonRoot"),
    ("runAsUser 0", _mut(lambda d, dep, pod, c: c["securityContext"].update(runAsUser=0)),
     "runAsUser"),
    ("readOnlyRootFilesystem removed", _mut(lambda d, dep, pod, c: c["securityContext"].pop(
        "readOnlyRootFilesystem")), "readOnlyRootFilesystem"),
    ("readOnlyRootFilesystem false", _mut(lambda d, dep, pod, c: c["securityContext"].update(
        readOnlyRootFilesystem=False)), "readOnlyRootFilesystem"),
    ("readOnlyRootFilesystem misspelt", _mut(lambda d, dep, pod, c: c["securityContext"].update(
        readOnlyRootFileSystem=c["securityContext"].pop("readOnlyRootFilesystem"))),
     "unknown field"),
    ("allowPrivilegeEscalation removed", _mut(lambda d, dep, pod, c: c["securityContext"].pop(
        "allowPrivilegeEscalation")), "allowPrivilegeEscalation"),
    ("privileged", _mut(lambda d, dep, pod, c: c["securityContext"].update(privileged=True)),
     "privileged"),
    ("drop ALL removed", _mut(lambda d, dep, pod, c: c["securityContext"]["capabilities"].update(
        drop=[])), "drop must contain ALL"),
    ("a capability added", _mut(lambda d, dep, pod, c: c["securityContext"]["capabilities"]
                                .update(add=["NET_ADMIN"])), "capabilities.add"),
    ("seccomp removed", _mut(lambda d, dep, pod, c: (
        pod["securityContext"].pop("seccompProfile", None),
        c["securityContext"].pop("seccompProfile", None))), "seccompProfile"),
    ("resources removed", _mut(lambda d, dep, pod, c: c.pop("resources")), "resources"),
    ("liveness on /readyz", _mut(lambda d, dep, pod, c: c["livenessProbe"]["httpGet"].update(
        path="/readyz")), "livenessProbe"),
    ("readiness removed", _mut(lambda d, dep, pod, c: c.pop("readinessProbe")),
     "readinessProbe"),
    ("probe on another port", _mut(lambda d, dep, pod, c: c["readinessProbe"]["httpGet"].update(
        port=9090)), "readinessProbe"),
    ("grace period too short", _mut(lambda d, dep, pod, c: pod.update(
        terminationGracePeriodSeconds=12)), "terminationGracePeriodSeconds"),
    ("drain longer than the grace period", lambda d: _conf_edit(
        d, r"drain_timeout_ms = \d+", "drain_timeout_ms = 60000"),
     "terminationGracePeriodSeconds"),
    ("key as an environment value", _mut(lambda d, dep, pod, c: c["env"].append(
        {"name": "HCGW_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": "hcgw-helpcrunch-api-key", "key": "api-key"}}})), "environment"),
    ("HCGW_API_KEY_FILE removed", _mut(lambda d, dep, pod, c: c.update(env=[
        e for e in c["env"] if e["name"] != "HCGW_API_KEY_FILE"])), "HCGW_API_KEY_FILE"),
    ("key file outside the Secret", _mut(lambda d, dep, pod, c: [
        e.update(value="/tmp/api-key") for e in c["env"] if e["name"] == "HCGW_API_KEY_FILE"]),
     "Secret volume"),
    ("Secret volume mounted writable", _mut(lambda d, dep, pod, c: [
        m.update(readOnly=False) for m in c["volumeMounts"] if m["name"] == "api-key"]),
     "readOnly"),
    ("Secret volume by subPath", _mut(lambda d, dep, pod, c: [
        m.update(subPath="api-key") for m in c["volumeMounts"] if m["name"] == "api-key"]),
     "subPath"),
    ("a Secret in the manifests", lambda d: d.append({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k", "namespace": "hcgw"},
        "stringData": {"api-key": "x"}}), "Secret in the manifests"),
    ("config not from a ConfigMap", _mut(lambda d, dep, pod, c: c.update(volumeMounts=[
        m for m in c["volumeMounts"] if m["name"] != "config"])), "ConfigMap"),
    ("config listens on loopback", lambda d: _conf_edit(
        d, r'address = "0\.0\.0\.0"', 'address = "127.0.0.1"'), "listen.address"),
    ("open to any caller", lambda d: _conf_edit(d, r'auth = "clients";', 'auth = "none";'),
     "name its callers"),
    ("no clients", lambda d: _conf_edit(d, r"(?s)clients = \(.*?\);", "clients = ();"),
     "name its callers"),
    ("identity header trusted without a mesh", lambda d: _conf_edit(
        d, r"trust_mesh_identity = false;", "trust_mesh_identity = true;"),
     "trust_mesh_identity", (None,)),
    ("token automounted", _mut(lambda d, dep, pod, c: pod.update(
        automountServiceAccountToken=True)), "automountServiceAccountToken"),
    ("quota not divided", lambda d: _conf_edit(
        d, r"requests_per_minute = \d+", "requests_per_minute = 120"), "quota is per process",
     "without redis"),
    ("HPA max raised alone", lambda d: _kind(d, "HorizontalPodAutoscaler")["spec"].update(
        maxReplicas=10), "maxReplicas"),
    ("HPA autoscaling/v1", lambda d: _kind(d, "HorizontalPodAutoscaler").update(
        apiVersion="autoscaling/v1"), "autoscaling/v2"),
    ("PDB blocks drains", lambda d: _kind(d, "PodDisruptionBudget")["spec"].update(
        minAvailable=2), "minAvailable"),
    ("egress to port 80", lambda d: _kind(d, "NetworkPolicy")["spec"]["egress"].append(
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 80, "protocol": "TCP"}]}),
     "only DNS"),
    ("egress to every port", lambda d: _kind(d, "NetworkPolicy")["spec"]["egress"].append(
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}), "every port"),
    ("no Egress policy type", lambda d: _kind(d, "NetworkPolicy")["spec"].update(
        policyTypes=["Ingress"]), "policyTypes"),
    ("no DNS egress", lambda d: _kind(d, "NetworkPolicy")["spec"].update(
        egress=_kind(d, "NetworkPolicy")["spec"]["egress"][1:]), "DNS"),
    ("ingress from everyone", lambda d: _kind(d, "NetworkPolicy")["spec"]["ingress"].append(
        {"from": [{"podSelector": {}}]}), "ingress"),
    ("ingress from unlabelled namespaces", lambda d: _kind(d, "NetworkPolicy")["spec"][
        "ingress"][0]["from"][0]["namespaceSelector"].update(matchLabels={}), "ingress"),
    ("a typo in a port", _mut(lambda d, dep, pod, c: c["ports"][0].update(containerPort="8080")),
     "must be an integer"),
]


def _tmpl(d):
    return _kind(d, "Deployment")["spec"]["template"]["metadata"]


def _MESH_MTLS(d):
    return _kind(d, "MeshTLSAuthentication")["spec"]


def _drop_kind(d, kind):
    d[:] = [x for x in d if x["kind"] != kind]


MESH_MUTATIONS = {
    "istio": [
        ("mTLS PERMISSIVE", lambda d: _kind(d, "PeerAuthentication")["spec"]["mtls"].update(
            mode="PERMISSIVE"), "STRICT"),
        ("no AuthorizationPolicy", lambda d: _drop_kind(d, "AuthorizationPolicy"),
         "AuthorizationPolicy"),
        ("any principal", lambda d: _kind(d, "AuthorizationPolicy")["spec"]["rules"][0][
            "from"][0]["source"].update(principals=["*"]), "principals"),
        ("callers by namespace, not account", lambda d: _kind(d, "AuthorizationPolicy")[
            "spec"]["rules"][0]["from"][0]["source"].update(namespaces=["web"]), "principals"),
        ("no sidecar", lambda d: (_tmpl(d)["labels"].pop("sidecar.istio.io/inject"),
                                  _kind(d, "Namespace")["metadata"]["labels"].pop(
                                      "istio-injection")), "injection"),
        ("proxy leaves before the drain", lambda d: _tmpl(d)["annotations"].update({
            "proxy.istio.io/config": "terminationDrainDuration: 5s"}), "terminationDrainDuration"),
        ("control-plane rule opened to all", lambda d: _kind(d, "NetworkPolicy")["spec"][
            "egress"][-1].pop("to"), "only DNS"),
        ("identity header not trusted", lambda d: _conf_edit(
            d, r"trust_mesh_identity = true;", "trust_mesh_identity = false;"),
         "trust_mesh_identity"),
        ("a client the mesh does not admit", lambda d: _conf_edit(
            d, r"spiffe://cluster.local/ns/crm/sa/crm-sync", "spiffe://cluster.local/ns/x/sa/y"),
         "not admitted"),
    ],
    "linkerd": [
        ("no proxy", lambda d: _tmpl(d)["annotations"].pop("linkerd.io/inject"),
         "linkerd.io/inject"),
        ("no AuthorizationPolicy", lambda d: _drop_kind(d, "AuthorizationPolicy"),
         "no AuthorizationPolicy"),
        ("any identity", lambda d: _kind(d, "MeshTLSAuthentication")["spec"].update(
            identities=["*"]), "MeshTLSAuthentication"),
        ("proxy leaves before the drain", lambda d: _tmpl(d)["annotations"].update({
            "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "2"}), "proxy-wait"),
        ("control-plane rule opened to all", lambda d: _kind(d, "NetworkPolicy")["spec"][
            "egress"][-1].pop("to"), "only DNS"),
        ("inbound proxy port closed", lambda d: _kind(d, "NetworkPolicy")["spec"]["ingress"][0]
         .update(ports=[{"port": "http", "protocol": "TCP"}]), "4143"),
        ("Istio's identity header", lambda d: _conf_edit(
            d, r'mesh_identity_header = "l5d-client-id";',
            'mesh_identity_header = "x-forwarded-client-cert";'), "mesh_identity_header"),
        ("a client the mesh does not admit", lambda d: _MESH_MTLS(d).update(identityRefs=[
            i for i in _MESH_MTLS(d)["identityRefs"] if i["name"] != "crm-sync"]),
         "not admitted"),
    ],
}


def _mutations(path, variant, mutations):
    with open(path) as f:
        base = [d for d in yaml.safe_load_all(f) if d]
    clean = check_k8s(copy.deepcopy(base), variant)
    if clean:
        print(f"self-test FAIL: the unmutated {variant} render must pass first:\n  " +
              "\n  ".join(clean))
        return 1
    failures = 0
    mesh, redis = variant_parts(variant)
    for name, mutate, expect, *only in mutations:
        if only and only[0] == "without redis" and redis:
            continue
        if only and isinstance(only[0], tuple) and mesh not in only[0]:
            continue
        docs = copy.deepcopy(base)
        mutate(docs)
        errs = check_k8s(docs, variant)
        hit = [e for e in errs if expect in e]
        if not hit:
            failures += 1
            print(f"self-test FAIL: {variant}: {name}: no problem mentioning {expect!r} "
                  f"(got {errs})")
        else:
            print(f"self-test ok: {variant}: {name} -> {hit[0]}")
    return failures


def self_test(renders, unit=None, compose=None, redis_files=None, src=None):
    """renders: {variant: rendered file}; base is required."""
    failures = _mutations(renders["base"], "base", MUTATIONS)
    for variant, mutations in MESH_MUTATIONS.items():
        if variant in renders:
            failures += _mutations(renders[variant], variant, mutations)
    for variant in ("redis", "istio-redis", "linkerd-redis"):
        if variant in renders:
            mesh, _ = variant_parts(variant)
            failures += _mutations(renders[variant], variant,
                                   MUTATIONS + MESH_MUTATIONS.get(mesh, []) +
                                   check_redis.K8S_MUTATIONS)
    if redis_files:
        deploy_dir = os.path.dirname(os.path.abspath(redis_files))
        with tempfile.TemporaryDirectory() as tmp:
            failures += check_redis.self_test_files(
                redis_files, deploy_dir, src or os.path.join(os.path.dirname(deploy_dir), "src"),
                parse_conf, tmp)
    if unit:
        with open(unit) as f:
            text = f.read()
        for key, _, want in SYSTEMD_RULES + [("DynamicUser", None, "DynamicUser"),
                                             ("TimeoutStopSec", None, "TimeoutStopSec")]:
            mutated = re.sub(rf"(?m)^{key}=.*\n", "", text)
            if key == "TimeoutStopSec":
                mutated += "\n[Service]\nTimeoutStopSec=5\n"
            with tempfile.NamedTemporaryFile("w", suffix=".service") as f:
                f.write(mutated)
                f.flush()
                errs = check_systemd(f.name)
            if not errs:
                failures += 1
                print(f"self-test FAIL: systemd without {key}: not caught")
            else:
                print(f"self-test ok: systemd without {key} -> {errs[0]}")
    if compose:
        with open(compose) as f:
            text = f.read()
        for pattern, what in ((r"(?m)^    read_only: true\n", "read_only"),
                              (r"cap_drop: \[ALL\]", "cap_drop: []"),
                              (r'"127\.0\.0\.1:8080:8080"', '"8080:8080"'),
                              (r"stop_grace_period: 15s", "stop_grace_period: 5s")):
            mutated = re.sub(pattern, what if what != "read_only" else "", text, count=1)
            tmp = os.path.join(os.path.dirname(compose), ".selftest-compose.yaml")
            with open(tmp, "w") as f:
                f.write(mutated)
            try:
                errs = check_compose(tmp)
            finally:
                os.unlink(tmp)
            if mutated == text or not errs:
                failures += 1
                print(f"self-test FAIL: compose mutation {pattern!r}: not caught")
            else:
                print(f"self-test ok: compose mutation {what!r} -> {errs[0]}")
        failures += check_redis.self_test_compose(compose, check_compose)
    return 1 if failures else 0


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    cmd, path = argv[1], argv[2]
    if cmd == "self-test":
        opts = dict(zip(argv[2::2], argv[3::2]))
        renders = {v: opts["--" + v] for v in VARIANTS if "--" + v in opts}
        if "base" not in renders:
            print("self-test needs --base RENDERED.yaml", file=sys.stderr)
            return 2
        return self_test(renders, opts.get("--unit"), opts.get("--compose"),
                         opts.get("--redis-files"), opts.get("--src"))
    if cmd == "k8s":
        variant = argv[4] if len(argv) > 4 and argv[3] == "--variant" else "base"
        with open(path) as f:
            errs = check_k8s([d for d in yaml.safe_load_all(f) if d], variant)
    elif cmd == "compose":
        errs = check_compose(path)
    elif cmd == "redis":
        deploy_dir = os.path.dirname(os.path.abspath(path))
        src_dir = argv[3] if len(argv) > 3 else os.path.join(os.path.dirname(deploy_dir), "src")
        errs = check_redis.check_files(path, deploy_dir, src_dir, parse_conf) + \
            check_redis.check_conf_pairs(deploy_dir, parse_conf)
    elif cmd == "systemd":
        errs = check_systemd(path)
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    for e in errs:
        print(f"{path}: {e}")
    if not errs:
        print(f"{path}: OK ({cmd}{' ' + argv[4] if cmd == 'k8s' and len(argv) > 4 else ''})")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
