#!/usr/bin/env python3
"""Validates YAML streams of manifests exactly as check.py validates the charts' renders:
kubernetes-validate in strict mode for every version in check.KUBE_VERSIONS (an unknown kind
fails unless it is an allow-listed custom resource), then check.check_policies (storekeeper sets
existingSecret, so no Secret may render).

Usage: validate_stream.py FILE...   ('-' reads stdin). Comments and empty documents are skipped,
so `storekeeper render <store>` output can be passed as it is. Prints one line per stream and
exits 1 on any failure. tests/first_run.rs runs it with .tools/venv/bin/python
(scripts/chartcheck/venv).
"""
from __future__ import annotations

import sys

import yaml

from check import KUBE_VERSIONS, Failures, check_policies, validate_docs


def main(names: list[str]) -> int:
    if not names:
        print(__doc__, file=sys.stderr)
        return 2
    fails = Failures()
    for name in names:
        text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
        try:
            docs = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as e:
            fails.add(name, f"not YAML: {e}")
            continue
        if not docs:
            fails.add(name, "no documents")
            continue
        counts = {v: 0 for v in KUBE_VERSIONS}
        validate_docs(docs, name, fails, counts)
        containers = check_policies(docs, name, fails, expect_fallback_secret=False)
        valid = ", ".join(f"Kubernetes {v}: {counts[v]} valid (strict)" for v in KUBE_VERSIONS)
        print(f"{name}: {len(docs)} documents; {valid}; {containers} containers policy-checked")
    return 1 if fails.items else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
