//! The patch flavours the real clients send: JSON merge patch (RFC 7386, kubectl and the daemon),
//! strategic-merge patch (helm 3 upgrades), JSON patch (RFC 6902), and server-side apply with
//! per-field-manager ownership (helm 4, which re-applies even the namespace: an apply must never
//! drop fields another manager set).
//!
//! Ownership is kept the way the real server keeps it, as `metadata.managedFields` entries in
//! `FieldsV1` form (`{"f:metadata":{"f:labels":{"f:a":{}}}}`, list items as `k:{"name":"x"}`), so
//! clients that read managed fields see something real.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list field, as the Kubernetes types declare it (`patchMergeKey` for
/// strategic merge, `listMapKeys` for apply). `ports` is keyed by `containerPort` in containers and
/// by `port` in Services, told apart by the items themselves. `None` means the list is atomic.
fn list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => {
            Some("name")
        }
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

fn find_by_key<'a>(items: &'a mut [Value], key: &str, value: &Value) -> Option<&'a mut Value> {
    items.iter_mut().find(|i| i.get(key) == Some(value))
}

/// Strips strategic-merge directives (`$patch`, `$setElementOrder/…`, …) from a value that is
/// about to be stored as is.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Strategic-merge patch: like merge patch, but keyed lists (containers, env, volumes, ports...)
/// merge item by item, and the directives `$patch: replace|delete`, `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (order only, ignored) work.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(del)) = (t.get_mut(field), v) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match (t.get_mut(k), v) {
            (_, Value::Null) => {
                t.remove(k);
            }
            (Some(Value::Array(items)), Value::Array(patch_items)) => {
                merge_list(k, items, patch_items)?;
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic_merge(existing, v)?,
            _ => {
                t.insert(k.clone(), strip_directives(v));
            }
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        t.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list(field: &str, items: &mut Vec<Value>, patch_items: &[Value]) -> Result<(), String> {
    let Some(key) = list_key(field, items).or_else(|| list_key(field, patch_items)) else {
        *items = patch_items.iter().map(strip_directives).collect();
        return Ok(());
    };
    for pi in patch_items {
        if pi.get("$patch").and_then(Value::as_str) == Some("replace") {
            *items = patch_items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip_directives)
                .collect();
            return Ok(());
        }
    }
    for pi in patch_items {
        let kv = pi
            .get(key)
            .ok_or_else(|| format!("list {field:?} item lacks its merge key {key:?}"))?;
        if pi.get("$patch").and_then(Value::as_str) == Some("delete") {
            items.retain(|i| i.get(key) != Some(kv));
        } else if let Some(existing) = find_by_key(items, key, kv) {
            strategic_merge(existing, pi)?;
        } else {
            items.push(strip_directives(pi));
        }
    }
    Ok(())
}

/// RFC 6901 pointer split into unescaped tokens.
fn pointer_tokens(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let rest = ptr
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {ptr:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// RFC 6902 JSON patch with `add`, `remove`, `replace` and `test`.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let name = op["op"].as_str().ok_or("JSON patch op lacks \"op\"")?;
        let path = op["path"].as_str().ok_or("JSON patch op lacks \"path\"")?;
        let mut tokens = pointer_tokens(path)?;
        let last = tokens.pop().ok_or("JSON patch on the whole document")?;
        let parent = tokens
            .iter()
            .try_fold(&mut *target, |cur, t| match cur {
                Value::Object(m) => m.get_mut(t),
                Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                _ => None,
            })
            .ok_or_else(|| format!("JSON patch path {path:?} does not exist"))?;
        let value = op.get("value").cloned();
        match (name, parent) {
            ("add" | "replace", Value::Object(m)) => {
                if name == "replace" && !m.contains_key(&last) {
                    return Err(format!("JSON patch replace of missing {path:?}"));
                }
                m.insert(last, value.ok_or("JSON patch op lacks \"value\"")?);
            }
            ("add", Value::Array(a)) => {
                let v = value.ok_or("JSON patch op lacks \"value\"")?;
                let i = if last == "-" {
                    a.len()
                } else {
                    last.parse().map_err(|_| "bad array index")?
                };
                if i > a.len() {
                    return Err(format!("JSON patch index out of range in {path:?}"));
                }
                a.insert(i, v);
            }
            ("replace", Value::Array(a)) => {
                let slot = last.parse::<usize>().ok().and_then(|i| a.get_mut(i));
                *slot.ok_or("JSON patch index out of range")? =
                    value.ok_or("JSON patch op lacks \"value\"")?;
            }
            ("remove", Value::Object(m)) => {
                m.remove(&last)
                    .ok_or_else(|| format!("JSON patch remove of missing {path:?}"))?;
            }
            ("remove", Value::Array(a)) => match last.parse::<usize>() {
                Ok(i) if i < a.len() => {
                    a.remove(i);
                }
                _ => return Err("JSON patch index out of range".into()),
            },
            ("test", parent) => {
                let actual = match parent {
                    Value::Object(m) => m.get(&last),
                    Value::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                if actual != value.as_ref() {
                    return Err(format!("JSON patch test failed at {path:?}"));
                }
            }
            (other, _) => return Err(format!("unsupported JSON patch op {other:?}")),
        }
    }
    Ok(())
}

/// One step of a field path in `FieldsV1` spelling: `f:name` or `k:{"name":"x"}`.
pub type FieldPath = Vec<String>;

/// A set of owned fields. Leaves are scalars, atomic lists and empty maps; a keyed list item is
/// a member itself (its `.`), so an applier that stops applying an item removes the whole item.
pub type FieldSet = BTreeSet<FieldPath>;

fn item_key(key: &str, value: &Value) -> String {
    format!("k:{{{}:{}}}", Value::String(key.into()), value)
}

/// Metadata the server owns; never part of anyone's field set.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
];

/// The fields an object (as sent by a client) sets. `apiVersion`, `kind`, `status` and
/// server-owned metadata are not fields anyone manages.
pub fn field_set(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    if let Value::Object(meta) = v {
                        for (mk, mv) in meta {
                            if !SYSTEM_META.contains(&mk.as_str()) {
                                collect(mk, mv, &mut vec!["f:metadata".into()], &mut out);
                            }
                        }
                    }
                }
                _ => collect(k, v, &mut Vec::new(), &mut out),
            }
        }
    }
    out
}

fn collect(field: &str, v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    prefix.push(format!("f:{field}"));
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                collect(k, child, prefix, out);
            }
        }
        Value::Array(items) if list_key(field, items).is_some() => {
            let key = list_key(field, items).unwrap_or_default();
            for item in items {
                let Some(kv) = item.get(key) else { continue };
                prefix.push(item_key(key, kv));
                out.insert(prefix.clone());
                if let Value::Object(m) = item {
                    for (k, child) in m {
                        collect(k, child, prefix, out);
                    }
                }
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
    prefix.pop();
}

/// Parses `k:{"name":"x"}` into `("name", "x")`.
fn parse_item_key(step: &str) -> Option<(String, Value)> {
    let json = step.strip_prefix("k:")?;
    let Value::Object(m) = serde_json::from_str::<Value>(json).ok()? else {
        return None;
    };
    m.into_iter().next()
}

/// Looks a field path up in an object.
pub fn lookup<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, step| {
        if let Some(f) = step.strip_prefix("f:") {
            cur.get(f)
        } else {
            let (k, v) = parse_item_key(step)?;
            cur.as_array()?.iter().find(|i| i.get(&k) == Some(&v))
        }
    })
}

/// Removes the field (or list item) at `path`; missing paths are a no-op.
fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for step in parents {
        let next = if let Some(f) = step.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            match (parse_item_key(step), cur.as_array_mut()) {
                (Some((k, v)), Some(a)) => a.iter_mut().find(|i| i.get(&k) == Some(&v)),
                _ => None,
            }
        };
        let Some(next) = next else { return };
        cur = next;
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Value::Object(m) = cur {
            m.remove(f);
        }
    } else if let (Some((k, v)), Some(a)) = (parse_item_key(last), cur.as_array_mut()) {
        a.retain(|i| i.get(&k) != Some(&v));
    }
}

/// Encodes a field set as a `FieldsV1` tree.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for step in path {
            let Value::Object(m) = cur else { break };
            cur = m.entry(step.clone()).or_insert_with(|| Value::Object(Map::new()));
        }
        if path.last().is_some_and(|s| s.starts_with("k:"))
            && let Value::Object(m) = cur
        {
            m.insert(".".into(), Value::Object(Map::new()));
        }
    }
    root
}

/// Decodes a `FieldsV1` tree back into a field set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
        let Value::Object(m) = v else { return };
        if (m.is_empty() || m.contains_key(".")) && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, child) in m {
            if k != "." {
                prefix.push(k.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The operation a managed-fields entry records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// `metadata.managedFields` decoded: `(manager, operation, fields)`.
pub fn managed_fields(obj: &Value) -> Vec<(String, Operation, FieldSet)> {
    let Some(entries) = obj["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let op = if e["operation"] == "Apply" {
                Operation::Apply
            } else {
                Operation::Update
            };
            let manager = e["manager"].as_str().unwrap_or_default().to_string();
            (manager, op, from_fields_v1(&e["fieldsV1"]))
        })
        .collect()
}

fn set_managed_fields(
    obj: &mut Value,
    entries: &[(String, Operation, FieldSet)],
    api_version: &str,
    now: &str,
) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|(_, _, set)| !set.is_empty())
        .map(|(m, op, set)| {
            serde_json::json!({
                "manager": m, "operation": op.as_str(), "apiVersion": api_version,
                "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(set),
            })
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of every
/// field whose value it changed or added, away from other managers — as the real server does.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str, now: &str) {
    let mut entries = old.map(managed_fields).unwrap_or_default();
    let changed: FieldSet = field_set(new)
        .into_iter()
        .filter(|p| old.and_then(|o| lookup(o, p)) != lookup(new, p))
        .collect();
    // Fields that no longer exist are owned by nobody.
    for (_, _, set) in entries.iter_mut() {
        set.retain(|p| lookup(new, p).is_some() && !changed.contains(p));
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|(m, op, _)| m == manager && *op == Operation::Update)
        {
            Some((_, _, set)) => set.extend(changed),
            None => entries.push((manager.to_string(), Operation::Update, changed)),
        }
    }
    set_managed_fields(new, &entries, api_version, now);
}

/// Apply-style merge: maps merge recursively, keyed lists merge item by item, everything else
/// (scalars, atomic lists) is replaced by the applied value.
fn apply_merge(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                match l.get_mut(k) {
                    Some(existing) => apply_merge(existing, v, k),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if list_key(field, a).is_some() => {
            let key = list_key(field, a).unwrap_or_default();
            for item in a {
                match item.get(key).and_then(|kv| find_by_key(l, key, kv)) {
                    Some(existing) => apply_merge(existing, item, field),
                    None => l.push(item.clone()),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// How an apply treats fields that other managers own with a different value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Force {
    /// `force=false`: such fields are conflicts and the apply fails (409).
    No,
    /// `force=true`: the applier takes those fields over.
    Yes,
}

/// Renders a field path the way the real server's conflict messages do:
/// `.metadata.labels.team`, `.spec.containers[name="web"].image`.
fn display_path(path: &[String]) -> String {
    path.iter()
        .map(|step| match step.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => match parse_item_key(step) {
                Some((k, v)) => format!("[{k}={v}]"),
                None => step.clone(),
            },
        })
        .collect()
}

/// Server-side apply of `applied` by `manager` onto `live`, returning the new object.
///
/// The applied fields are merged in and become owned by `manager`. A field another manager owns
/// with a different value is a conflict: an error naming it (`Force::No`), or taken over
/// (`Force::Yes`); with an equal value, ownership is shared. Fields `manager` applied last time
/// but not this time are removed, unless another manager owns them too; fields only other
/// managers own are never touched.
pub fn server_side_apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    force: Force,
    api_version: &str,
    now: &str,
) -> Result<Value, String> {
    let mut applied = applied.clone();
    if let Some(m) = applied.as_object_mut() {
        m.remove("status");
    }
    let new_set = field_set(&applied);
    let mut entries = managed_fields(live);
    let is_self = |m: &str, op: Operation| m == manager && op == Operation::Apply;

    // Leaves only: a list item node "differs" whenever anything inside it does.
    let conflicting = |p: &FieldPath| {
        !p.last().is_some_and(|s| s.starts_with("k:")) && lookup(live, p) != lookup(&applied, p)
    };
    let conflicts: Vec<String> = entries
        .iter()
        .filter(|(m, op, _)| !is_self(m, *op))
        .flat_map(|(m, _, set)| {
            set.iter()
                .filter(|p| new_set.contains(*p) && conflicting(p))
                .map(move |p| format!("conflict with {m:?}: {}", display_path(p)))
        })
        .collect();
    if !conflicts.is_empty() {
        match force {
            Force::No => {
                return Err(format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join(", ")
                ));
            }
            Force::Yes => {
                for (m, op, set) in entries.iter_mut() {
                    if !is_self(m, *op) {
                        set.retain(|p| !(new_set.contains(p) && conflicting(p)));
                    }
                }
            }
        }
    }

    let previous = entries
        .iter()
        .find(|(m, op, _)| is_self(m, *op))
        .map(|(_, _, s)| s.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|(m, op, _)| !is_self(m, *op))
        .flat_map(|(_, _, s)| s.iter().cloned())
        .collect();

    let mut out = live.clone();
    // Remove stale fields first. A stale list item goes whole, so fields under it (its key
    // among them) are not removed one by one.
    let stale: Vec<&FieldPath> = previous
        .iter()
        .filter(|p| !new_set.contains(*p))
        .filter(|p| !others.iter().any(|o| o.starts_with(p)))
        .collect();
    for path in &stale {
        let under_stale = stale.iter().any(|q| q.len() < path.len() && path.starts_with(q));
        if !under_stale {
            remove_path(&mut out, path);
        }
    }
    apply_merge(&mut out, &applied, "");

    entries.retain(|(m, op, _)| !is_self(m, *op));
    for (_, _, set) in entries.iter_mut() {
        set.retain(|p| lookup(&out, p).is_some());
    }
    entries.push((manager.to_string(), Operation::Apply, new_set));
    set_managed_fields(&mut out, &entries, api_version, now);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-01-01T00:00:00Z";

    /// A forced apply, which cannot fail.
    fn ssa(live: &Value, applied: &Value, manager: &str, api_version: &str, now: &str) -> Value {
        server_side_apply(live, applied, manager, Force::Yes, api_version, now)
            .expect("a forced apply succeeds")
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}}));
    }

    #[test]
    fn strategic_merge_keys_lists() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "b", "image": "b:1"}
        ], "args": ["x"]}});
        let p = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "$patch": "delete"}, {"name": "Z", "value": "3"}]},
                {"name": "c", "image": "c:1"}
            ],
            "args": ["y"]
        }});
        strategic_merge(&mut t, &p).expect("patch applies");
        let cs = &t["spec"]["containers"];
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "Z", "value": "3"}])
        );
        assert_eq!(cs[1]["image"], "b:1");
        assert_eq!(cs[2]["name"], "c");
        assert_eq!(t["spec"]["args"], json!(["y"]));
        assert!(t["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn strategic_merge_null_retain_and_primitive_delete() {
        let mut t = json!({"metadata": {"annotations": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                           "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let p = json!({"metadata": {"annotations": {"a": null}, "$deleteFromPrimitiveList/finalizers": ["x"]},
                       "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        strategic_merge(&mut t, &p).expect("patch applies");
        assert_eq!(t["metadata"]["annotations"], json!({"b": "2"}));
        assert_eq!(t["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(t["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn strategic_merge_service_ports_by_port() {
        let mut t =
            json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        strategic_merge(
            &mut t,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .expect("patch applies");
        assert_eq!(t["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(t["spec"]["ports"][1]["port"], 443);
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
                {"op": "add", "path": "/l/-", "value": 3},
                {"op": "remove", "path": "/l/0"},
                {"op": "test", "path": "/l/0", "value": 2},
            ]),
        )
        .expect("patch applies");
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"a": "3", "b/c": "2"}}, "l": [2, 3]})
        );
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/l/0", "value": 9}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["a"]}});
        let set = field_set(&obj);
        assert!(set.contains(&vec!["f:metadata".to_string(), "f:labels".into(), "f:a".into()]));
        assert!(set.contains(&vec![
            "f:spec".to_string(),
            "f:containers".into(),
            r#"k:{"name":"c"}"#.into()
        ]));
        assert!(
            !set.iter()
                .any(|p| p.contains(&"f:name".to_string()) && p.len() == 2)
        );
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    fn ns(labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "s", "labels": labels}})
    }

    #[test]
    fn apply_never_removes_fields_of_other_managers() {
        // The daemon creates the namespace with its labels (an Update), then helm applies.
        let mut live = ns(json!({"team": "a", "tier": "gold"}));
        record_update(None, &mut live, "storekeeper", "v1", NOW);
        let live = ssa(&live, &ns(json!({"name": "s"})), "helm", "v1", NOW);
        assert_eq!(
            live["metadata"]["labels"],
            json!({"team": "a", "tier": "gold", "name": "s"})
        );
        // helm re-applies without its label: only its own field goes.
        let live = ssa(&live, &ns(json!({})), "helm", "v1", NOW);
        assert_eq!(live["metadata"]["labels"], json!({"team": "a", "tier": "gold"}));
    }

    #[test]
    fn apply_removes_own_stale_fields_and_list_items() {
        let v1 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d",
            "annotations": {"x": "1", "y": "2"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}}}});
        let live = ssa(&json!({"metadata": {"name": "d"}}), &v1, "helm", "apps/v1", NOW);
        let v2 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d",
            "annotations": {"x": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a2"}]}}}});
        let live = ssa(&live, &v2, "helm", "apps/v1", NOW);
        assert_eq!(live["metadata"]["annotations"], json!({"x": "1"}));
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a2"}])
        );
    }

    #[test]
    fn shared_ownership_keeps_a_field() {
        let mut live = ns(json!({"shared": "v"}));
        record_update(None, &mut live, "other", "v1", NOW);
        let live = ssa(&live, &ns(json!({"shared": "v"})), "helm", "v1", NOW);
        let live = ssa(&live, &ns(json!({})), "helm", "v1", NOW);
        assert_eq!(live["metadata"]["labels"], json!({"shared": "v"}));
    }

    #[test]
    fn apply_conflicts_unless_forced() {
        let mut live = ns(json!({"team": "a"}));
        record_update(None, &mut live, "kubectl-label", "v1", NOW);
        let err = server_side_apply(&live, &ns(json!({"team": "b"})), "helm", Force::No, "v1", NOW)
            .expect_err("a conflict");
        assert!(
            err.contains(r#"conflict with "kubectl-label": .metadata.labels.team"#),
            "{err}"
        );
        // Same value: no conflict, shared ownership.
        server_side_apply(&live, &ns(json!({"team": "a"})), "helm", Force::No, "v1", NOW)
            .expect("no conflict on equal values");
        // Forced: helm takes the field over, so dropping it later removes it.
        let taken = ssa(&live, &ns(json!({"team": "b"})), "helm", "v1", NOW);
        assert_eq!(taken["metadata"]["labels"]["team"], "b");
        let dropped = ssa(&taken, &ns(json!({})), "helm", "v1", NOW);
        assert!(dropped["metadata"]["labels"].get("team").is_none(), "{dropped}");
    }

    #[test]
    fn update_takes_ownership_from_applier() {
        let live = ssa(&ns(json!({})), &ns(json!({"a": "1"})), "helm", "v1", NOW);
        let mut updated = live.clone();
        updated["metadata"]["labels"]["a"] = json!("2");
        record_update(Some(&live), &mut updated, "kubectl", "v1", NOW);
        // helm stops applying "a": it no longer owns it, so the value set by kubectl stays.
        let after = ssa(&updated, &ns(json!({})), "helm", "v1", NOW);
        assert_eq!(after["metadata"]["labels"], json!({"a": "2"}));
    }
}
