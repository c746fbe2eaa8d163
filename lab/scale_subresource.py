"""The Deployment ``scale`` subresource as the real API server serves it, for the lab's API emulator.

kmock 0.8 has no subresource semantics (a request to ``.../deployments/NAME/scale`` would be taken as one on
the Deployment itself), so `lab.apiserver` routes GET, PATCH and PUT on it here. What a real API server does
(Kubernetes API reference, "Deployment v1 apps", operations "read/replace/patch scale of the specified
Deployment"; the autoscaling/v1 ``Scale`` kind):
- the answer is an ``autoscaling/v1`` ``Scale``: the Deployment's name, namespace, uid, resourceVersion and
  creationTimestamp, ``spec.replicas`` (the Deployment's, 1 when unset), ``status.replicas`` (the
  Deployment's ``status.replicas``, 0 when unset) and ``status.selector``, the pod selector as a label
  selector string (``app=nginx,track=stable``);
- a write changes only the Deployment's ``spec.replicas``; anything else in the body is ignored, and the
  Deployment gets a new resourceVersion (the Scale's is the Deployment's);
- a PATCH is merged into the Scale (RFC 7386, as everywhere in the emulator); a body whose
  ``metadata.resourceVersion`` is stale is refused with 409 before it reaches here (`lab.apiserver`).
Pure functions: the emulator applies them under its lock.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]


def _selector(deployment: Obj) -> str:
    labels = (((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def scale_of(deployment: Obj) -> Obj:
    """The Scale a GET of ``deployments/NAME/scale`` answers for ``deployment``."""
    meta = deployment.get("metadata") or {}
    replicas = (deployment.get("spec") or {}).get("replicas")
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": 1 if replicas is None else int(replicas)},
        "status": {
            "replicas": int((deployment.get("status") or {}).get("replicas") or 0),
            "selector": _selector(deployment),
        },
    }


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class ScaleInvalid(ValueError):
    """The written Scale has no valid ``spec.replicas`` (the API server answers 422)."""


def written(deployment: Obj, body: Obj, *, patch: bool) -> Obj:
    """The Deployment after a PATCH (``patch``) or PUT of ``body`` on its scale: only spec.replicas moves."""
    scale = _merge(scale_of(deployment), body) if patch else body
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ScaleInvalid(f"spec.replicas: Invalid value: {replicas!r}: must be a non-negative integer")
    out = copy.deepcopy(deployment)
    out.setdefault("spec", {})["replicas"] = replicas
    return out


__all__ = ["ScaleInvalid", "scale_of", "written"]
