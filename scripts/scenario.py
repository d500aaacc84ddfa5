#!/usr/bin/env python3
"""Generates the benchmark scenarios' Istio configuration.

    scripts/scenario.py realistic HOSTS ROUTES UPSTREAM_PORT [--json] > config.yaml

"realistic": HOSTS virtual hosts (`hN.bench.example`), each its own VirtualService with ROUTES
rules mixing prefix, exact, regex and header matches, a request header set per rule and, on every
fifth rule, two weighted destinations; all destinations are STATIC ServiceEntries on
127.0.0.1:UPSTREAM_PORT. With --json every document is written as one line of JSON (the form
`kubectl get -o json` tools emit), otherwise as YAML. Documents are separated by `---`.
"""

import json
import sys


def gateway():
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "bind": "127.0.0.1", "hosts": ["*"]}],
        },
    }


def service(name, port):
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [f"{name}.bench.internal"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "ports": {"http": port}}],
        },
    }


def rule(h, r):
    """Rule r of host h: one of four match shapes, a request header, sometimes a weighted split."""
    kind = r % 4
    if kind == 0:
        match = {"uri": {"prefix": f"/api/v{r}/"}}
    elif kind == 1:
        match = {"uri": {"exact": f"/exact/{r}"}}
    elif kind == 2:
        match = {"uri": {"regex": f"/items/[0-9]+/r{r}"}}
    else:
        match = {"uri": {"prefix": "/tenant"}, "headers": {"x-tenant": {"exact": f"t{r}"}}}
    if r % 5 == 0:
        route = [
            {"destination": {"host": "a.bench.internal"}, "weight": 90},
            {"destination": {"host": "b.bench.internal"}, "weight": 10},
        ]
    else:
        route = [{"destination": {"host": "a.bench.internal"}}]
    return {"match": [match], "route": route, "headers": {"request": {"set": {"x-route": f"h{h}-r{r}"}}}}


def virtual_service(h, routes):
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": f"h{h}", "namespace": "default"},
        "spec": {
            "hosts": [f"h{h}.bench.example"],
            "gateways": ["bench"],
            "http": [rule(h, r) for r in range(routes - 1)] + [{"route": [{"destination": {"host": "a.bench.internal"}}]}],
        },
    }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    as_json = "--json" in sys.argv
    if len(args) != 4 or args[0] != "realistic":
        sys.exit(__doc__)
    hosts, routes, port = int(args[1]), int(args[2]), int(args[3])
    docs = [gateway(), service("a", port), service("b", port)] + [virtual_service(h, routes) for h in range(hosts)]
    if as_json:
        sys.stdout.write("\n---\n".join(json.dumps(d, separators=(",", ":")) for d in docs) + "\n")
    else:
        sys.stdout.write("---\n".join(to_yaml(d) for d in docs))


def to_yaml(value, indent=0):
    """Block YAML for dicts and lists of scalars, dicts and lists (enough for these documents)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {scalar(v)}")
    else:
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                lines.append(f"{pad}- {scalar(item)}")
    return "\n".join(lines) + ("\n" if indent == 0 else "")


def scalar(v):
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


if __name__ == "__main__":
    main()
