"""The tests' name for the lab's Kubernetes API emulator (`lab.apiserver`): kmock in a thread over real HTTP.

Kept so that tests import their harness from ``tests.support``; the implementation ships with the lab,
which needs it at run time (see `lab.apiserver` for what the emulator does and does not emulate).
"""

from songbird.lab.apiserver import RESOURCES, KubeEmulator, Obj, RbacRule, SeenRequest, rbac_rules

__all__ = ["RESOURCES", "KubeEmulator", "Obj", "RbacRule", "SeenRequest", "rbac_rules"]
