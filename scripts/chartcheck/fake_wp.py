#!/usr/bin/env python3
"""A stand-in for `wp` (and `php -r`) used to dry-run charts/woocommerce-store/files/setup.sh.

It keeps a tiny WordPress/WooCommerce state in $FAKE_WP_STATE/state.json and appends every call to
$FAKE_WP_STATE/calls.log as one JSON line {"argv": [...], "mutates": bool}, so a test can assert
what a run changed. Installed as `wp` and `php` on PATH by scripts/chartcheck/setup_dryrun.py.
"""
import json
import os
import re
import sys
from pathlib import Path

STATE_DIR = Path(os.environ["FAKE_WP_STATE"])
STATE = STATE_DIR / "state.json"


def load():
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"installed": False, "options": {}, "plugins": {}, "themes": {}, "active": [],
            "methods": [], "taxes": [], "skus": [], "cod": None}


def save(state):
    STATE.write_text(json.dumps(state, indent=1, sort_keys=True))


def log(argv, mutates):
    with open(STATE_DIR / "calls.log", "a") as f:
        f.write(json.dumps({"argv": argv, "mutates": mutates}) + "\n")


def flags(args):
    out, pos = {}, []
    for a in args:
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            out[k] = v
        else:
            pos.append(a)
    return out, pos


def php(argv):
    code = argv[1] if len(argv) > 1 and argv[0] == "-r" else ""
    if "mysqli_connect" in code:
        return 0 if os.environ.get("FAKE_DB_UP", "1") == "1" else 1
    if "version_compare" in code:
        def parts(v):
            return [int(x) for x in re.findall(r"\d+", v)]
        a, b = argv[2], argv[3]
        return 0 if parts(a) < parts(b) else 1
    if "json_encode" in code:
        print(json.dumps({"title": os.environ.get("SHIPPING_TITLE", ""), "cost": os.environ.get("SHIPPING_COST", "")}))
        return 0
    print(f"fake php: unexpected code {code!r}", file=sys.stderr)
    return 3


def wp(argv):
    opts, pos = flags(argv)
    for noise in ("path", "no-color", "user"):
        opts.pop(noise, None)
    if "user" not in dict(flags(argv)[0]) and pos[:1] == ["wc"] and pos[:2] != ["wc", "update"]:
        print("fake wp: wc command without --user", file=sys.stderr)
        return 4
    st = load()
    cmd = pos[:2]
    mutates = False
    rc = 0
    if cmd == ["core", "is-installed"]:
        rc = 0 if st["installed"] else 1
    elif cmd == ["core", "install"]:
        for need in ("url", "title", "admin_user", "admin_password", "admin_email"):
            if not opts.get(need):
                print(f"fake wp: core install without --{need}", file=sys.stderr)
                return 5
        st["installed"] = True
        st["options"].update(blogname=opts["title"], siteurl=opts["url"], permalink_structure="")
        mutates = True
    elif not st["installed"]:
        if cmd == ["core", "version"]:
            print(st.get("core", "7.1.0"))
            save(st)
            log(argv, False)
            return 0
        print("Error: The site you have requested is not installed.", file=sys.stderr)
        return 1
    elif cmd == ["core", "version"]:
        print(st.get("core", "7.1.0"))
    elif cmd == ["core", "update"]:
        st["core"] = opts["version"]
        mutates = True
    elif cmd == ["core", "update-db"]:
        pass  # a no-op when the schema is current, which the fake's always is
    elif cmd == ["option", "get"]:
        if pos[2] in st["options"]:
            print(st["options"][pos[2]])
        else:
            rc = 1
    elif cmd == ["option", "update"]:
        value = json.loads(pos[3]) if opts.get("format") == "json" else pos[3]
        st["options"][pos[2]] = value if isinstance(value, str) else json.dumps(value)
        mutates = True
    elif cmd == ["rewrite", "structure"]:
        st["options"]["permalink_structure"] = pos[2]
        mutates = True
    elif pos[0] in ("plugin", "theme"):
        kind = "plugins" if pos[0] == "plugin" else "themes"
        slug = pos[2] if len(pos) > 2 else None
        if pos[1] == "get":
            if slug in st[kind]:
                print(st[kind][slug])
            else:
                rc = 1
        elif pos[1] == "install":
            st[kind][slug] = opts["version"]
            mutates = True
        elif pos[1] == "is-active":
            rc = 0 if f"{kind}:{slug}" in st["active"] else 1
        elif pos[1] == "activate":
            if slug not in st[kind]:
                return 1
            if kind == "themes":
                st["active"] = [a for a in st["active"] if not a.startswith("themes:")]
            st["active"].append(f"{kind}:{slug}")
            mutates = True
        else:
            rc = 2
    elif pos[0] == "wc":
        if "plugins:woocommerce" not in st["active"]:
            print("Error: 'wc' is not a registered wp command.", file=sys.stderr)
            return 1
        sub = pos[1:3]
        if pos[1:2] == ["update"]:
            pass  # runs pending WooCommerce DB updates; the fake has none
        elif sub == ["tool", "run"]:
            pass  # install_pages creates only missing pages: idempotent by itself
        elif sub == ["payment_gateway", "update"]:
            st["cod"] = opts["enabled"]
        elif sub == ["shipping_zone_method", "list"]:
            print("method_id")
            for m in st["methods"]:
                print(m)
        elif sub == ["shipping_zone_method", "create"]:
            json.loads(opts["settings"])
            st["methods"].append(opts["method_id"])
            mutates = True
        elif sub == ["tax", "list"]:
            print("country,name")
            for t in st["taxes"]:
                print(f"{t['country']},{t['name']}")
        elif sub == ["tax", "create"]:
            st["taxes"].append({"country": opts["country"], "name": opts["name"], "rate": opts["rate"]})
            mutates = True
        elif sub == ["product", "list"]:
            print(sum(1 for s in st["skus"] if s == opts["sku"]))
        elif sub == ["product", "create"]:
            if opts["sku"] in st["skus"]:
                print("Error: Invalid or duplicated SKU.", file=sys.stderr)
                return 1
            st["skus"].append(opts["sku"])
            mutates = True
        else:
            rc = 2
    else:
        rc = 2
    if rc == 2:
        print(f"fake wp: unknown command {pos}", file=sys.stderr)
    save(st)
    log(argv, mutates)
    return rc


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-php"]:
        sys.exit(php(sys.argv[2:]))
    sys.exit(wp(sys.argv[1:]))
