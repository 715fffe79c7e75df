//! The static table of resource kinds the server knows, plus the discovery and OpenAPI documents
//! derived from it. A fixed table (rather than CRD support) keeps the server small: it lists what
//! our charts and the daemon actually use.

use serde_json::{Value, json};

/// One served resource: where it lives in the URL space and what it is called.
#[derive(Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short: &'static [&'static str],
}

macro_rules! kind {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr) => {
        kind!($g, $v, $p, $s, $k, $ns, [])
    };
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, [$($sh:expr),*]) => {
        Kind { group: $g, version: $v, plural: $p, singular: $s, kind: $k, namespaced: $ns, short: &[$($sh),*] }
    };
}

pub static KINDS: &[Kind] = &[
    kind!("", "v1", "namespaces", "namespace", "Namespace", false, ["ns"]),
    kind!("", "v1", "secrets", "secret", "Secret", true),
    kind!("", "v1", "configmaps", "configmap", "ConfigMap", true, ["cm"]),
    kind!("", "v1", "services", "service", "Service", true, ["svc"]),
    kind!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        ["sa"]
    ),
    kind!(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        ["pvc"]
    ),
    kind!("", "v1", "pods", "pod", "Pod", true, ["po"]),
    kind!(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        ["quota"]
    ),
    kind!(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        ["limits"]
    ),
    kind!("", "v1", "events", "event", "Event", true, ["ev"]),
    kind!("", "v1", "endpoints", "endpoints", "Endpoints", true, ["ep"]),
    kind!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        ["deploy"]
    ),
    kind!(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        ["sts"]
    ),
    kind!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        ["rs"]
    ),
    kind!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, ["ds"]),
    kind!("batch", "v1", "jobs", "job", "Job", true),
    kind!("batch", "v1", "cronjobs", "cronjob", "CronJob", true, ["cj"]),
    kind!(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        ["ing"]
    ),
    kind!(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        ["netpol"]
    ),
    kind!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        ["pdb"]
    ),
    kind!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true),
    kind!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false
    ),
    kind!("coordination.k8s.io", "v1", "leases", "lease", "Lease", true),
    // The newer Events API (what kube-runtime's Recorder and storekeeper write). On a real
    // server it is the same storage as core/v1 events, converted; here it is its own collection.
    kind!("events.k8s.io", "v1", "events", "event", "Event", true, ["ev"]),
    kind!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        ["sc"]
    ),
    kind!(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        ["hpa"]
    ),
    kind!(
        "cert-manager.io",
        "v1",
        "certificates",
        "certificate",
        "Certificate",
        true,
        ["cert"]
    ),
    kind!("cert-manager.io", "v1", "issuers", "issuer", "Issuer", true),
    kind!(
        "cert-manager.io",
        "v1",
        "clusterissuers",
        "clusterissuer",
        "ClusterIssuer",
        false
    ),
];

impl Kind {
    /// `v1` for the core group, `group/version` otherwise (the form used in `apiVersion`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// URL prefix of the group version: `/api/v1` or `/apis/{group}/{version}`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The kind's index in [`KINDS`], its compact identity inside the store.
    pub fn id(&self) -> usize {
        KINDS
            .iter()
            .position(|k| std::ptr::eq(k, self))
            .unwrap_or(usize::MAX)
    }
}

/// Resources in kubectl's `all` category (`kubectl get all`).
const ALL_CATEGORY: &[&str] = &[
    "pods",
    "services",
    "deployments",
    "statefulsets",
    "replicasets",
    "daemonsets",
    "jobs",
    "cronjobs",
];

/// Finds a kind by its URL prefix (`/api/v1`, `/apis/apps/v1`) and plural name.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Every served group version as `(group, version)`, core first, without duplicates.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

/// `GET /api`: the legacy core-group discovery document.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

/// `GET /apis`: every named group with its one version.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` or `/apis/{g}/{v}`: the resources of one group version, `None` if not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            json!({
                "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                "kind": k.kind, "verbs": verbs, "shortNames": k.short,
                "categories": if ALL_CATEGORY.contains(&k.plural) { json!(["all"]) } else { json!([]) },
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `GET /openapi/v3`: one entry per group version. Both helms download this before install.
pub fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions() {
        let key = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let url = format!("/openapi/v3/{key}?hash=testbed");
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/{gv}`: a stub with, per kind, one PATCH operation that carries the kind's
/// `x-kubernetes-group-version-kind` and a `fieldValidation` parameter. Seeing that parameter,
/// helm and kubectl leave validation to the server and skip client-side schema checks, so no real
/// schemas are needed.
pub fn openapi_group_version(gv_path: &str) -> Option<Value> {
    let (group, version) = match gv_path.split('/').collect::<Vec<_>>()[..] {
        ["api", v] => ("", v),
        ["apis", g, v] => (g, v),
        _ => return None,
    };
    let mut paths = serde_json::Map::new();
    for k in KINDS.iter().filter(|k| k.group == group && k.version == version) {
        let path = if k.namespaced {
            format!("{}/namespaces/{{namespace}}/{}/{{name}}", k.prefix(), k.plural)
        } else {
            format!("{}/{}/{{name}}", k.prefix(), k.plural)
        };
        let op = json!({
            "operationId": format!("patch{}", k.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(path, json!({"patch": op}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_table_positions() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(k.id(), i);
        }
    }

    #[test]
    fn core_group_version_is_v1() {
        let list = api_resource_list("", "v1").expect("core group");
        assert_eq!(list["groupVersion"], "v1");
        assert!(api_resource_list("nope", "v1").is_none());
    }
}
