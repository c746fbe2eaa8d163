"""`RoutingModel` -> one nginx configuration file (pure: a string, no I/O).

Layout of the rendered file:
- ``load_module`` lines for the Lua module and its NDK dependency (paths given by the caller);
- one ``upstream`` per backend that has endpoints, named like ingress-nginx's upstreams
  (``<namespace>-<service>-<port>``); a backend without endpoints gets no upstream at all and the Lua
  answers 503 for it (or skips it, for a canary), as ingress-nginx's balancer does;
- one ``server`` per host on ``bind:listen_port`` selected by the Host header, plus a default server that
  answers 404 ("default backend") or serves rules without a host; each location sets ``$songbird_route``
  to its index in the generated Lua ``ROUTES`` table and proxies to ``$proxy_target``;
- a metrics server on ``bind:metrics_port``: ``/metrics`` (Prometheus text) and
  ``/songbird/generation`` (the ``generation`` of this file, so a caller can tell when a reload is live).

Locations follow the Ingress pathType: ``Exact`` -> ``location = /p``; ``Prefix`` -> ``location = /p``
and ``location /p/`` (``/`` stays ``location /``); ``ImplementationSpecific`` -> ``location /p``. When two
routes would render the same nginx location, the first (in host/path order) keeps it.

Invariants: every listener binds to ``bind`` (127.0.0.1 by default); every file nginx writes (pid, error
log, temp bodies) is under ``runtime_dir``; every string that comes from an Ingress reaches the file
escaped for its context (nginx quoted string, Lua decimal escapes, Prometheus label escaping).
"""

from __future__ import annotations

from dataclasses import dataclass

from songbird.lab.lua_source import ROUTER_LUA
from songbird.lab.model import Affinity, PathType, Route, RoutingModel


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    listen_port: int
    metrics_port: int
    runtime_dir: str
    modules: tuple[str, ...] = ()
    generation: int = 1
    bind: str = "127.0.0.1"
    worker_processes: int = 1
    # Keep constant across reloads: nginx reuses a shared zone only when its size is unchanged.
    metrics_dict: str = "16m"


def render_config(model: RoutingModel, options: RenderOptions) -> str:
    o = options
    run = o.runtime_dir.rstrip("/")
    lines: list[str] = [f"# Songbird lab data plane, generation {o.generation}; rendered by lab.render."]
    lines += [f"load_module {_q(m)};" for m in o.modules]
    lines += [
        f"worker_processes {o.worker_processes};",
        "daemon off;",
        f"pid {_q(run + '/nginx.pid')};",
        f"error_log {_q(run + '/error.log')} notice;",
        "events { worker_connections 1024; }",
        "http {",
        "  access_log off;",
        "  server_tokens off;",
        "  default_type text/plain;",
        f"  client_body_temp_path {_q(run + '/client_body')};",
        f"  proxy_temp_path {_q(run + '/proxy')};",
        f"  fastcgi_temp_path {_q(run + '/fastcgi')};",
        f"  uwsgi_temp_path {_q(run + '/uwsgi')};",
        f"  scgi_temp_path {_q(run + '/scgi')};",
        "  keepalive_timeout 60s;",
        "  keepalive_requests 10000;",
        # ingress-nginx's defaults: proxy-next-upstream "error timeout", 3 tries, 5 s connect, 60 s read.
        "  proxy_http_version 1.1;",
        '  proxy_set_header Connection "";',
        "  proxy_set_header Host $host;",
        "  proxy_next_upstream error timeout;",
        "  proxy_next_upstream_tries 3;",
        "  proxy_connect_timeout 5s;",
        "  proxy_send_timeout 60s;",
        "  proxy_read_timeout 60s;",
        f"  lua_shared_dict songbird_metrics {o.metrics_dict};",
        "  init_by_lua_block {",
        _lua_routes(model.routes),
        ROUTER_LUA,
        "  }",
        '  init_worker_by_lua_block { require("songbird").init_worker() }',
    ]
    for backend in model.backends():
        if not backend.endpoints:
            continue
        lines.append(f"  upstream {backend.upstream} {{")
        lines += [f"    server {addr} max_fails=0;" for addr in backend.endpoints]
        lines += ["    keepalive 32;", "  }"]

    by_host: dict[str, list[tuple[int, Route]]] = {}
    for index, route in enumerate(model.routes, start=1):
        by_host.setdefault(route.host, []).append((index, route))

    lines += [
        "  server {",
        f"    listen {o.bind}:{o.listen_port} default_server;",
        "    server_name _;",
    ]
    lines += _locations(by_host.pop("", []), default_server=True)
    lines.append("  }")
    for host in sorted(by_host):
        lines += ["  server {", f"    listen {o.bind}:{o.listen_port};", f"    server_name {_q(host)};"]
        lines += _locations(by_host[host], default_server=False)
        lines.append("  }")

    lines += [
        "  server {",
        f"    listen {o.bind}:{o.metrics_port};",
        '    location = /metrics { content_by_lua_block { require("songbird").metrics() } }',
        f'    location = /songbird/generation {{ return 200 "{o.generation}"; }}',
        "    location / { return 404; }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _locations(routes: list[tuple[int, Route]], *, default_server: bool) -> list[str]:
    out: list[str] = []
    taken: set[str] = set()
    for index, route in routes:
        for spec in _location_specs(route):
            if spec in taken:
                continue
            taken.add(spec)
            out += [
                f"    location {spec} {{",
                f"      set $songbird_route {index};",
                '      set $proxy_target "";',
                '      set $proxy_alternative_upstream_name "";',
                '      rewrite_by_lua_block { require("songbird").route() }',
                "      proxy_pass http://$proxy_target;",
                '      log_by_lua_block { require("songbird").log() }',
                "    }",
            ]
    if _q("/") not in taken:
        body = 'return 404 "default backend - 404\\n";' if default_server else "return 404;"
        out.append(f"    location / {{ {body} }}")
    return out


def _location_specs(route: Route) -> list[str]:
    path = route.path
    if route.path_type is PathType.EXACT:
        return [f"= {_q(path)}"]
    if route.path_type is PathType.PREFIX and path != "/":
        trimmed = path.rstrip("/")
        return [f"= {_q(trimmed)}", _q(trimmed + "/")]
    return [_q(path)]


def _lua_routes(routes: tuple[Route, ...]) -> str:
    entries = []
    for index, r in enumerate(routes, start=1):
        static_labels = ",".join(
            f'{name}="{_prom(value)}"'
            for name, value in (
                ("ingress", r.ingress),
                ("namespace", r.namespace),
                ("path", r.path),
                ("service", r.main.service),
            )
        )
        fields = [
            f"path = {_lua(r.path)}",
            f"main = {_lua(r.main.upstream)}",
            f"main_endpoints = {len(r.main.endpoints)}",
            f"main_key = {_lua(r.main.key)}",
            f"static_labels = {_lua(static_labels)}",
        ]
        if r.affinity is not None:
            fields.append(f"affinity = {_lua_affinity(r.affinity)}")
        c = r.canary
        if c is not None:
            cf = [
                f"upstream = {_lua(c.backend.upstream)}",
                f"endpoints = {len(c.backend.endpoints)}",
                f"key = {_lua(c.backend.key)}",
                f"header_value = {_lua(c.header_value)}",
                f"header_pattern = {_lua(c.header_pattern)}",
                f"weight = {c.weight}",
                f"total = {c.effective_total}",
            ]
            if c.header:
                # balancer.lua reads ngx.var["http_" .. header with "-" replaced by "_"].
                cf.append(f"header_var = {_lua('http_' + c.header.lower().replace('-', '_'))}")
            if c.cookie:
                cf.append(f"cookie_var = {_lua('cookie_' + c.cookie)}")
            if c.affinity is not None:
                cf.append(f"affinity = {_lua_affinity(c.affinity)}")
            fields.append("canary = { " + ", ".join(cf) + " }")
        entries.append(f"  [{index}] = {{ " + ", ".join(fields) + " },")
    return "ROUTES = {\n" + "\n".join(entries) + "\n}"


def _lua_affinity(a: Affinity) -> str:
    path = f", path = {_lua(a.path)}" if a.path else ""
    return f"{{ cookie = {_lua(a.cookie)}{path} }}"


_LUA_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-/:=,")


def _lua(value: str) -> str:
    """A Lua string literal: plain characters as is, every other byte as a 3-digit decimal escape."""
    out = []
    for byte in value.encode():
        ch = chr(byte)
        out.append(ch if ch in _LUA_PLAIN else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _q(value: str) -> str:
    """An nginx double-quoted string (used only where nginx does not expand variables)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prom(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
