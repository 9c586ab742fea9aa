"""What both deploy checkers (check_manifests.py, check_redis.py) take as given: HelpCrunch's
limit, hcgw's namespace, the ports and namespaces of DNS and of the meshes, and how a selector
selects. Python's standard library only."""

ACCOUNT_LIMIT_PER_MINUTE = 120  # HelpCrunch's documented limit, per account
NAMESPACE = "hcgw"
DNS_PORTS = {(53, "UDP"), (53, "TCP")}
MESH_NAMESPACES = {"istio": "istio-system", "linkerd": "linkerd"}
# Between meshed pods Linkerd sends to the peer's inbound proxy port, not the port asked for.
LINKERD_INBOUND_PORT = 4143


def matches(selector, labels):
    """A selector's matchLabels (non-empty) all hold in labels."""
    ml = (selector or {}).get("matchLabels") or {}
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())
