#!/usr/bin/env python3
"""Generates the benchmark scenarios, from one description, for each proxy.

    scripts/scenario.py realistic HOSTS ROUTES UPSTREAM_PORT [--json] > config.yaml
    scripts/scenario.py realistic HOSTS ROUTES UPSTREAM_PORT --shapes > shapes.json
    scripts/scenario.py upstream UPSTREAM_PORT DIR > up.conf

"realistic": HOSTS virtual hosts (`hN.bench.example`), each its own VirtualService with ROUTES
rules mixing prefix, exact, regex and header matches, a request header set per rule and, on every
fifth rule, two weighted destinations; all destinations are STATIC ServiceEntries on
127.0.0.1:UPSTREAM_PORT. With --json every document is written as one line of JSON (the form
`kubectl get -o json` tools emit), otherwise as YAML. Documents are separated by `---`. With
--shapes, the scenario's request shapes instead, as a JSON list of [host, path, header or null]
(read by scripts/shapes-client.py). HOSTS 0 is the one-route scenario. "upstream": the nginx
configuration of the upstream every benchmark proxies to, answering `200 ok` on UPSTREAM_PORT (its
pid file and error log in DIR).

As a module (scripts/bench-suite, scripts/bench-profile): `istio_docs`, `envoy_config` and
`nginx_config` write the same scenario for Pylon, Envoy and nginx; `requests` lists request shapes
that reach every kind of rule; `upstream_config` writes the upstream; `Tls` makes the TLS scenario's
certificates and `https_gateway` terminates TLS with them.
"""

import json
import os
import subprocess
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


def istio_docs(hosts, routes, port):
    """The scenario's Istio documents (HOSTS = 0: one catch-all route to the upstream)."""
    if hosts == 0:
        vs = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "one", "namespace": "default"},
            "spec": {"hosts": ["*"], "gateways": ["bench"], "http": [{"route": [{"destination": {"host": "a.bench.internal"}}]}]},
        }
        return [gateway(), service("a", port), vs]
    return [gateway(), service("a", port), service("b", port)] + [virtual_service(h, routes) for h in range(hosts)]


class Tls:
    """A throwaway CA and an ECDSA P-256 server certificate for bench.example.com signed by it (needs
    the openssl command)."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.ca, self.cert, self.key = f"{folder}/ca.crt", f"{folder}/site.crt", f"{folder}/site.key"

        def openssl(*argv):
            subprocess.run(["openssl", *argv], check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=bench-ca",
                "-keyout", f"{folder}/ca.key", "-out", self.ca)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=bench.example.com",
                "-keyout", self.key, "-out", f"{folder}/site.csr")
        with open(f"{folder}/ext", "w") as f:
            f.write("subjectAltName=DNS:bench.example.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", f"{folder}/site.csr", "-CA", self.ca, "-CAkey", f"{folder}/ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{folder}/ext", "-out", self.cert)


def https_gateway(docs, tls):
    """Turns the Gateway of DOCS into one HTTPS server on 443 for every name (the load tools send the
    address, no SNI), terminating TLS with the certificate of TLS (a `Tls`)."""
    for d in docs:
        if d["kind"] == "Gateway":
            d["spec"]["servers"] = [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "bind": "127.0.0.1", "hosts": ["*"],
                                     "tls": {"mode": "SIMPLE", "serverCertificate": tls.cert, "privateKey": tls.key}}]
    return docs


def requests(hosts, routes):
    """(host, path, header) request shapes reaching every kind of rule across the hosts."""
    if hosts == 0:
        return [("bench.example", "/", None)]
    out = []
    for h in range(0, hosts, max(1, hosts // 8)):
        for r in range(routes - 1):
            kind = r % 4
            host = f"h{h}.bench.example"
            if kind == 0:
                out.append((host, f"/api/v{r}/x", None))
            elif kind == 1:
                out.append((host, f"/exact/{r}", None))
            elif kind == 2:
                out.append((host, f"/items/42/r{r}", None))
            else:
                out.append((host, "/tenant/x", ("x-tenant", f"t{r}")))
    return out


def envoy_config(hosts, routes, listen_port, up_port, admin_port):
    """The scenario as Envoy configuration (JSON is YAML): what Istio's gateway would be given."""
    def envoy_route(h, r):
        kind = r % 4
        if kind == 0:
            match = {"prefix": f"/api/v{r}/"}
        elif kind == 1:
            match = {"path": f"/exact/{r}"}
        elif kind == 2:
            match = {"safe_regex": {"regex": f"/items/[0-9]+/r{r}"}}
        else:
            match = {"prefix": "/tenant", "headers": [{"name": "x-tenant", "string_match": {"exact": f"t{r}"}}]}
        if r % 5 == 0:
            action = {"weighted_clusters": {"clusters": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]}}
        else:
            action = {"cluster": "a"}
        action["timeout"] = "0s"
        return {
            "match": match,
            "route": action,
            "request_headers_to_add": [
                {"header": {"key": "x-route", "value": f"h{h}-r{r}"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            ],
        }

    catch_all = {"match": {"prefix": "/"}, "route": {"cluster": "a", "timeout": "0s"}}
    if hosts == 0:
        vhosts = [{"name": "all", "domains": ["*"], "routes": [catch_all]}]
    else:
        vhosts = [
            {"name": f"h{h}", "domains": [f"h{h}.bench.example"], "routes": [envoy_route(h, r) for r in range(routes - 1)] + [catch_all]}
            for h in range(hosts)
        ]

    def cluster(name):
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": up_port}}}}]}],
            },
        }

    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "route_config": {"virtual_hosts": vhosts},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [cluster("a"), cluster("b")],
        },
    }


def nginx_main(workdir, name):
    """The start of an nginx configuration for a benchmark: one worker in the foreground, its pid
    file and error log in WORKDIR named NAME, no access log, kept-alive connections kept; the
    `http` block is left open."""
    return f"""worker_processes 1;
master_process off;
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.err warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 10000000;
"""


def upstream_config(port, workdir):
    """The upstream every benchmark proxies to: nginx answering `200 ok` to anything on
    127.0.0.1:PORT (its pid file and error log in WORKDIR)."""
    return nginx_main(workdir, "up") + f"""  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
"""


def nginx_config(hosts, routes, listen_port, up_port, workdir):
    """The scenario as nginx configuration (one worker): locations for the path matches, a map per
    host for the header match, `proxy_set_header` for the header operation. Weighted splits go to
    the one upstream (both destinations are the same endpoint anyway)."""
    head = nginx_main(workdir, "nginx") + f"  upstream up {{ server 127.0.0.1:{up_port}; keepalive 256; }}\n"
    proxy = "proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    body = []
    if hosts == 0:
        body.append(f"  server {{ listen 127.0.0.1:{listen_port} reuseport backlog=4096; location / {{ {proxy} }} }}")
    for h in range(hosts):
        tenants = " ".join(f"t{r} h{h}-r{r};" for r in range(routes - 1) if r % 4 == 3)
        body.append(f"  map $http_x_tenant $tenant_h{h} {{ default \"\"; {tenants} }}")
        locs = []
        for r in range(routes - 1):
            kind = r % 4
            if kind == 0:
                locs.append(f"location /api/v{r}/ {{ proxy_set_header x-route h{h}-r{r}; {proxy} }}")
            elif kind == 1:
                locs.append(f"location = /exact/{r} {{ proxy_set_header x-route h{h}-r{r}; {proxy} }}")
            elif kind == 2:
                locs.append(f"location ~ ^/items/[0-9]+/r{r}$ {{ proxy_set_header x-route h{h}-r{r}; {proxy} }}")
        locs.append(f"location /tenant {{ proxy_set_header x-route $tenant_h{h}; {proxy} }}")
        locs.append(f"location / {{ {proxy} }}")
        body.append(f"  server {{ listen 127.0.0.1:{listen_port}; server_name h{h}.bench.example; " + " ".join(locs) + " }")
    if hosts:
        body.insert(0, f"  server {{ listen 127.0.0.1:{listen_port} reuseport backlog=4096 default_server; return 404; }}")
        body.insert(0, "  server_names_hash_max_size 65536; server_names_hash_bucket_size 128; variables_hash_max_size 4096;")
    return head + "\n".join(body) + "\n}\n"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    as_json = "--json" in sys.argv
    if len(args) == 3 and args[0] == "upstream":
        sys.stdout.write(upstream_config(int(args[1]), args[2]))
        return
    if len(args) != 4 or args[0] != "realistic":
        sys.exit(__doc__)
    hosts, routes, port = int(args[1]), int(args[2]), int(args[3])
    if "--shapes" in sys.argv:
        json.dump(requests(hosts, routes), sys.stdout)
        return
    docs = istio_docs(hosts, routes, port)
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
