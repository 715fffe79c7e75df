"""Day-two checks of the store charts (issue 16), run by check.py.

Each check renders a chart twice (or installs it on the test API server) and asserts what must
hold after an upgrade, not only on a first install:

1. job-name:   every input of the setup Job's pod template changes the Job's name (a Job's
               `spec.template` is immutable; patching it fails the upgrade for good).
2. pvc-sizes:  a plan change small -> medium -> small keeps the volumes (no shrink, no growth the
               StorageClass cannot do), on the test API server with the real helm and `lookup`.
6. wp-cron:    WP-Cron's loopback is off and a CronJob runs due events under the same rules as
               WordPress (volume, node, security, network reach to MariaDB).
8. liveness:   WordPress liveness does not depend on MariaDB (tcpSocket); readiness stays HTTP.
9. apache:     MaxRequestWorkers is sized from the WordPress memory limit.
11. migration: a rebuilt Medusa image (new digest or build id) gets a new migration id.

`run_renders` is pure rendering (fast); `run_cluster` needs the testbed's `serve` example and
runs alongside the renders.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from check import Failures, pod_spec, template, quantity, ROOT

# Inputs of each chart's setup-Job pod template, as values overlays (None: bump the chart version).
JOB_INPUTS = {
    "woocommerce": [
        ("wordpress.configExtra", {"wordpress": {"configExtra": "define('WP_POST_REVISIONS', 5);"}}),
        ("wordpress.extraEnv", {"wordpress": {"extraEnv": [{"name": "CHECK", "value": "1"}]}}),
        ("mariadb.database", {"mariadb": {"database": "shop"}}),
        ("mariadb.user", {"mariadb": {"user": "shop"}}),
        ("imagePullSecrets", {"imagePullSecrets": [{"name": "regcred"}]}),
        ("helm.sh/chart (chart version)", None),
    ],
    "medusa": [
        ("helperResources", {"helperResources": {"requests": {"cpu": "60m", "memory": "64Mi"},
                                                 "limits": {"cpu": "100m", "memory": "128Mi"}}}),
        ("server.extraEnv", {"server": {"extraEnv": [{"name": "CHECK", "value": "1"}]}}),
        ("server.port", {"server": {"port": 9001}}),
        ("postgres.database", {"postgres": {"database": "shop"}}),
        ("postgres.user", {"postgres": {"user": "shop"}}),
        ("imagePullSecrets", {"imagePullSecrets": [{"name": "regcred"}]}),
        ("helm.sh/chart (chart version)", None),
    ],
}
# The smallest plausible resident size of one Apache mod_php worker serving WooCommerce: the
# check's own floor, independent of the chart's sizing, so a chart that over-commits fails.
MOD_PHP_WORKER_FLOOR = 64 * 2**20
APACHE_PARENT_FLOOR = 64 * 2**20


def _values_file(tmp: Path, name: str, values: dict) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(values))
    return path


def _jobs(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") == "Job"]


def _bumped_chart(chart: Path, tmp: Path) -> Path:
    copy_dir = tmp / f"bumped-{chart.name}"
    if not copy_dir.exists():
        shutil.copytree(chart, copy_dir)
        text = (copy_dir / "Chart.yaml").read_text()
        (copy_dir / "Chart.yaml").write_text(re.sub(r"(?m)^version:.*$", "version: 99.0.0-check", text))
    return copy_dir


def check_job_names(helm: str, charts: Path, goldens, fails: Failures, tmp: Path) -> int:
    """Item 1: a changed pod template always comes with a new Job name."""
    checked = 0
    done = set()
    for engine, store, golden in goldens:
        inputs = JOB_INPUTS.get(engine)
        if not inputs or engine in done:
            continue
        done.add(engine)
        chart = charts / f"{engine}-store"
        local = chart / "values-local.yaml"
        base = _jobs(template(helm, store, chart, [local, golden]))
        for label, overlay in inputs:
            where = f"job-name {engine}--{store} {label}"
            if overlay is None:
                docs = template(helm, store, _bumped_chart(chart, tmp), [local, golden])
            else:
                docs = template(helm, store, chart, [local, golden, _values_file(tmp, "overlay", overlay)])
            jobs = _jobs(docs)
            if len(jobs) != len(base) or not jobs:
                fails.add(where, f"expected {len(base)} setup Job(s), got {len(jobs)}")
                continue
            for old, new in zip(base, jobs):
                if old["spec"]["template"] == new["spec"]["template"]:
                    fails.add(where, "the input does not reach the Job's pod template (the check would prove nothing)")
                elif old["metadata"]["name"] == new["metadata"]["name"]:
                    fails.add(where, f"pod template changed but the Job keeps its name {old['metadata']['name']}: "
                                     "the upgrade would patch an immutable spec.template")
                checked += 1
    return checked


def _container(doc: dict, name: str) -> dict | None:
    spec = pod_spec(doc) or {}
    return next((c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                 if c["name"] == name), None)


def _env(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env") or [] if e["name"] == name), None)


def _find(docs: list[dict], kind: str, component: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind
            and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == component]


def _pod_labels(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["metadata"].get("labels") or {}


def _selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels / matchExpressions) against labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _port_ok(rule: dict, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port for p in ports)


def reachable(docs: list[dict], src: dict, dst: dict, port: int) -> bool:
    """Whether NetworkPolicies let a pod with labels `src` open TCP `port` on a pod with labels
    `dst` in the same namespace (both directions must allow it, as kube-router enforces)."""
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]

    def allowed(direction: str, subject: dict, peer: dict) -> bool:
        applying = [p for p in policies if direction.capitalize() in p["spec"].get("policyTypes", [])
                    and _selects(p["spec"].get("podSelector") or {}, subject)]
        if not applying:
            return True
        for p in applying:
            for rule in p["spec"].get(direction) or []:
                peers = rule.get("to" if direction == "egress" else "from")
                if not _port_ok(rule, port):
                    continue
                if peers is None or any("podSelector" in x and "namespaceSelector" not in x
                                        and _selects(x["podSelector"], peer) for x in peers):
                    return True
        return False

    return allowed("egress", src, dst) and allowed("ingress", dst, src)


def check_wp_cron(helm: str, charts: Path, golden: Path, store: str, fails: Failures) -> None:
    """Item 6: DISABLE_WP_CRON plus a CronJob that runs due events like WordPress would."""
    chart = charts / "woocommerce-store"
    docs = template(helm, store, chart, [chart / "values-local.yaml", golden])
    where = f"wp-cron woocommerce--{store}"
    wp = next(iter(_find(docs, "Deployment", "wordpress")), None)
    if wp is None:
        fails.add(where, "no WordPress Deployment")
        return
    wp_c = _container(wp, "wordpress")
    extra = _env(wp_c, "WORDPRESS_CONFIG_EXTRA") or ""
    if not re.search(r"define\(\s*'DISABLE_WP_CRON',\s*true\s*\)", extra):
        fails.add(where, "WordPress still spawns WP-Cron by a loopback request (DISABLE_WP_CRON is not true)")
    crons = [d for d in docs if d.get("kind") == "CronJob"]
    runner = None
    for cj in crons:
        for c in pod_spec(cj).get("containers") or []:
            if "cron event run --due-now" in " ".join(c.get("command", []) + c.get("args", [])):
                runner = (cj, c)
    if runner is None:
        fails.add(where, "no CronJob runs `wp cron event run --due-now`")
        return
    cj, c = runner
    spec = pod_spec(cj)
    if cj["spec"].get("concurrencyPolicy") != "Forbid":
        fails.add(where, "CronJob runs may overlap (concurrencyPolicy is not Forbid)")
    wp_spec = pod_spec(wp)
    wp_claim = next(v["persistentVolumeClaim"]["claimName"] for v in wp_spec["volumes"] if "persistentVolumeClaim" in v)
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
    cron_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                   if "persistentVolumeClaim" in v}
    if not any(claim == wp_claim and mounts.get(name) == "/var/www/html" for name, claim in cron_claims.items()):
        fails.add(where, f"the cron pod does not mount {wp_claim} at /var/www/html")
    wp_labels = _pod_labels(wp)
    terms = (((spec.get("affinity") or {}).get("podAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" and _selects(t["labelSelector"], wp_labels) for t in terms):
        fails.add(where, "the cron pod is not pinned to WordPress's node (its volume is ReadWriteOnce)")
    wp_env = {e["name"] for e in wp_c.get("env") or [] if e["name"].startswith("WORDPRESS_")}
    cron_env = {e["name"] for e in c.get("env") or []}
    if not wp_env <= cron_env:
        fails.add(where, f"the cron container lacks WordPress's environment: {sorted(wp_env - cron_env)}")
    db = next(iter(_find(docs, "StatefulSet", "mariadb")), None)
    if db and not reachable(docs, _pod_labels(cj), _pod_labels(db), 3306):
        fails.add(where, "NetworkPolicies do not let the cron pod reach MariaDB on 3306")


def check_liveness(helm: str, charts: Path, golden: Path, store: str, fails: Failures) -> None:
    """Item 8: liveness must not restart WordPress when only MariaDB is down."""
    chart = charts / "woocommerce-store"
    docs = template(helm, store, chart, [chart / "values-local.yaml", golden])
    where = f"liveness woocommerce--{store}"
    wp = next(iter(_find(docs, "Deployment", "wordpress")), None)
    c = _container(wp, "wordpress") if wp else None
    if c is None:
        fails.add(where, "no WordPress container")
        return
    live, ready = c.get("livenessProbe") or {}, c.get("readinessProbe") or {}
    if "tcpSocket" not in live or "httpGet" in live or "exec" in live:
        fails.add(where, f"liveness probe depends on more than Apache listening: {sorted(live)}")
    if "httpGet" not in ready:
        fails.add(where, "readiness probe is not an HTTP request (a broken WordPress would get traffic)")


def _max_workers(docs: list[dict], wp: dict) -> tuple[int | None, str]:
    c = _container(wp, "wordpress")
    spec = pod_spec(wp)
    mount = next((m for m in c.get("volumeMounts") or []
                  if m["mountPath"] in ("/etc/apache2/mods-available/mpm_prefork.conf",
                                        "/etc/apache2/mods-enabled/mpm_prefork.conf")), None)
    if mount is None:
        return None, "mpm_prefork.conf is not mounted (Debian's default MaxRequestWorkers 150 applies)"
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    cm_name = (vol.get("configMap") or {}).get("name")
    cm = next((d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == cm_name), None)
    text = (cm or {}).get("data", {}).get(mount.get("subPath", ""), "")
    m = re.search(r"(?m)^\s*MaxRequestWorkers\s+(\d+)", text)
    if not m:
        return None, f"no MaxRequestWorkers in ConfigMap {cm_name}"
    server_limit = re.search(r"(?m)^\s*ServerLimit\s+(\d+)", text)
    if server_limit and int(server_limit.group(1)) < int(m.group(1)):
        return None, "ServerLimit below MaxRequestWorkers"
    return int(m.group(1)), ""


def check_apache_workers(helm: str, charts: Path, golden: Path, store: str, fails: Failures, tmp: Path) -> None:
    """Item 9: as many mod_php workers as the memory limit holds, and no more."""
    chart = charts / "woocommerce-store"
    seen = []
    for limit in ("512Mi", "1Gi", "3Gi"):
        overlay = _values_file(tmp, f"mem-{limit}", {"wordpress": {"resources": {"limits": {"memory": limit}}}})
        docs = template(helm, store, chart, [chart / "values-local.yaml", golden, overlay])
        where = f"apache woocommerce--{store} limits.memory={limit}"
        wp = next(iter(_find(docs, "Deployment", "wordpress")), None)
        n, why = _max_workers(docs, wp)
        if n is None:
            fails.add(where, why)
            return
        if n < 1 or n * MOD_PHP_WORKER_FLOOR + APACHE_PARENT_FLOOR > quantity(limit):
            fails.add(where, f"MaxRequestWorkers {n} x 64Mi (+64Mi for Apache) exceeds the {limit} limit")
        seen.append(n)
    if seen != sorted(seen) or seen[0] == seen[-1]:
        fails.add(f"apache woocommerce--{store}", f"MaxRequestWorkers does not follow the memory limit: {seen}")


def _migration_ids(docs: list[dict]) -> set[str]:
    ids = set()
    for d in docs:
        spec = pod_spec(d)
        for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
            v = _env(c, "MIGRATION_ID")
            if v:
                ids.add(v)
    return ids


def check_migration_id(helm: str, charts: Path, golden: Path, store: str, fails: Failures, tmp: Path) -> None:
    """Item 11: the migration id and the pods follow the image's build, not only its tag."""
    chart = charts / "medusa-store"
    where = f"migration medusa--{store}"
    renders = {}
    variants = {
        "digest-a": {"image": {"digest": "sha256:" + "a" * 64}},
        "digest-b": {"image": {"digest": "sha256:" + "b" * 64}},
        "build-a": {"image": {"buildId": "build-1"}},
        "build-b": {"image": {"buildId": "build-2"}},
    }
    for name, overlay in variants.items():
        docs = template(helm, store, chart, [chart / "values-local.yaml", golden, _values_file(tmp, name, overlay)])
        ids = _migration_ids(docs)
        if len(ids) != 1:
            fails.add(where, f"{name}: expected one MIGRATION_ID shared by the Job and the pods, got {sorted(ids)}")
            return
        renders[name] = (ids.pop(), docs)
    for a, b in (("digest-a", "digest-b"), ("build-a", "build-b")):
        if renders[a][0] == renders[b][0]:
            fails.add(where, f"{a} and {b} share the migration id {renders[a][0]}: a rebuilt image never migrates")
        server_a = next(iter(_find(renders[a][1], "Deployment", "server")))
        server_b = next(iter(_find(renders[b][1], "Deployment", "server")))
        if server_a["spec"]["template"] == server_b["spec"]["template"]:
            fails.add(where, f"{a} and {b} render the same server pod template: a rebuilt image is never rolled out")
    image = _container(next(iter(_find(renders["digest-a"][1], "Deployment", "server"))), "medusa")["image"]
    if not image.endswith("@sha256:" + "a" * 64):
        fails.add(where, f"image.digest is not used in the image reference: {image}")


def run_renders(helm: dict[str, str], charts: Path, goldens, fails: Failures) -> list[str]:
    """The render-only day-two checks, run side by side (each renders with helm); returns one
    summary line per check."""
    label, binary = next(iter(helm.items()))
    woo = next(((s, g) for e, s, g in goldens if e == "woocommerce"), None)
    med = next(((s, g) for e, s, g in goldens if e == "medusa"), None)
    checks = [
        ("1 ", "job-name: every pod-template input renames the setup Job",
         lambda f, tmp: check_job_names(binary, charts, goldens, f, tmp), True),
        ("6 ", "wp-cron: DISABLE_WP_CRON, a CronJob on WordPress's volume and node that reaches MariaDB",
         lambda f, tmp: check_wp_cron(binary, charts, woo[1], woo[0], f), woo),
        ("8 ", "liveness: tcpSocket liveness, HTTP readiness",
         lambda f, tmp: check_liveness(binary, charts, woo[1], woo[0], f), woo),
        ("9 ", "apache: MaxRequestWorkers sized from the memory limit (512Mi, 1Gi, 3Gi)",
         lambda f, tmp: check_apache_workers(binary, charts, woo[1], woo[0], f, tmp), woo),
        ("11", "migration: digest and build id change the migration id and roll the pods",
         lambda f, tmp: check_migration_id(binary, charts, med[1], med[0], f, tmp), med),
    ]

    def one(check):
        num, name, fn, target = check
        own = Failures()
        with tempfile.TemporaryDirectory() as d:
            if not target:
                own.add(name, "no golden values file for this engine")
            else:
                fn(own, Path(d))
        return num, name, own

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, checks))
    lines = []
    for num, name, own in results:
        fails.items.extend(own.items)
        lines.append(f"{label}: {'ok  ' if not own.items else 'FAIL'} {num} {name}")
    return lines


# ---- item 2: plan changes against the test API server ----------------------------------------

class TestApi:
    """The testbed's `serve` example: a real HTTP Kubernetes API double (tests/testbed)."""

    def __init__(self) -> None:
        binary = os.environ.get("STOREKEEPER_TESTBED_SERVE")
        if not binary:
            build = subprocess.run(["cargo", "build", "--quiet", "-p", "testbed", "--example", "serve",
                                    "--message-format=json"], cwd=ROOT, capture_output=True, text=True)
            if build.returncode != 0:
                raise RuntimeError(f"cargo build -p testbed --example serve: {build.stderr.strip()[-400:]}")
            for line in build.stdout.splitlines():
                msg = json.loads(line)
                if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "serve":
                    binary = msg.get("executable") or binary
        if not binary:
            raise RuntimeError("could not find the testbed serve example")
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip().split("=", 1)[1]
        self.kubeconfig = self.proc.stdout.readline().strip().split("=", 1)[1]

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def _plan_values(chart: Path, plan: str) -> dict:
    plans = yaml.safe_load((chart / "values.yaml").read_text())["plans"]
    return {"store": {"plan": plan}, "resources": plans[plan]}


def _pvc_sizes(api: TestApi, ns: str) -> dict[str, str]:
    items = api.request("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims")["items"]
    return {p["metadata"]["name"]: p["spec"]["resources"]["requests"]["storage"] for p in items}


def plan_walk(api: TestApi, helm: str, chart: Path, golden: Path, store: str, ns: str, tmp: Path,
              extra: dict, expect: list[str]) -> str | None:
    """Installs `store` at small, then medium, then small; after each step every PVC must have
    the size `expect[i]`. Returns a failure message or None."""
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    keys = ["admin-password", "db-password", "db-root-password", "postgres-password", "jwt-secret", "cookie-secret"]
    api.request("POST", f"/api/v1/namespaces/{ns}/secrets",
                {"metadata": {"name": "storekeeper-credentials"}, "stringData": {k: "checkcharts" for k in keys}})
    env = {**os.environ, "KUBECONFIG": api.kubeconfig, "HELM_CACHE_HOME": str(tmp / "cache"),
           "HELM_CONFIG_HOME": str(tmp / "config"), "HELM_DATA_HOME": str(tmp / "data")}
    for step, (plan, want) in enumerate(zip(("small", "medium", "small"), expect)):
        values = _values_file(tmp, f"{ns}-{step}", {**_plan_values(chart, plan), **extra})
        res = subprocess.run([helm, "upgrade", "--install", store, str(chart), "-n", ns, "-f",
                              str(chart / "values-local.yaml"), "-f", str(golden), "-f", str(values)],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            return f"{plan} (step {step + 1}): helm failed: {(res.stderr or res.stdout).strip()[-300:]}"
        sizes = _pvc_sizes(api, ns)
        wrong = {n: s for n, s in sizes.items() if s != want}
        if not sizes or wrong:
            return f"{plan} (step {step + 1}): PVCs {sizes}, expected every one at {want}"
    return None


def run_cluster(helm: dict[str, str], charts: Path, goldens) -> tuple[list[str], list[tuple[str, str]]]:
    """Item 2 on the test API server; returns (summary lines, failures)."""
    label, binary = list(helm.items())[-1]
    lines, failures = [], []
    started = time.time()
    try:
        api = TestApi()
    except (RuntimeError, OSError, IndexError) as e:
        return [], [("pvc-sizes", f"test API server: {e}")]
    try:
        # Growth needs a class that can expand; the default class here can (as longhorn or most CSI
        # classes), so only persistence.expandVolumes decides.
        api.request("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "metadata": {"name": "expandable", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "example.com/csi", "allowVolumeExpansion": True})
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            for engine in ("woocommerce", "medusa"):
                store, golden = next(((s, g) for e, s, g in goldens if e == engine), (None, None))
                if golden is None:
                    continue
                chart = charts / f"{engine}-store"
                for case, extra, expect in (
                    ("kept", {}, ["5Gi", "5Gi", "5Gi"]),
                    ("grown", {"persistence": {"expandVolumes": True}}, ["5Gi", "10Gi", "10Gi"]),
                ):
                    where = f"pvc-sizes {engine} {case}"
                    problem = plan_walk(api, binary, chart, golden, store, f"check-{engine}-{case}", tmp, extra, expect)
                    if problem:
                        failures.append((where, problem))
                    else:
                        lines.append(f"{label}: ok   2  {where}: small -> medium -> small, PVCs {' -> '.join(expect)}")
    except urllib.error.URLError as e:
        failures.append(("pvc-sizes", f"test API server request failed: {e}"))
    finally:
        api.close()
    lines.append(f"(test API server part: {time.time() - started:.1f}s)")
    return lines, failures
