"""Traffic routers: one module per provider behind the `Router` protocol, and the registry that names them.

Adding a provider (Gateway API HTTPRoute weights, a mesh) means adding one module here and one line in
`PROVIDERS`; the reconciler only ever sees the protocol.
"""

from __future__ import annotations

from collections.abc import Callable

from songbird.controller.routers.base import Change, Router, RouteView
from songbird.controller.routers.ingress_nginx import IngressNginxRouter

PROVIDERS: dict[str, Callable[[str], Router]] = {
    "ingress-nginx": lambda prefix: IngressNginxRouter(prefix=prefix),
}


def make_router(provider: str, *, annotation_prefix: str = "nginx.ingress.kubernetes.io") -> Router:
    try:
        factory = PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown traffic provider {provider!r} (known: {known})") from None
    return factory(annotation_prefix)


__all__ = ["PROVIDERS", "Change", "RouteView", "Router", "make_router"]
