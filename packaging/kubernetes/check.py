#!/usr/bin/env python3
"""Checks that packaging/kubernetes/rbac.yaml grants exactly what the drain uses.

nodes get/patch, pods list/get, pods/eviction create: no more (least
privilege), no less (a drain that fails on a patch at 3 a.m.).

Usage: check.py            Exit status: 0 fine, 1 a problem (printed). Needs PyYAML.
"""

import sys
from pathlib import Path

RBAC = Path(__file__).resolve().parent / "rbac.yaml"
WANT = {
    ("", "nodes"): {"get", "patch"},
    ("", "pods"): {"list", "get"},
    ("", "pods/eviction"): {"create"},
}


def main() -> int:
    import yaml

    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = [d for d in docs if d.get("kind") == "ClusterRole"]
    if len(roles) != 1:
        print(f"{RBAC}: expected one ClusterRole, found {len(roles)}")
        return 1
    have: dict = {}
    for rule in roles[0].get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                have.setdefault((group, resource), set()).update(rule.get("verbs", []))
    if have != WANT:
        print(f"{RBAC}: rules {have}, expected exactly {WANT}")
        return 1
    bindings = [d for d in docs if d.get("kind") == "ClusterRoleBinding"]
    if not any(b.get("roleRef", {}).get("name") == roles[0]["metadata"]["name"] for b in bindings):
        print(f"{RBAC}: no ClusterRoleBinding to {roles[0]['metadata']['name']}")
        return 1
    print("check.py: rbac.yaml grants exactly nodes get/patch, pods list/get, pods/eviction create")
    return 0


if __name__ == "__main__":
    sys.exit(main())
