//! Emulation of what the API server's defaulting and the controllers would do, applied
//! synchronously on every write: API defaults (Job completions, Deployment replicas...),
//! allocations (Service clusterIP), ready statuses, and the Deployment's ReplicaSet. Synchronous
//! because the readiness checks of both helms only need the end state, and it keeps tests
//! deterministic. `NEVER_READY_ANNOTATION` keeps an object in a not-ready state.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::NEVER_READY_ANNOTATION;
use crate::kinds::{Kind, by_plural};
use crate::store::{Store, now};

/// Whether the object (or its pod template) carries the never-ready annotation.
fn never_ready(obj: &Value) -> bool {
    let marked = |meta: &Value| meta["annotations"][NEVER_READY_ANNOTATION] == "true";
    marked(&obj["metadata"]) || marked(&obj["spec"]["template"]["metadata"])
}

/// Sets `obj[field]` to `value` if it is absent.
fn default(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(field).or_insert(value);
    }
}

fn condition(kind: &str, ok: bool, reason: &str, time: &str) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "reason": reason,
           "lastTransitionTime": time, "lastUpdateTime": time, "message": reason})
}

/// Keeps a timestamp from the previous status so re-admission doesn't churn it.
fn kept(old: Option<&Value>, field: &str, fallback: &str) -> Value {
    old.and_then(|o| o["status"][field].as_str())
        .map_or_else(|| json!(fallback), |t| json!(t))
}

/// Defaults and status for an object about to be stored.
pub fn admit(store: &mut Store, kind: &Kind, old: Option<&Value>, obj: &mut Value) {
    let had_spec = obj.get("spec").is_some();
    if kind.kind == "Namespace" && !had_spec {
        obj["spec"] = json!({});
    }
    admit_kind(store, kind, old, obj);
    // `obj["spec"]` indexing inserts a null; don't leave one on kinds without a spec.
    if !had_spec
        && obj["spec"].is_null()
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("spec");
    }
}

fn admit_kind(store: &mut Store, kind: &Kind, old: Option<&Value>, obj: &mut Value) {
    let time = now();
    let generation = obj["metadata"]["generation"].clone();
    let not_ready = never_ready(obj);
    let spec = &mut obj["spec"];
    let status = match (kind.group, kind.kind) {
        ("", "Namespace") => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            default(&mut obj["spec"], "finalizers", json!(["kubernetes"]));
            json!({"phase": "Active"})
        }
        ("", "Secret") => {
            // As the real server does: stringData is write-only, folded into data.
            let string_data = obj.as_object_mut().and_then(|m| m.remove("stringData"));
            if let Some(Value::Object(sd)) = string_data {
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default();
                    obj["data"][k.as_str()] = json!(STANDARD.encode(text));
                }
            }
            default(obj, "type", json!("Opaque"));
            return;
        }
        ("", "Service") => {
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            if spec["type"] != "ExternalName" && spec["clusterIP"].as_str().is_none_or(str::is_empty) {
                let ip = match old.and_then(|o| o["spec"]["clusterIP"].as_str()) {
                    Some(ip) => ip.to_string(),
                    None => store.allocate_ip(),
                };
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    default(p, "targetPort", port);
                }
            }
            json!({"loadBalancer": {}})
        }
        ("apps", "Deployment") => {
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            let n = spec["replicas"].clone();
            let ready = if not_ready { json!(0) } else { n.clone() };
            let conditions = if not_ready {
                json!([
                    condition("Available", false, "MinimumReplicasUnavailable", &time),
                    condition("Progressing", true, "ReplicaSetUpdated", &time)
                ])
            } else {
                json!([
                    condition("Available", true, "MinimumReplicasAvailable", &time),
                    condition("Progressing", true, "NewReplicaSetAvailable", &time)
                ])
            };
            let mut st = json!({"observedGeneration": generation, "replicas": n, "updatedReplicas": n,
                   "readyReplicas": ready, "availableReplicas": ready, "conditions": conditions});
            if not_ready {
                st["unavailableReplicas"] = n;
            }
            st
        }
        ("apps", "ReplicaSet") => {
            default(spec, "replicas", json!(1));
            let n = spec["replicas"].clone();
            let ready = if not_ready { json!(0) } else { n.clone() };
            json!({"observedGeneration": generation, "replicas": n, "fullyLabeledReplicas": n,
                   "readyReplicas": ready, "availableReplicas": ready})
        }
        ("apps", "StatefulSet") => {
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            let n = spec["replicas"].clone();
            let revision = format!(
                "{}-{}",
                obj["metadata"]["name"].as_str().unwrap_or_default(),
                template_hash(&obj["spec"]["template"])
            );
            if not_ready {
                json!({"observedGeneration": generation, "replicas": n, "readyReplicas": 0,
                       "currentReplicas": 0, "updatedReplicas": n, "availableReplicas": 0,
                       "currentRevision": format!("{revision}-old"), "updateRevision": revision})
            } else {
                json!({"observedGeneration": generation, "replicas": n, "readyReplicas": n,
                       "currentReplicas": n, "updatedReplicas": n, "availableReplicas": n,
                       "currentRevision": revision, "updateRevision": revision})
            }
        }
        ("apps", "DaemonSet") => {
            let n = if not_ready { 0 } else { 1 };
            json!({"observedGeneration": generation, "desiredNumberScheduled": 1,
                   "currentNumberScheduled": 1, "updatedNumberScheduled": 1, "numberReady": n,
                   "numberAvailable": n, "numberMisscheduled": 0})
        }
        ("batch", "Job") => {
            default(spec, "completions", json!(1));
            default(spec, "parallelism", json!(1));
            default(spec, "backoffLimit", json!(6));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
            crate::jobs::status(obj, old, not_ready)
        }
        ("", "PersistentVolumeClaim") => {
            // The DefaultStorageClass admission plugin, on create only.
            if old.is_none()
                && spec.get("storageClassName").is_none()
                && let Some(class) = crate::validation::default_storage_class(store)
            {
                spec["storageClassName"] = json!(class);
            }
            if not_ready {
                json!({"phase": "Pending"})
            } else {
                json!({"phase": "Bound", "accessModes": spec["accessModes"],
                       "capacity": spec["resources"]["requests"]})
            }
        }
        ("", "Pod") if crate::jobs::is_finished_pod(kind, obj) => return,
        ("", "Pod") => {
            let ready = !not_ready;
            json!({"phase": if ready { "Running" } else { "Pending" },
                   "startTime": kept(old, "startTime", &time),
                   "conditions": [condition("Ready", ready, "PodReady", &time),
                                  condition("ContainersReady", ready, "ContainersReady", &time)]})
        }
        _ => return,
    };
    obj["status"] = status;
}

/// FNV-1a of the template's JSON: a stable stand-in for `pod-template-hash`.
fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Work after a write: a Deployment gets its current ReplicaSet (owned, `controller: true`, same
/// pod template plus `pod-template-hash`, which helm 3's `--wait` looks up by the Deployment's
/// selector); ReplicaSets of older templates are scaled to zero.
pub fn after_write(store: &mut Store, kind: &Kind, obj: &Value) {
    if (kind.group, kind.kind) == ("batch", "Job") {
        crate::jobs::create_pods(store, obj, never_ready(obj));
        return;
    }
    if (kind.group, kind.kind) != ("apps", "Deployment") {
        return;
    }
    let Some(rs_kind) = by_plural("apps", "v1", "replicasets") else {
        return;
    };
    let meta = &obj["metadata"];
    let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
        return;
    };
    let hash = template_hash(&obj["spec"]["template"]);
    let rs_name = format!("{name}-{hash}");
    let mut template = obj["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = obj["spec"]["selector"].clone();
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut annotations = json!({"deployment.kubernetes.io/revision": "1"});
    if never_ready(obj) {
        annotations[NEVER_READY_ANNOTATION] = json!("true");
    }
    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
        "uid": meta["uid"], "controller": true, "blockOwnerDeletion": true}]);
    let desired = json!({
        "metadata": {"name": rs_name, "namespace": ns, "labels": template["metadata"]["labels"],
                     "annotations": annotations, "ownerReferences": owner},
        "spec": {"replicas": obj["spec"]["replicas"], "selector": selector, "template": template},
    });

    let uid = meta["uid"].clone();
    let owned: Vec<Value> = store
        .list(rs_kind, Some(ns), &Default::default(), &Default::default())
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .collect();
    for rs in &owned {
        let current = rs["metadata"]["name"] == rs_name.as_str();
        let mut new = rs.clone();
        if current {
            new["metadata"]["annotations"] = desired["metadata"]["annotations"].clone();
            new["spec"]["replicas"] = desired["spec"]["replicas"].clone();
        } else {
            new["spec"]["replicas"] = json!(0);
        }
        if new != *rs {
            store.replace(rs_kind, rs, new, Some("kube-controller-manager"));
        }
    }
    if !owned.iter().any(|rs| rs["metadata"]["name"] == rs_name.as_str()) {
        // Cannot fail: the namespace exists (the Deployment is in it) and the name is new.
        let _ = store.create(rs_kind, Some(ns), desired, "kube-controller-manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::LabelSelector;

    fn setup() -> Store {
        let mut s = Store::new();
        let ns = by_plural("", "v1", "namespaces").expect("kind");
        s.create(ns, None, json!({"metadata": {"name": "a"}}), "t")
            .expect("create namespace");
        s
    }

    fn deployment(annotations: Value) -> Value {
        json!({"metadata": {"name": "web", "annotations": annotations},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    #[test]
    fn deployment_gets_ready_status_and_replicaset() {
        let mut s = setup();
        let deploys = by_plural("apps", "v1", "deployments").expect("kind");
        let d = s
            .create(deploys, Some("a"), deployment(json!({})), "t")
            .expect("create");
        assert_eq!(d["status"]["availableReplicas"], 1);
        assert_eq!(d["status"]["conditions"][1]["reason"], "NewReplicaSetAvailable");
        let rs_kind = by_plural("apps", "v1", "replicasets").expect("kind");
        let sel = LabelSelector::parse("app=web").expect("selector");
        let rss = s.list(rs_kind, Some("a"), &sel, &Default::default());
        assert_eq!(rss.len(), 1);
        assert_eq!(rss[0]["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(rss[0]["status"]["readyReplicas"], 1);
    }

    #[test]
    fn never_ready_annotation_keeps_objects_unready() {
        let mut s = setup();
        let deploys = by_plural("apps", "v1", "deployments").expect("kind");
        let d = s
            .create(
                deploys,
                Some("a"),
                deployment(json!({NEVER_READY_ANNOTATION: "true"})),
                "t",
            )
            .expect("create");
        assert_eq!(d["status"]["availableReplicas"], 0);
        let jobs = by_plural("batch", "v1", "jobs").expect("kind");
        let j = s
            .create(
                jobs,
                Some("a"),
                json!({"metadata": {"name": "j"}, "spec": {}}),
                "t",
            )
            .expect("create");
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["status"]["succeeded"], 1);
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut s = setup();
        let secrets = by_plural("", "v1", "secrets").expect("kind");
        let obj = json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}});
        let stored = s.create(secrets, Some("a"), obj, "t").expect("create");
        assert_eq!(stored["data"]["a"], "Yg==");
        assert!(stored.get("stringData").is_none());
        assert_eq!(stored["type"], "Opaque");
    }
}
