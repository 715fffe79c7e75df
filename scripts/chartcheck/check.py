#!/usr/bin/env python3
"""Offline validation of the store charts (run through scripts/check-charts).

1. `helm lint --strict` of every chart with every helm, for each environment values file.
2. `helm template` of every tests/golden/<engine>--<store>.values.json x {values-local.yaml,
   values-prod.yaml} x every helm.
3. Every rendered document validated by kubernetes-validate in strict mode for each Kubernetes
   version in KUBE_VERSIONS; an unknown kind fails unless it is in ALLOWED_UNKNOWN_KINDS.
4. Policy tests over the rendered output (see check_policies), plus the credential fallback:
   no Secret renders when existingSecret is set; exactly the fallback Secret renders when it is "".
5. Backups (backups.py): every golden store again with the backup values storekeeper adds
   (tests/golden/*.backup.json), steady state and first install from a snapshot.

Exits non-zero on any failure and prints what it checked.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
import kubernetes_validate.utils as kv

ROOT = Path(__file__).resolve().parents[2]
# STOREKEEPER_CHECK_CHARTS_DIR checks another copy of the charts (e.g. an older revision).
CHARTS = Path(os.environ.get("STOREKEEPER_CHECK_CHARTS_DIR") or ROOT / "charts")
GOLDEN = ROOT / "tests" / "golden"
ENVIRONMENTS = ("local", "prod")
KUBE_VERSIONS = ("1.29", "1.33")
# Custom resources we may render or reference; no schema ships for them.
ALLOWED_UNKNOWN_KINDS = {
    ("cert-manager.io", "Certificate"),
    ("cert-manager.io", "Issuer"),
    ("cert-manager.io", "ClusterIssuer"),
    ("cert-manager.io", "CertificateRequest"),
    ("acme.cert-manager.io", "Challenge"),
    ("acme.cert-manager.io", "Order"),
}
SECRET_NAME = "storekeeper-credentials"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
CREDENTIAL_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|_KEY$|_SALT$|CREDENTIAL)", re.I)
# URLs with inline credentials (scheme://user:pass@host) where the password is not a $(VAR) reference.
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:(?!\$\()[^@\s/]+@", re.I)
# Random-looking literals: long mixed-case alphanumerics with digits that are not hex digests.
HIGH_ENTROPY = re.compile(r"[A-Za-z0-9+/=_-]{24,}")

# Make repeated validations cheap: kubernetes-validate reloads the schema files on every call.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")
        print(f"  FAIL {where}: {what}")


def helms() -> dict[str, str]:
    found = {}
    for label, env, default in (("helm3", "STOREKEEPER_TEST_HELM3", ".tools/helm3"),
                                ("helm4", "STOREKEEPER_TEST_HELM4", ".tools/helm4")):
        path = os.environ.get(env) or str(ROOT / default)
        if not os.access(path, os.X_OK):
            sys.exit(f"check-charts: {label} not found: set {env} or install {default}")
        found[label] = path
    return found


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def golden_files() -> list[tuple[str, str, Path]]:
    out = []
    for path in sorted(GOLDEN.glob("*.values.json")):
        stem = path.name[: -len(".values.json")]
        if "--" not in stem:
            sys.exit(f"check-charts: {path.name}: expected <engine>--<store>.values.json")
        engine, store = stem.split("--", 1)
        if not (CHARTS / f"{engine}-store").is_dir():
            sys.exit(f"check-charts: {path.name}: no chart charts/{engine}-store")
        out.append((engine, store, path))
    if not out:
        sys.exit("check-charts: no tests/golden/*.values.json")
    return out


def template(helm: str, release: str, chart: Path, files: list[Path], extra: list[str] = ()) -> list[dict]:
    cmd = [helm, "template", release, str(chart), "--namespace", f"store-{release}",
           "--kube-version", "1.33.0"]
    for f in files:
        cmd += ["-f", str(f)]
    cmd += list(extra)
    res = run(cmd)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip() or res.stdout.strip())
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if kind in WORKLOAD_KINDS:
        return spec.get("template", {}).get("spec")
    return None


def walk_strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def looks_random(token: str) -> bool:
    if re.fullmatch(r"[0-9a-f]+", token):  # hex digests (checksums, hashes)
        return False
    if "/" in token or "." in token:  # paths, image names
        return False
    classes = sum(bool(re.search(p, token)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return classes == 3


def check_policies(docs: list[dict], where: str, fails: Failures, expect_fallback_secret: bool) -> int:
    """Returns the number of containers checked."""
    containers_checked = 0
    kinds = [d.get("kind") for d in docs]
    for needed in ("ResourceQuota", "LimitRange"):
        if needed not in kinds:
            fails.add(where, f"no {needed}")
    default_deny = [d for d in docs if d.get("kind") == "NetworkPolicy"
                    and d["spec"].get("podSelector") in ({}, None)
                    and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
                    and not d["spec"].get("ingress") and not d["spec"].get("egress")]
    if not default_deny:
        fails.add(where, "no default-deny NetworkPolicy (podSelector {}, Ingress+Egress, no rules)")
    quota = next((d for d in docs if d.get("kind") == "ResourceQuota"), None)
    if quota:
        for key in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "requests.storage",
                    "persistentvolumeclaims", "pods"):
            if key not in quota["spec"].get("hard", {}):
                fails.add(where, f"ResourceQuota lacks {key}")

    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        psc = spec.get("securityContext") or {}
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fails.add(where, f"{name}: pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            fails.add(where, f"{name}: automountServiceAccountToken is not false")
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                containers_checked += 1
                cname = f"{name} {group}/{c['name']}"
                res = c.get("resources") or {}
                for part in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if r not in (res.get(part) or {}):
                            fails.add(where, f"{cname}: no {part}.{r}")
                sc = c.get("securityContext") or {}
                if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                    fails.add(where, f"{cname}: runAsNonRoot not set")
                uid = sc.get("runAsUser", psc.get("runAsUser"))
                if uid == 0:
                    fails.add(where, f"{cname}: runs as uid 0")
                if sc.get("allowPrivilegeEscalation") is not False:
                    fails.add(where, f"{cname}: allowPrivilegeEscalation is not false")
                if sc.get("privileged"):
                    fails.add(where, f"{cname}: privileged")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    fails.add(where, f"{cname}: capabilities.drop lacks ALL")
                if (sc.get("capabilities") or {}).get("add"):
                    fails.add(where, f"{cname}: adds capabilities")
                if "readOnlyRootFilesystem" not in sc:
                    fails.add(where, f"{cname}: readOnlyRootFilesystem not stated")
                if doc["kind"] in LONG_RUNNING_KINDS and group == "containers":
                    for probe in ("readinessProbe", "livenessProbe"):
                        if probe not in c:
                            fails.add(where, f"{cname}: no {probe}")
                for env in c.get("env") or []:
                    if CREDENTIAL_ENV.search(env["name"]) and "value" in env:
                        fails.add(where, f"{cname}: credential-like env {env['name']} has a literal value")
                    if "valueFrom" in env and "secretKeyRef" in env["valueFrom"]:
                        ref = env["valueFrom"]["secretKeyRef"]["name"]
                        if ref != expected_secret_name(docs):
                            fails.add(where, f"{cname}: env {env['name']} reads Secret {ref}")

    # Credentials: no Secret with data except the lookup fallback, and no literal anywhere.
    secrets = [d for d in docs if d.get("kind") == "Secret"]
    if expect_fallback_secret:
        if len(secrets) != 1 or secrets[0]["metadata"]["name"] != SECRET_NAME:
            fails.add(where, f"fallback path: expected exactly the Secret {SECRET_NAME}, got {[s['metadata']['name'] for s in secrets]}")
        elif secrets[0]["metadata"].get("annotations", {}).get("helm.sh/resource-policy") != "keep":
            fails.add(where, "fallback Secret lacks helm.sh/resource-policy: keep")
    elif secrets:
        fails.add(where, f"existingSecret set but Secrets rendered: {[s['metadata']['name'] for s in secrets]}")
    for doc in docs:
        if doc.get("kind") == "Secret":
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        for path, text in walk_strings(doc):
            if URL_WITH_PASSWORD.search(text):
                fails.add(where, f"{name}{path}: URL with an inline password")
            if re.search(r"(?i)(password|passwd|secret)\s*[:=]\s*['\"]?(?!\$)[A-Za-z0-9!@#%^&*_+-]{6,}", text) \
                    and not re.search(r"(?i)secret(KeyRef|Name)", text):
                fails.add(where, f"{name}{path}: password-like literal")
            for token in HIGH_ENTROPY.findall(text):
                if looks_random(token):
                    fails.add(where, f"{name}{path}: random-looking literal {token[:6]}...")
    return containers_checked


SUFFIXES = {"m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q) -> float:
    text = str(q)
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * SUFFIXES[suffix]
    return float(text)


# Pods that run to completion: Jobs (the setup Job), CronJobs (WP-Cron, backups) and cert-manager's
# solver. A quota that has no room for one of them delays it, it does not lose it: the Job
# controller retries the pod's creation until it fits (within activeDeadlineSeconds), CronJob
# runs wait behind each other, cert-manager creates its solver again. So they are counted as the
# largest of them, not their sum: what must fit is every long-running pod (a rejected Deployment
# or StatefulSet pod is an outage) plus any one of these, or that one could never run. The sum is
# shown too ("all at once"), for the rare moment they coincide.
RUN_TO_COMPLETION = {"Job", "CronJob", "acme-solver"}


def check_quota_fit(docs: list[dict], where: str, fails: Failures) -> str:
    """The long-running pods plus the largest run-to-completion pod (see RUN_TO_COMPLETION;
    a cert-manager solver pod when TLS is on) must fit the ResourceQuota, or pods are rejected.
    Returns a one-line summary."""
    quota = next((d for d in docs if d.get("kind") == "ResourceQuota"), None)
    limit_range = next((d for d in docs if d.get("kind") == "LimitRange"), None)
    if not quota or not limit_range:
        return "no quota"
    hard = quota["spec"]["hard"]
    lr = next(l for l in limit_range["spec"]["limits"] if l["type"] == "Container")
    pods = []  # (name, replicas, effective {requests.cpu: ..., ...})
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        replicas = doc["spec"].get("replicas", 1) if doc["kind"] != "Job" else doc["spec"].get("parallelism", 1)
        eff = {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                def amount(c):
                    return quantity(((c.get("resources") or {}).get(part) or {}).get(r, 0))
                total = sum(amount(c) for c in spec.get("containers") or [])
                init = max([amount(c) for c in spec.get("initContainers") or []] or [0])
                eff[f"{part}.{r}"] = max(total, init)
        pods.append((f"{doc['kind']}/{doc['metadata']['name']}", replicas, eff))
    tls = any(d.get("kind") == "Ingress" and d["spec"].get("tls") for d in docs)
    if tls:  # cert-manager's HTTP-01 solver: no resources of its own, gets the LimitRange defaults
        pods.append(("acme-solver", 1, {
            "requests.cpu": quantity(lr["defaultRequest"]["cpu"]), "requests.memory": quantity(lr["defaultRequest"]["memory"]),
            "limits.cpu": quantity(lr["default"]["cpu"]), "limits.memory": quantity(lr["default"]["memory"])}))
    used, at_once = {}, {}
    for key in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory"):
        running = sum(n * eff[key] for p, n, eff in pods if p.split("/")[0] not in RUN_TO_COMPLETION)
        finite = [n * eff[key] for p, n, eff in pods if p.split("/")[0] in RUN_TO_COMPLETION]
        used[key] = running + max(finite, default=0)
        at_once[key] = running + sum(finite)
        if used[key] > quantity(hard[key]) + 1e-9:
            fails.add(where, f"pods need {key}={used[key]:g} > quota {hard[key]} ({', '.join(p for p, _, _ in pods)})")
    npods = sum(n for _, n, _ in pods)
    if npods > int(quantity(hard["pods"])):
        fails.add(where, f"{npods} pods > quota pods {hard['pods']}")
    pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
    storage = sum(quantity(p["spec"]["resources"]["requests"]["storage"]) for p in pvcs)
    if len(pvcs) > int(quantity(hard["persistentvolumeclaims"])):
        fails.add(where, f"{len(pvcs)} PVCs > quota {hard['persistentvolumeclaims']}")
    if storage > quantity(hard["requests.storage"]):
        fails.add(where, f"PVCs request {storage / 2**30:g}Gi > quota {hard['requests.storage']}")
    return (f"quota fit: {npods} pods, requests cpu {used['requests.cpu']:g}/{hard['requests.cpu']} "
            f"mem {used['requests.memory'] / 2**30:.2f}Gi/{hard['requests.memory']}, limits cpu "
            f"{used['limits.cpu']:g}/{hard['limits.cpu']} (all at once {at_once['limits.cpu']:g}) "
            f"mem {used['limits.memory'] / 2**30:.2f}Gi/{hard['limits.memory']}, "
            f"storage {storage / 2**30:g}Gi/{hard['requests.storage']}")


def expected_secret_name(docs: list[dict]) -> str:
    return expected_secret_name.current  # set by the caller


expected_secret_name.current = SECRET_NAME


def validate_docs(docs: list[dict], where: str, fails: Failures, counts: dict[str, int]) -> None:
    for doc in docs:
        group = doc.get("apiVersion", "").split("/")[0] if "/" in doc.get("apiVersion", "") else ""
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
                counts[version] += 1
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                fails.add(where, f"{name} invalid for Kubernetes {version}: {path}: {e.message}")
            except kv.SchemaNotFoundError:
                if (group, doc.get("kind")) in ALLOWED_UNKNOWN_KINDS:
                    counts[f"{version}-allowed-unknown"] = counts.get(f"{version}-allowed-unknown", 0) + 1
                else:
                    fails.add(where, f"{name}: unknown kind {doc.get('apiVersion')}/{doc.get('kind')} for Kubernetes {version}")


def self_test(docs: list[dict], fails: Failures) -> None:
    """The policy checker must catch what it claims to catch."""
    mutations = {
        "container without limits": lambda ds: next(c for d in ds if pod_spec(d) for c in pod_spec(d)["containers"]).pop("resources"),
        "privilege escalation": lambda ds: next(c for d in ds if pod_spec(d) for c in pod_spec(d)["containers"])["securityContext"].update(allowPrivilegeEscalation=True),
        "no default deny": lambda ds: ds.remove(next(d for d in ds if d["kind"] == "NetworkPolicy" and d["spec"].get("podSelector") == {} and not d["spec"].get("egress"))),
        "no quota": lambda ds: ds.remove(next(d for d in ds if d["kind"] == "ResourceQuota")),
        "literal password env": lambda ds: next(c for d in ds if pod_spec(d) for c in pod_spec(d)["containers"]).setdefault("env", []).append({"name": "DB_PASSWORD", "value": "hunter2hunter2"}),
        "rendered Secret": lambda ds: ds.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {"a": "b"}}),
        "random literal": lambda ds: ds[0].setdefault("metadata", {}).setdefault("annotations", {}).update(x="Zq8rT2mWx9LpA4vN7bKc3HsE"),
    }
    for label, mutate in mutations.items():
        mutated = copy.deepcopy(docs)
        mutate(mutated)
        probe = Failures()
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()):
            check_policies(mutated, "self-test", probe, expect_fallback_secret=False)
        if not probe.items:
            fails.add("self-test", f"policy checker missed: {label}")
    print(f"  policy self-test: {len(mutations)} injected violations, each caught" if not any(
        f.startswith("self-test") for f in fails.items) else "  policy self-test: FAILED")


def install_checks(helm: dict[str, str], goldens, fails: Failures) -> None:
    """Optional: with STOREKEEPER_CHARTS_KUBECONFIG set (e.g. the testbed's `serve` example or a
    throw-away k3d cluster), install every golden store with values-local then upgrade it with
    values-prod, `--wait`, with each helm, into namespaces store-<store>-<helm>."""
    kubeconfig = os.environ.get("STOREKEEPER_CHARTS_KUBECONFIG")
    if not kubeconfig:
        print("== install --wait: skipped (set STOREKEEPER_CHARTS_KUBECONFIG to a test cluster to run it)")
        return
    print(f"== install --wait into {kubeconfig}")
    kubectl = os.environ.get("STOREKEEPER_TEST_KUBECTL") or str(ROOT / ".tools/kubectl")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "KUBECONFIG": kubeconfig, "HELM_CACHE_HOME": f"{home}/cache",
               "HELM_CONFIG_HOME": f"{home}/config", "HELM_DATA_HOME": f"{home}/data"}
        for engine, store, golden in goldens:
            chart = CHARTS / f"{engine}-store"
            for label, binary in helm.items():
                ns = f"store-{store}-{label}"
                subprocess.run([kubectl, "create", "namespace", ns], env=env, capture_output=True)
                # Stand-in for the daemon's credentials Secret (values are irrelevant here).
                keys = ["admin-password", "db-password", "db-root-password", "postgres-password", "jwt-secret", "cookie-secret"]
                subprocess.run([kubectl, "-n", ns, "create", "secret", "generic", SECRET_NAME]
                               + [f"--from-literal={k}=check-charts-{k}" for k in keys], env=env, capture_output=True)
                for env_name in ENVIRONMENTS:
                    res = subprocess.run([binary, "upgrade", "--install", store, str(chart), "-n", ns, "-f",
                                          str(chart / f"values-{env_name}.yaml"), "-f", str(golden), "--wait", "--timeout", "120s"],
                                         env=env, capture_output=True, text=True, cwd=ROOT)
                    where = f"{label} install {golden.name} values-{env_name}"
                    if res.returncode == 0:
                        print(f"  ok   {where}")
                    else:
                        fails.add(where, (res.stderr or res.stdout).strip()[-500:])
                subprocess.run([binary, "uninstall", store, "-n", ns, "--wait"], env=env, capture_output=True)


def main() -> int:
    started = time.time()
    fails = Failures()
    helm = helms()
    goldens = golden_files()
    engines = sorted({e for e, _, _ in goldens})
    charts = sorted(p for p in CHARTS.glob("*-store") if (p / "Chart.yaml").is_file())

    # The setup-script dry runs (fake wp/medusa CLIs) are slow-ish: run them alongside the renders,
    # and so the day-two plan changes on the test API server (a thread: it waits on helm).
    dryrun = subprocess.Popen([sys.executable, str(Path(__file__).with_name("setup_dryrun.py"))],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import day2
    cluster_result: dict = {}
    cluster = threading.Thread(target=lambda: cluster_result.update(out=day2.run_cluster(helm, CHARTS, goldens)))
    cluster.start()

    print("== helm lint --strict")
    lint_runs = 0
    for chart in charts:
        engine = chart.name[: -len("-store")]
        sample = next((p for e, _, p in goldens if e == engine), None)
        if sample is None:
            fails.add(chart.name, "no golden values file to lint with")
            continue
        for env in ENVIRONMENTS:
            for label, binary in helm.items():
                res = run([binary, "lint", "--strict", str(chart), "-f", str(chart / f"values-{env}.yaml"),
                           "-f", str(sample), "--namespace", "store-lint"])
                lint_runs += 1
                ok = res.returncode == 0
                print(f"  {'ok  ' if ok else 'FAIL'} {label} lint {chart.name} values-{env}.yaml + {sample.name}")
                if not ok:
                    fails.add(f"{label} lint {chart.name} {env}", res.stdout.strip() + res.stderr.strip())

    print("== helm template x kubernetes-validate --strict " + " ".join(KUBE_VERSIONS) + " x policies")
    counts = {v: 0 for v in KUBE_VERSIONS}
    renders = 0
    containers = 0
    self_tested = False
    for engine, store, golden in goldens:
        chart = CHARTS / f"{engine}-store"
        store_values = json.loads(golden.read_text())
        expected_secret_name.current = store_values.get("existingSecret") or SECRET_NAME
        for env in ENVIRONMENTS:
            outputs = {}
            for label, binary in helm.items():
                where = f"{label} {golden.name} values-{env}"
                try:
                    docs = template(binary, store, chart, [chart / f"values-{env}.yaml", golden])
                except RuntimeError as e:
                    fails.add(where, f"helm template failed: {e}")
                    continue
                renders += 1
                outputs[label] = docs
                before = len(fails.items)
                validate_docs(docs, where, fails, counts)
                containers += check_policies(docs, where, fails, expect_fallback_secret=False)
                fit = check_quota_fit(docs, where, fails)
                status = "ok  " if len(fails.items) == before else "FAIL"
                print(f"  {status} {where}: {len(docs)} documents ({', '.join(sorted({d['kind'] for d in docs}))})")
                print(f"       {fit}")
                if not self_tested:
                    self_test(docs, fails)
                    self_tested = True
            if len(outputs) == 2 and outputs["helm3"] != outputs["helm4"]:
                print(f"  note: helm3 and helm4 render {golden.name} values-{env} differently")
            # The lookup fallback (manual install): existingSecret "" renders exactly the fallback Secret.
            for label, binary in helm.items():
                where = f"{label} {golden.name} values-{env} existingSecret=\"\""
                with tempfile.NamedTemporaryFile("w", suffix=".json") as tmp:
                    json.dump({"existingSecret": ""}, tmp)
                    tmp.flush()
                    try:
                        docs = template(binary, store, chart, [chart / f"values-{env}.yaml", golden, Path(tmp.name)])
                    except RuntimeError as e:
                        fails.add(where, f"helm template failed: {e}")
                        continue
                renders += 1
                expected_secret_name.current = SECRET_NAME
                before = len(fails.items)
                validate_docs(docs, where, fails, counts)
                check_policies(docs, where, fails, expect_fallback_secret=True)
                expected_secret_name.current = store_values.get("existingSecret") or SECRET_NAME
                status = "ok  " if len(fails.items) == before else "FAIL"
                print(f"  {status} {where}: fallback Secret {SECRET_NAME} rendered, nothing else secret")

    print("== plan presets (no `resources` given: the chart's plans[store.plan])")
    expected_secret_name.current = SECRET_NAME
    for chart in charts:
        for plan in ("small", "medium", "large"):
            # The small plan is the tight one: also with backups on and a restore (issue 14).
            backup_sets = ([], ["--set", "backup.enabled=true", "--set", "backup.repository=/repository/preset",
                                "--set", "backup.restore.enabled=true", "--set", "backup.restore.fromStore=old",
                                "--set", "backup.restore.repository=/repository/old"])
            for env, extra in [(e, x) for e in ENVIRONMENTS for x in backup_sets[: 2 if plan == "small" else 1]]:
                label, binary = next(iter(helm.items()))
                where = f"{label} {chart.name} plan={plan} values-{env}{' backups + restore' if extra else ''}"
                try:
                    docs = template(binary, "preset", chart, [chart / f"values-{env}.yaml"], [
                        "--set", "existingSecret=" + SECRET_NAME, "--set", f"store.plan={plan}",
                        "--set", "store.host=preset.localtest.me", "--set", "store.adminEmail=admin@preset.localtest.me"] + extra)
                except RuntimeError as e:
                    fails.add(where, f"helm template failed: {e}")
                    continue
                renders += 1
                before = len(fails.items)
                validate_docs(docs, where, fails, counts)
                containers += check_policies(docs, where, fails, expect_fallback_secret=False)
                fit = check_quota_fit(docs, where, fails)
                status = "ok  " if len(fails.items) == before else "FAIL"
                print(f"  {status} {where}: {fit}")

    print("== backups (issue 14): backup CronJob, its NetworkPolicies, the copied Secret, the restore path")
    import backups
    for line in backups.run(helm, CHARTS, goldens, ENVIRONMENTS, fails, counts, template, validate_docs,
                            check_policies, check_quota_fit, Failures, expected_secret_name):
        print("  " + line)
    expected_secret_name.current = SECRET_NAME

    print("== day two (issue 16): upgrades, plan changes, cron, probes, Apache, migrations")
    for line in day2.run_renders(helm, CHARTS, goldens, fails):
        print("  " + line)
    cluster.join()
    lines, problems = cluster_result.get("out", ([], [("pvc-sizes", "the test API server check did not run")]))
    for line in lines:
        print("  " + line)
    for where, what in problems:
        fails.add(where, what)

    install_checks(helm, goldens, fails)

    print("== setup scripts, dry runs against fake wp / medusa CLIs (scripts/chartcheck/setup_dryrun.py)")
    out, _ = dryrun.communicate()
    if dryrun.returncode == 0:
        print("  ok   woocommerce setup.sh: first run configures everything, re-run changes nothing, changed inputs add only what is missing, unreachable DB gives up")
        print("  ok   medusa medusa.sh: migrate always, admin and seed once (markers), existing admin tolerated, other errors fail")
    else:
        for line in out.strip().splitlines():
            print("  " + line)
        fails.add("setup dry runs", "see above")

    print("== summary")
    print(f"  engines: {', '.join(engines)}; golden files: {len(goldens)}; helm lint runs: {lint_runs}; renders: {renders}")
    for version in KUBE_VERSIONS:
        extra = counts.get(f"{version}-allowed-unknown", 0)
        print(f"  Kubernetes {version}: {counts[version]} documents validated (strict)"
              + (f", {extra} allow-listed custom resources" if extra else ""))
    print(f"  containers policy-checked: {containers}")
    print(f"  python part took {time.time() - started:.1f}s")
    if fails.items:
        print(f"check-charts: {len(fails.items)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
