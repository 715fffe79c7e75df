"""Dry runs of the WooCommerce setup script against a fake `wp` (scripts/chartcheck/fake_wp.py).

Checks the script's control flow, not WordPress: a first run configures everything from the
inputs, a second run with the same inputs changes nothing but the always-written options, and a
run with changed inputs adds only what is missing (no duplicate SKUs, taxes or shipping methods).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parents[1] / "charts" / "woocommerce-store" / "files" / "setup.sh"
# Options the script writes on every run by design (cheap, and they must match the inputs).
ALWAYS_WRITTEN = {"blogname", "woocommerce_onboarding_profile", "woocommerce_task_list_hidden_lists",
                  "storekeeper_setup_hash", "storekeeper_setup_version"}

BASE_ENV = {
    "STORE_URL": "http://chai-corner.localtest.me", "STORE_TITLE": "Chai Corner", "STORE_ADMIN_USER": "admin",
    "STORE_ADMIN_EMAIL": "owner@chaicorner.in", "STORE_ADMIN_PASSWORD": "dry-run-only",
    "STORE_CURRENCY": "INR", "STORE_COUNTRY": "IN", "STORE_STATE": "KA", "STORE_ADDRESS": "12 MG Road",
    "STORE_CITY": "Bengaluru", "STORE_POSTCODE": "560001", "STORE_TAXES": "GST|18.0000",
    "STORE_COD": "true", "STORE_SAMPLE_PRODUCTS": "true", "SHIPPING_TITLE": "Flat rate", "SHIPPING_COST": "5",
    "WOOCOMMERCE_VERSION": "11.1.2", "STOREFRONT_VERSION": "4.6.1", "SETUP_VERSION": "1", "SETUP_HASH": "abc123",
    "WORDPRESS_VERSION": "7.1.2",
    "WAIT_SECONDS": "10",
}


def run(workdir: Path, env_over: dict) -> tuple[int, list[dict], str]:
    bindir = workdir / "bin"
    if not bindir.exists():
        bindir.mkdir()
        for name, extra in (("wp", ""), ("php", " --as-php")):
            (bindir / name).write_text(f"#!/bin/sh\nexec {sys.executable} -S {HERE / 'fake_wp.py'}{extra} \"$@\"\n")
            (bindir / name).chmod(0o755)
        html = workdir / "html"
        (html / "wp-includes").mkdir(parents=True)
        (html / "wp-config.php").write_text("<?php // fake\n")
        (html / "wp-includes" / "version.php").write_text("<?php // fake\n")
    log = workdir / "calls.log"
    if log.exists():
        log.unlink()
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_WP_STATE": str(workdir), "WP_PATH": str(workdir / "html"),
           "HOME": str(workdir), **BASE_ENV, **env_over}
    res = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return res.returncode, calls, res.stdout + res.stderr


def state(workdir: Path) -> dict:
    return json.loads((workdir / "state.json").read_text())


def mutations(calls: list[dict]) -> list[list[str]]:
    return [c["argv"] for c in calls if c["mutates"]]


def unexpected(calls: list[dict]) -> list[str]:
    out = []
    for argv in mutations(calls):
        words = [a for a in argv if not a.startswith("--")]
        if words[:2] == ["option", "update"] and words[2] in ALWAYS_WRITTEN:
            continue
        out.append(" ".join(words[:3]))
    return out


def main() -> list[str]:
    """Returns failure messages (empty when all dry runs behave)."""
    fails = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rc, calls, out = run(work, {})
        if rc != 0:
            return [f"first run exited {rc}:\n{out}"]
        st = state(work)
        o = st["options"]
        checks = {
            "installed": st["installed"],
            "woocommerce pinned + active": st["plugins"].get("woocommerce") == "11.1.2" and "plugins:woocommerce" in st["active"],
            "core updated to the pin": st.get("core") == "7.1.2",
            "wc update ran after the plugin": any([a for a in c["argv"] if not a.startswith("--")][:2] == ["wc", "update"] for c in calls),
            "task lists hidden (JSON)": json.loads(o.get("woocommerce_task_list_hidden_lists", "[]")) == ["setup", "extended"],
            "storefront pinned + active": st["themes"].get("storefront") == "4.6.1" and "themes:storefront" in st["active"],
            "permalinks": o.get("permalink_structure") == "/%postname%/",
            "default country IN:KA": o.get("woocommerce_default_country") == "IN:KA",
            "currency INR": o.get("woocommerce_currency") == "INR",
            "address": (o.get("woocommerce_store_address"), o.get("woocommerce_store_city"), o.get("woocommerce_store_postcode")) == ("12 MG Road", "Bengaluru", "560001"),
            "taxes on": o.get("woocommerce_calc_taxes") == "yes",
            "coming soon off": o.get("woocommerce_coming_soon") == "no" and o.get("woocommerce_store_pages_only") == "no",
            "onboarding skipped (JSON)": json.loads(o.get("woocommerce_onboarding_profile", "{}")) == {"skipped": True},
            "GST 18% for IN": st["taxes"] == [{"country": "IN", "name": "GST", "rate": "18.0000"}],
            "flat rate": st["methods"] == ["flat_rate"],
            "cod on": st["cod"] == "true",
            "3 sample products": len(st["skus"]) == 3,
            "marker": o.get("storekeeper_setup_version") == "1" and o.get("storekeeper_setup_hash") == "abc123",
        }
        last = mutations(calls)[-1] if mutations(calls) else []
        checks["marker written last"] = "storekeeper_setup_version" in last
        fails += [f"first run: {name}" for name, ok in checks.items() if not ok]

        rc, calls, out = run(work, {})
        if rc != 0:
            fails.append(f"second run exited {rc}:\n{out}")
        elif unexpected(calls):
            fails.append(f"second run (same inputs) changed: {unexpected(calls)}")

        rc, calls, out = run(work, {"STORE_TAXES": "GST|18.0000\nCess|1.0000", "STORE_COD": "false", "SETUP_HASH": "def456"})
        st = state(work)
        if rc != 0:
            fails.append(f"changed-inputs run exited {rc}:\n{out}")
        else:
            if [t["name"] for t in st["taxes"]] != ["GST", "Cess"]:
                fails.append(f"changed-inputs run: taxes {st['taxes']}")
            if st["cod"] != "false" or len(st["skus"]) != 3 or st["methods"] != ["flat_rate"]:
                fails.append("changed-inputs run: cod/skus/methods wrong")
            if sorted(unexpected(calls)) != ["wc tax create"]:
                fails.append(f"changed-inputs run changed more than the new tax: {unexpected(calls)}")

        # A newer pin upgrades core; an older one never downgrades it.
        rc, calls, out = run(work, {"WORDPRESS_VERSION": "7.2.1"})
        if rc != 0 or state(work).get("core") != "7.2.1":
            fails.append(f"core pin raised to 7.2.1: rc={rc}, core {state(work).get('core')}\n{out}")
        rc, calls, out = run(work, {"WORDPRESS_VERSION": "7.0.4"})
        if rc != 0 or state(work).get("core") != "7.2.1" or "no downgrades" not in out:
            fails.append(f"core pin lowered to 7.0.4 must not downgrade: rc={rc}, core {state(work).get('core')}\n{out}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rc, calls, out = run(work, {"STORE_STATE": "", "STORE_TAXES": "", "STORE_SAMPLE_PRODUCTS": "false",
                                    "STORE_COUNTRY": "US", "STORE_CURRENCY": "USD"})
        st = state(work)
        if rc != 0:
            fails.append(f"defaults run exited {rc}:\n{out}")
        elif (st["options"].get("woocommerce_default_country") != "US" or st["taxes"] or st["skus"]
              or st["options"].get("woocommerce_calc_taxes") != "no"):
            fails.append("defaults run: country/taxes/products wrong")

    with tempfile.TemporaryDirectory() as tmp:
        rc, _, out = run(Path(tmp), {"FAKE_DB_UP": "0", "WAIT_SECONDS": "0"})
        if rc == 0 or "gave up waiting for database" not in out:
            fails.append("unreachable database: the script did not give up with a message")
    return fails


MEDUSA_SCRIPT = HERE.parents[1] / "charts" / "medusa-store" / "files" / "medusa.sh"
FAKE_MEDUSA = """#!/bin/sh
echo "$*" >>"$FAKE_LOG"
if [ "$1" = user ] && [ -n "${FAKE_USER_ERROR:-}" ]; then echo "$FAKE_USER_ERROR"; exit 1; fi
exit 0
"""


def medusa_main() -> list[str]:
    """Dry runs of charts/medusa-store/files/medusa.sh with a fake medusa CLI."""
    fails = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fake = work / "medusa"
        fake.write_text(FAKE_MEDUSA)
        fake.chmod(0o755)
        seed = work / "seed.js"
        seed.write_text("// the store's seed\n")
        (work / "markers").write_text("")
        env = {"PATH": os.environ["PATH"], "STATE_DIR": str(work), "MEDUSA_BIN": str(fake), "FAKE_LOG": str(work / "log"),
               "STORE_ADMIN_EMAIL": "ops@citybikes.de", "STORE_ADMIN_PASSWORD": "dry-run-only", "MIGRATION_ID": "m1",
               "SETUP_VERSION": "1", "SETUP_HASH": "h1", "SEED_ENABLED": "true", "SEED_SCRIPT": str(seed),
               "SEED_ONCE": "/scripts/seed-once.js", "MIGRATE_ARGS": "--execute-safe-links"}

        def go(extra):
            (work / "log").write_text("")
            res = subprocess.run(["sh", str(MEDUSA_SCRIPT)], env={**env, **extra}, capture_output=True, text=True)
            return res.returncode, (work / "log").read_text().split("\n")[:-1], (work / "done").read_text() if (work / "done").exists() else "", res.stdout + res.stderr

        rc, log, done, out = go({})
        # The seed runs inside seed-once.js, which records `seeded` itself right after it returns.
        want = ["db:migrate --execute-safe-links", "user -e ops@citybikes.de -p dry-run-only",
                f"exec /scripts/seed-once.js {seed}"]
        if rc != 0 or log != want:
            fails.append(f"medusa first run: rc={rc} calls={log}\n{out}")
        keys = [line.split("=", 1)[0] for line in done.splitlines()]
        if keys != ["admin", "migrated", "setup_hash", "setup_version"]:
            fails.append(f"medusa first run: markers {keys}")
        (work / "markers").write_text(done + "seeded=2026-01-01T00:00:00Z\n")
        rc, log, done, out = go({})
        if rc != 0 or log != ["db:migrate --execute-safe-links"]:
            fails.append(f"medusa second run (markers present) ran: {log}")
        if [line.split("=", 1)[0] for line in done.splitlines()] != ["migrated", "setup_hash", "setup_version"]:
            fails.append(f"medusa second run: markers {done!r}")
        (work / "markers").write_text("")
        rc, log, done, out = go({"FAKE_USER_ERROR": "Error: User with email ops@citybikes.de already exists"})
        if rc != 0:
            fails.append(f"medusa: an existing admin user must count as done:\n{out}")
        rc, log, done, out = go({"FAKE_USER_ERROR": "Error: connect ECONNREFUSED"})
        if rc == 0:
            fails.append("medusa: a failed admin creation must fail the Job")
        rc, log, done, out = go({"SEED_ENABLED": "false"})
        if rc != 0 or any("seed" in line for line in log):
            fails.append(f"medusa: seed disabled but ran: {log}")
        rc, log, done, out = go({"SEED_SCRIPT": str(work / "src/scripts/seed.js")})
        if rc != 0 or any("seed" in line for line in log) or "seed skipped" not in out:
            fails.append(f"medusa: an absent seed script must be skipped with a message: rc={rc} {log}\n{out}")
    return fails


if __name__ == "__main__":
    problems = main() + medusa_main()
    for p in problems:
        print("FAIL", p)
    sys.exit(1 if problems else 0)
