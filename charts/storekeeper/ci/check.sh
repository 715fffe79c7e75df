#!/bin/sh
# Lints and renders charts/storekeeper with helm 3 and helm 4, with the default values and with
# every ci/*-values.yaml; then checks that bad settings are refused at render time.
# Usage: charts/storekeeper/ci/check.sh   (HELM3/HELM4 override the binaries)
set -eu
chart=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$chart/../.." && pwd)
HELM3=${HELM3:-$root/.tools/helm3}
HELM4=${HELM4:-$root/.tools/helm4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for helm in "$HELM3" "$HELM4"; do
    v=$("$helm" version --short)
    for values in "" "$chart"/ci/*-values.yaml; do
        set -- --namespace storekeeper
        [ -n "$values" ] && set -- "$@" -f "$values"
        label=defaults
        [ -n "$values" ] && label=$(basename "$values")
        echo "== $v lint+template $label"
        "$helm" lint --strict "$chart" "$@" >"$out/lint" 2>&1 || { cat "$out/lint"; exit 1; }
        "$helm" template sk "$chart" "$@" >"$out/rendered.yaml"
        # Every document has a kind; the Deployment and the ClusterRole are always there.
        grep -q '^kind: Deployment$' "$out/rendered.yaml"
        grep -q '^kind: ClusterRole$' "$out/rendered.yaml"
    done
    # The HA values render two replicas, a rolling update and the Lease Role; defaults render
    # one replica that is recreated (never two daemons without election).
    "$helm" template sk "$chart" -f "$chart/ci/ha-values.yaml" >"$out/ha.yaml"
    grep -q 'replicas: 2$' "$out/ha.yaml"
    grep -q 'type: RollingUpdate' "$out/ha.yaml"
    grep -q '^kind: Role$' "$out/ha.yaml"
    grep -q 'leader_election' "$out/ha.yaml"
    "$helm" template sk "$chart" >"$out/default.yaml"
    grep -q 'replicas: 1$' "$out/default.yaml"
    grep -q 'type: Recreate' "$out/default.yaml"
    if grep -q '^kind: Role$' "$out/default.yaml"; then echo "Lease Role without leader election"; exit 1; fi
    # Refused: two replicas without election; an empty inline source; an unknown source type.
    for bad in "--set replicaCount=2" "--set source.type=inline" "--set source.type=svn" "--set source.git.url="; do
        # shellcheck disable=SC2086
        if "$helm" template sk "$chart" $bad >/dev/null 2>&1; then
            echo "$v: template accepted bad values: $bad"
            exit 1
        fi
    done
done
echo "charts/storekeeper: ok"
