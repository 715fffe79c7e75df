//! The real API server's rejections of updates that charts trip over on day two, with the
//! `Status` bodies kube-apiserver sends:
//!
//! - a Job's `spec.template` (and `selector`, `completions`) is immutable
//!   (`pkg/apis/batch/validation`: `ValidateImmutableField`, 422 Invalid);
//! - a StatefulSet may change only `replicas`, `ordinals`, `template`, `updateStrategy`,
//!   `revisionHistoryLimit`, `persistentVolumeClaimRetentionPolicy` and `minReadySeconds`
//!   (`pkg/apis/apps/validation`, 422 Invalid with a Forbidden cause);
//! - a PVC's storage request may not go below `status.capacity`
//!   (`ValidatePersistentVolumeClaimUpdate` with RecoverVolumeExpansionFailure, on by default
//!   since 1.32; older servers say "field can not be less than previous value"), 422 Invalid;
//! - a PVC may grow only when it is Bound and its StorageClass has `allowVolumeExpansion: true`
//!   (the `PersistentVolumeClaimResize` admission plugin, 403 Forbidden).
//!
//! Validation runs on client writes (PUT, every PATCH flavour, server-side apply, dry runs too),
//! after defaulting and before the object is stored; status writes skip it, as on the real server.

use serde_json::{Value, json};

use crate::kinds::{KINDS, Kind};
use crate::store::{ApiError, Store};

/// A field error as `field.Error` renders it: `ErrorBody()` is `"<Type>: <detail>"` for
/// Forbidden and `"Invalid value: <value>: <detail>"` for Invalid.
struct FieldError {
    field: &'static str,
    cause: &'static str,
    body: String,
}

impl FieldError {
    fn forbidden(field: &'static str, detail: &str) -> FieldError {
        FieldError {
            field,
            cause: "FieldValueForbidden",
            body: format!("Forbidden: {detail}"),
        }
    }

    fn immutable(field: &'static str, value: &str) -> FieldError {
        FieldError {
            field,
            cause: "FieldValueInvalid",
            body: format!("Invalid value: {value}: field is immutable"),
        }
    }
}

/// `apierrors.NewInvalid`: 422, reason Invalid, `details.kind` the Kind (not the resource),
/// one cause per field error, message `<Kind>[.<group>] "<name>" is invalid: <errors>`.
fn invalid(kind: &Kind, name: &str, errs: Vec<FieldError>) -> ApiError {
    let qualified = if kind.group.is_empty() {
        kind.kind.to_string()
    } else {
        format!("{}.{}", kind.kind, kind.group)
    };
    let rendered: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.field, e.body)).collect();
    let list = match rendered.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.cause, "message": e.body, "field": e.field}))
        .collect();
    let mut details = json!({"name": name, "kind": kind.kind, "causes": causes});
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    ApiError::new(
        422,
        "Invalid",
        format!("{qualified} \"{name}\" is invalid: {list}"),
    )
    .with_details(details)
}

/// `admission.NewForbidden`: 403, reason Forbidden, `details.kind` the resource (plural).
fn forbidden(kind: &Kind, name: &str, why: &str) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!("{} \"{name}\" is forbidden: {why}", kind.plural),
    )
    .with_details(json!({"name": name, "kind": kind.plural}))
}

/// Checks an update of `old` into `new` (both already defaulted) the way the real server does.
pub fn check_update(store: &Store, kind: &Kind, old: &Value, new: &Value) -> Result<(), ApiError> {
    crate::event_rules::on_update(kind, old, new)?;
    let name = old["metadata"]["name"].as_str().unwrap_or_default();
    let errs = match (kind.group, kind.kind) {
        ("batch", "Job") => job_errors(old, new),
        ("apps", "StatefulSet") => statefulset_errors(old, new),
        ("", "PersistentVolumeClaim") => pvc_errors(old, new),
        _ => Vec::new(),
    };
    if !errs.is_empty() {
        return Err(invalid(kind, name, errs));
    }
    if (kind.group, kind.kind) == ("", "PersistentVolumeClaim") {
        pvc_resize_admission(store, kind, name, old, new)?;
    }
    Ok(())
}

fn job_errors(old: &Value, new: &Value) -> Vec<FieldError> {
    let (o, n) = (&old["spec"], &new["spec"]);
    let mut errs = Vec::new();
    if o["completions"] != n["completions"] {
        errs.push(FieldError::immutable(
            "spec.completions",
            &n["completions"].to_string(),
        ));
    }
    if o["selector"] != n["selector"] {
        errs.push(FieldError::immutable("spec.selector", "v1.LabelSelector{...}"));
    }
    if o["template"] != n["template"] {
        // The real server prints the whole internal Go value here (`%#v`, kilobytes of it).
        errs.push(FieldError::immutable(
            "spec.template",
            "core.PodTemplateSpec{ObjectMeta:v1.ObjectMeta{...}, Spec:core.PodSpec{...}}",
        ));
    }
    errs
}

/// The StatefulSet spec fields an update may change.
const STATEFULSET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn statefulset_errors(old: &Value, new: &Value) -> Vec<FieldError> {
    let fixed = |v: &Value| {
        let mut spec = v["spec"].clone();
        if let Some(m) = spec.as_object_mut() {
            for field in STATEFULSET_MUTABLE {
                m.remove(*field);
            }
        }
        spec
    };
    if fixed(old) == fixed(new) {
        return Vec::new();
    }
    vec![FieldError::forbidden(
        "spec",
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', \
         'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and \
         'minReadySeconds' are forbidden",
    )]
}

fn storage(v: &Value, at: &str) -> Option<f64> {
    let q = match at {
        "spec" => &v["spec"]["resources"]["requests"]["storage"],
        _ => &v["status"]["capacity"]["storage"],
    };
    quantity(q.as_str()?)
}

fn pvc_errors(old: &Value, new: &Value) -> Vec<FieldError> {
    let (Some(was), Some(now)) = (storage(old, "spec"), storage(new, "spec")) else {
        return Vec::new();
    };
    let capacity = storage(old, "status").unwrap_or(was);
    // Below the request but above the capacity is allowed: recovery from a failed expansion.
    if now < was && now <= capacity {
        return vec![FieldError::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        )];
    }
    Vec::new()
}

fn pvc_resize_admission(
    store: &Store,
    kind: &Kind,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let (Some(was), Some(now)) = (storage(old, "spec"), storage(new, "spec")) else {
        return Ok(());
    };
    if now <= was {
        return Ok(());
    }
    if old["status"]["phase"] != "Bound" {
        return Err(forbidden(
            kind,
            name,
            "Only bound persistent volume claims can be expanded",
        ));
    }
    let class = old["spec"]["storageClassName"].as_str().unwrap_or_default();
    let same_class = !class.is_empty() && new["spec"]["storageClassName"].as_str() == Some(class);
    let expandable =
        same_class && storage_class(store, class).is_some_and(|sc| sc["allowVolumeExpansion"] == true);
    if !expandable {
        return Err(forbidden(
            kind,
            name,
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
    }
    Ok(())
}

fn storage_classes() -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == "storage.k8s.io" && k.plural == "storageclasses")
}

fn storage_class<'a>(store: &'a Store, name: &str) -> Option<&'a Value> {
    store.get(storage_classes()?, "", name)
}

/// The `DefaultStorageClass` admission plugin: a new claim without `storageClassName` (absent,
/// not `""`, which asks for no class) gets the default class, the newest if several are marked.
pub fn default_storage_class(store: &Store) -> Option<String> {
    let kind = storage_classes()?;
    store
        .list(kind, None, &Default::default(), &Default::default())
        .into_iter()
        .filter(|sc| sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true")
        .max_by_key(|sc| sc["metadata"]["creationTimestamp"].as_str().map(str::to_string))
        .and_then(|sc| sc["metadata"]["name"].as_str().map(str::to_string))
}

/// A resource quantity in base units (`5Gi`, `500M`, `1.5Gi`, `1073741824`); `None` if malformed.
pub fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let text = text.trim();
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((text, 1.0));
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_plural;

    fn kind(group: &str, plural: &str) -> &'static Kind {
        by_plural(group, "v1", plural).expect("known kind")
    }

    fn pvc(size: &str, class: Option<&str>, phase: &str) -> Value {
        let mut v = json!({"metadata": {"name": "data"},
            "spec": {"resources": {"requests": {"storage": size}}},
            "status": {"phase": phase, "capacity": {"storage": size}}});
        if let Some(c) = class {
            v["spec"]["storageClassName"] = json!(c);
        }
        v
    }

    #[test]
    fn quantities_parse_in_both_unit_systems() {
        assert_eq!(quantity("5Gi"), Some(5.0 * 1_073_741_824.0));
        assert_eq!(quantity("1024Mi"), quantity("1Gi"));
        assert_eq!(quantity("500M"), Some(5e8));
        assert_eq!(quantity("1073741824"), quantity("1Gi"));
        assert!(quantity("1.5Gi").is_some_and(|q| q > quantity("1Gi").unwrap_or(0.0)));
        assert_eq!(quantity("ten"), None);
    }

    #[test]
    fn job_template_change_is_invalid_like_the_real_server() {
        let store = Store::new();
        let jobs = kind("batch", "jobs");
        let old = json!({"metadata": {"name": "setup-1"}, "spec": {"backoffLimit": 6,
            "template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}});
        let mut new = old.clone();
        new["spec"]["backoffLimit"] = json!(3);
        assert!(
            check_update(&store, jobs, &old, &new).is_ok(),
            "backoffLimit is mutable"
        );
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b");
        let e = check_update(&store, jobs, &old, &new).expect_err("template is immutable");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(
            e.message
                .starts_with("Job.batch \"setup-1\" is invalid: spec.template: Invalid value: ")
        );
        assert!(e.message.ends_with(": field is immutable"), "{}", e.message);
        let d = e.details.expect("details");
        assert_eq!(
            (d["group"].as_str(), d["kind"].as_str()),
            (Some("batch"), Some("Job"))
        );
        assert_eq!(d["causes"][0]["reason"], "FieldValueInvalid");
        assert_eq!(d["causes"][0]["field"], "spec.template");
    }

    #[test]
    fn statefulset_service_name_change_is_forbidden() {
        let store = Store::new();
        let sts = kind("apps", "statefulsets");
        let old = json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "replicas": 1}});
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(2);
        assert!(check_update(&store, sts, &old, &new).is_ok());
        new["spec"]["serviceName"] = json!("db-headless");
        let e = check_update(&store, sts, &old, &new).expect_err("serviceName is fixed");
        assert_eq!(e.code, 422);
        assert!(
            e.message.starts_with(
                "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec"
            )
        );
    }

    #[test]
    fn pvc_shrink_is_invalid_and_growth_needs_an_expandable_class() {
        let mut store = Store::new();
        let pvcs = kind("", "persistentvolumeclaims");
        let e = check_update(
            &store,
            pvcs,
            &pvc("10Gi", Some("local-path"), "Bound"),
            &pvc("5Gi", Some("local-path"), "Bound"),
        )
        .expect_err("shrink");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "PersistentVolumeClaim \"data\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        );
        assert_eq!(
            e.details.as_ref().map(|d| d["causes"][0]["reason"].clone()),
            Some(json!("FieldValueForbidden"))
        );
        // Equal sizes in other units are not a change.
        assert!(
            check_update(
                &store,
                pvcs,
                &pvc("1Gi", None, "Bound"),
                &pvc("1024Mi", None, "Bound")
            )
            .is_ok()
        );

        let grow = |store: &Store, class: Option<&str>, phase: &str| {
            check_update(store, pvcs, &pvc("5Gi", class, phase), &pvc("10Gi", class, phase))
        };
        let e = grow(&store, Some("local-path"), "Bound").expect_err("no such class");
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "persistentvolumeclaims \"data\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
        );
        let classes = storage_classes().expect("kind");
        store
            .create(
                classes,
                None,
                json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}),
                "t",
            )
            .expect("create class");
        store
            .create(
                classes,
                None,
                json!({"metadata": {"name": "longhorn"}, "allowVolumeExpansion": true}),
                "t",
            )
            .expect("create class");
        assert_eq!(
            grow(&store, Some("local-path"), "Bound").map_err(|e| e.code),
            Err(403)
        );
        assert_eq!(grow(&store, None, "Bound").map_err(|e| e.code), Err(403));
        assert_eq!(
            grow(&store, Some("longhorn"), "Pending").map_err(|e| e.message.contains("Only bound")),
            Err(true)
        );
        assert!(grow(&store, Some("longhorn"), "Bound").is_ok());
    }

    #[test]
    fn the_newest_default_class_is_picked() {
        let mut store = Store::new();
        let classes = storage_classes().expect("kind");
        assert_eq!(default_storage_class(&store), None);
        let default = json!({"storageclass.kubernetes.io/is-default-class": "true"});
        store
            .create(
                classes,
                None,
                json!({"metadata": {"name": "a", "annotations": default}}),
                "t",
            )
            .expect("create");
        store
            .create(classes, None, json!({"metadata": {"name": "b"}}), "t")
            .expect("create");
        assert_eq!(default_storage_class(&store).as_deref(), Some("a"));
    }
}
