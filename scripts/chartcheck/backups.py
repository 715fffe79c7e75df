"""Backups and restores in the rendered charts (issue 14), run by check.py.

Every golden store is rendered with the values storekeeper adds for backups
(tests/golden/<engine>--<store>.backup.json, generated from the daemon's own code by
tests/golden_values.rs): once as a steady-state apply (backups on, no restore) and once as a
first install from a snapshot (backups on and a restore), with both environments and both helms.
Each render goes through the same strict schema validation, pod-security policies and quota fit
as the plain renders, plus what the daemon relies on:

- the CronJob `<release>-backup`: concurrencyPolicy Forbid, its job template labelled with the
  component and the store (the daemon watches those Jobs), restartPolicy Never, the store's
  repository and revision tag;
- every envFrom of a backup or restore container names the copied backup Secret and nothing
  else; env secretKeyRefs name the credentials Secret (check_policies);
- the NetworkPolicies: backup pods reach the database and the repository; the database accepts
  them; with a restore, the setup Job reaches the repository;
- the restore path: the setup Job's first init containers are restore.sh's five steps, in
  order, before the setup's own steps, with restartPolicy Never and the source store's repository.
"""
from __future__ import annotations

import concurrent.futures
import copy
import json
import tempfile
from pathlib import Path

RESTORE_STEPS = ["restore-check", "restore-fetch", "restore-load", "restore-rewrite", "restore-finish"]


def named(docs, kind, name):
    return next((d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name), None)


def env_of(container) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def check_backup(docs, release, store, overlay, where, fails, restore: bool) -> None:
    b = overlay["backup"]
    cj = named(docs, "CronJob", f"{release}-backup")
    if cj is None:
        fails.add(where, f"no CronJob {release}-backup")
        return
    if cj["spec"].get("concurrencyPolicy") != "Forbid":
        fails.add(where, "backup CronJob: concurrencyPolicy is not Forbid")
    if cj["spec"].get("schedule") != b["schedule"]:
        fails.add(where, f"backup CronJob: schedule {cj['spec'].get('schedule')!r} is not {b['schedule']!r}")
    labels = (cj["spec"]["jobTemplate"].get("metadata") or {}).get("labels") or {}
    for key, want in (("app.kubernetes.io/component", "backup"), ("storekeeper.dev/store", store)):
        if labels.get(key) != want:
            fails.add(where, f"backup CronJob: job template label {key}={labels.get(key)!r}, want {want!r}")
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if pod.get("restartPolicy") != "Never":
        fails.add(where, "backup CronJob: restartPolicy is not Never")
    restic = next((c for c in pod["containers"] if c["name"] == "restic"), None)
    if restic is None:
        fails.add(where, "backup CronJob: no restic container")
    else:
        env = env_of(restic)
        if env.get("RESTIC_REPOSITORY") != b["repository"]:
            fails.add(where, f"backup CronJob: RESTIC_REPOSITORY {env.get('RESTIC_REPOSITORY')!r}")
        if env.get("SOURCE_REVISION") != b["revision"]:
            fails.add(where, f"backup CronJob: SOURCE_REVISION {env.get('SOURCE_REVISION')!r}")
    check_secret_refs(docs, b["existingSecret"], where, fails)
    for policy in (f"{release}-backup",):
        if named(docs, "NetworkPolicy", policy) is None:
            fails.add(where, f"no NetworkPolicy {policy}")
    if not any(d.get("kind") == "NetworkPolicy" and d["metadata"]["name"].endswith("-backup")
               and d["metadata"]["name"] != f"{release}-backup" for d in docs):
        fails.add(where, "no NetworkPolicy letting the database accept the backup pods")
    if named(docs, "ConfigMap", f"{release}-backup-scripts") is None:
        fails.add(where, f"no ConfigMap {release}-backup-scripts")
    setup = next((d for d in docs if d.get("kind") == "Job"
                  and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "setup"), None)
    if setup is None:
        fails.add(where, "no setup Job")
        return
    check_restore(docs, setup, release, b, where, fails, restore)


def check_secret_refs(docs, secret, where, fails) -> None:
    """envFrom in any pod names the copied backup Secret only."""
    for d in docs:
        spec = d.get("spec") or {}
        if d.get("kind") == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = (spec.get("template") or {}).get("spec") or {}
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            for ref in c.get("envFrom") or []:
                name = (ref.get("secretRef") or {}).get("name")
                if name != secret:
                    fails.add(where, f"{d['kind']}/{d['metadata']['name']} {c['name']}: envFrom {ref}, want secretRef {secret}")


def check_restore(docs, setup, release, b, where, fails, restore: bool) -> None:
    pod = setup["spec"]["template"]["spec"]
    names = [c["name"] for c in pod.get("initContainers") or []]
    has_restore = any(n.startswith("restore-") for n in names)
    if not restore:
        if has_restore:
            fails.add(where, "setup Job restores although backup.restore is off")
        return
    if names[: len(RESTORE_STEPS)] != RESTORE_STEPS:
        fails.add(where, f"setup Job: init containers {names}, want {RESTORE_STEPS} first")
    if pod.get("restartPolicy") != "Never":
        fails.add(where, "setup Job with a restore: restartPolicy is not Never")
    fetch = next((c for c in pod.get("initContainers") or [] if c["name"] == "restore-fetch"), None)
    if fetch is not None:
        env = env_of(fetch)
        if env.get("RESTIC_REPOSITORY") != b["restore"]["repository"]:
            fails.add(where, f"restore-fetch: RESTIC_REPOSITORY {env.get('RESTIC_REPOSITORY')!r}")
        if env.get("RESTORE_FROM_STORE") != b["restore"]["fromStore"]:
            fails.add(where, f"restore-fetch: RESTORE_FROM_STORE {env.get('RESTORE_FROM_STORE')!r}")
    if named(docs, "NetworkPolicy", f"{release}-setup-restore") is None:
        fails.add(where, f"no NetworkPolicy {release}-setup-restore")


def self_test(docs, release, store, overlay, fails_cls) -> list[str]:
    """The backup checker must catch what it claims to catch; returns what it missed."""
    def mutate_label(ds):
        cj = named(ds, "CronJob", f"{release}-backup")
        cj["spec"]["jobTemplate"]["metadata"]["labels"].pop("storekeeper.dev/store")

    def mutate_secret(ds):
        cj = named(ds, "CronJob", f"{release}-backup")
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][-1]["envFrom"] = [{"secretRef": {"name": "other"}}]

    def mutate_order(ds):
        job = next(d for d in ds if d.get("kind") == "Job")
        inits = job["spec"]["template"]["spec"]["initContainers"]
        inits[0], inits[1] = inits[1], inits[0]

    missed = []
    for label, mutate in (("job template store label", mutate_label), ("foreign envFrom Secret", mutate_secret),
                          ("restore step order", mutate_order)):
        ds = copy.deepcopy(docs)
        mutate(ds)
        probe = fails_cls()
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()):
            check_backup(ds, release, store, overlay, "self-test", probe, restore=True)
        if not probe.items:
            missed.append(label)
    return missed


def run(helm, charts: Path, goldens, envs, fails, counts, template, validate_docs, check_policies, check_quota_fit,
        fails_cls, expected_secret) -> list[str]:
    """Renders every golden store x env x helm x {steady state, restore}; returns report lines."""
    jobs = []
    for engine, store, golden in goldens:
        overlay_file = golden.with_name(golden.name.replace(".values.json", ".backup.json"))
        if not overlay_file.is_file():
            fails.add(golden.name, f"no {overlay_file.name} (UPDATE_GOLDEN=1 cargo nextest run --test golden_values)")
            continue
        overlay = json.loads(overlay_file.read_text())
        steady = copy.deepcopy(overlay)
        steady["backup"]["restore"] = {"enabled": False}
        for env in envs:
            for label, binary in helm.items():
                for restore, values in ((False, steady), (True, overlay)):
                    jobs.append((engine, store, golden, env, label, binary, restore, values, overlay))
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        def render(job):
            engine, store, golden, env, label, binary, restore, values, _ = job
            path = Path(tmp) / f"{store}-{env}-{label}-{restore}.json"
            path.write_text(json.dumps(values))
            chart = charts / f"{engine}-store"
            try:
                return template(binary, store, chart, [chart / f"values-{env}.yaml", golden, path]), None
            except RuntimeError as e:
                return None, str(e)

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            rendered = list(pool.map(render, jobs))
    self_tested = False
    for job, (docs, error) in zip(jobs, rendered):
        engine, store, golden, env, label, _, restore, values, overlay = job
        where = f"{label} {golden.name} values-{env} backups{' + restore' if restore else ''}"
        if docs is None:
            fails.add(where, f"helm template failed: {error}")
            continue
        before = len(fails.items)
        expected_secret.current = json.loads(golden.read_text()).get("existingSecret") or "storekeeper-credentials"
        validate_docs(docs, where, fails, counts)
        check_policies(docs, where, fails, expect_fallback_secret=False)
        fit = check_quota_fit(docs, where, fails)
        name = json.loads(golden.read_text())["store"]["name"]
        check_backup(docs, store, name, values, where, fails, restore)
        # The self-test mutates a CronJob and a restore Job; a chart without them has failed above.
        if restore and not self_tested and len(fails.items) == before:
            self_tested = True
            missed = self_test(docs, store, name, values, fails_cls)
            for m in missed:
                fails.add("backup self-test", f"backup checker missed: {m}")
            lines.append("backup self-test: 3 injected faults, each caught" if not missed else "backup self-test: FAILED")
        status = "ok  " if len(fails.items) == before else "FAIL"
        lines.append(f"{status} {where}: {len(docs)} documents; {fit}")
    return lines
