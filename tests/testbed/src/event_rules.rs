//! The API server's validation for the objects whose rules a client can trip. Today that is
//! `events.k8s.io/v1` Events, checked the way the real server's `ValidateEventCreate` /
//! `ValidateEventUpdate` check a request through that group: required reporting fields, length
//! limits, the namespace rule, a well-formed series, and immutable fields on update. A rejected
//! object is a 422 `Invalid`, as on the real server.

use serde_json::Value;

use crate::kinds::Kind;
use crate::store::{ApiError, Result};

const EVENT_NAME_LIMIT: usize = 253;
const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn is_events_v1(kind: &Kind) -> bool {
    kind.group == "events.k8s.io" && kind.kind == "Event"
}

fn invalid(kind: &Kind, obj: &Value, errors: &[String]) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::new(
        422,
        "Invalid",
        format!(
            "{}.{} \"{name}\" is invalid: {}",
            kind.kind,
            kind.group,
            errors.join(", ")
        ),
    ))
}

fn text<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj[field].as_str().unwrap_or_default()
}

/// A DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', alphanumeric at both ends.
fn dns_subdomain(s: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= EVENT_NAME_LIMIT
        && s.bytes().all(|b| ok_char(b) || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(ok_char)
        && s.bytes().last().is_some_and(ok_char)
}

/// A qualified name: an optional DNS subdomain prefix and `/`, then 1–63 characters of
/// alphanumerics, '-', '_' and '.', alphanumeric at both ends.
fn qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let ok_end = |b: u8| b.is_ascii_alphanumeric();
    prefix.is_none_or(dns_subdomain)
        && (1..=63).contains(&name.len())
        && name.bytes().all(|b| ok_end(b) || b"-_.".contains(&b))
        && name.bytes().next().is_some_and(ok_end)
        && name.bytes().last().is_some_and(ok_end)
}

fn series_errors(obj: &Value, errors: &mut Vec<String>) {
    let series = &obj["series"];
    if series.is_null() {
        return;
    }
    if series["count"].as_i64().unwrap_or(0) < 2 {
        errors.push("series.count: Invalid value: \"\": should be at least 2".into());
    }
    if text(series, "lastObservedTime").is_empty() {
        errors.push("series.lastObservedTime: Required value".into());
    }
}

/// The checks shared by create and update (the real server's `legacyValidateEvent` for an
/// event with `eventTime`).
fn common_errors(obj: &Value, errors: &mut Vec<String>) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    if text(&obj["regarding"], "namespace").is_empty() && ns != "default" && ns != "kube-system" {
        errors.push("regarding.namespace: Invalid value: \"\": does not match event.namespace".into());
    }
    let controller = text(obj, "reportingController");
    if controller.is_empty() {
        errors.push("reportingController: Required value".into());
    } else if !qualified_name(controller) {
        errors.push(format!(
            "reportingController: Invalid value: {controller:?}: not a qualified name"
        ));
    }
    for (field, limit) in [
        ("reportingInstance", REPORTING_INSTANCE_LIMIT),
        ("action", ACTION_LIMIT),
        ("reason", REASON_LIMIT),
    ] {
        let v = text(obj, field);
        if v.is_empty() {
            errors.push(format!("{field}: Required value"));
        } else if v.len() > limit {
            errors.push(format!(
                "{field}: Invalid value: \"\": can have at most {limit} characters"
            ));
        }
    }
    if text(obj, "note").len() > NOTE_LIMIT {
        errors.push(format!(
            "note: Invalid value: \"\": can have at most {NOTE_LIMIT} characters"
        ));
    }
}

/// A create: everything, plus `eventTime`, `type` and the deprecated fields left unset.
pub fn on_create(kind: &Kind, obj: &Value) -> Result<()> {
    if !is_events_v1(kind) {
        return Ok(());
    }
    let mut errors = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if !name.is_empty() && !dns_subdomain(name) {
        errors.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain"
        ));
    }
    common_errors(obj, &mut errors);
    series_errors(obj, &mut errors);
    if text(obj, "eventTime").is_empty() {
        errors.push("eventTime: Required value".into());
    }
    let t = text(obj, "type");
    if t != "Normal" && t != "Warning" {
        errors.push(format!("type: Invalid value: \"\": has invalid value: {t}"));
    }
    for field in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
        "deprecatedSource",
    ] {
        if !obj[field].is_null() {
            errors.push(format!("{field}: Invalid value: \"\": needs to be unset"));
        }
    }
    invalid(kind, obj, &errors)
}

/// An update or patch: the shared checks, the series if it changed, and the fields an Event
/// never changes after creation.
pub fn on_update(kind: &Kind, old: &Value, new: &Value) -> Result<()> {
    if !is_events_v1(kind) {
        return Ok(());
    }
    let mut errors = Vec::new();
    common_errors(new, &mut errors);
    if old["series"] != new["series"] {
        series_errors(new, &mut errors);
    }
    for field in [
        "regarding",
        "related",
        "reason",
        "note",
        "type",
        "eventTime",
        "action",
        "reportingController",
        "reportingInstance",
        "deprecatedSource",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
    ] {
        if old[field] != new[field] {
            errors.push(format!("{field}: Invalid value: \"\": field is immutable"));
        }
    }
    invalid(kind, new, &errors)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::by_plural;

    fn events() -> &'static Kind {
        by_plural("events.k8s.io", "v1", "events").expect("events.k8s.io is served")
    }

    fn good() -> Value {
        json!({
            "metadata": {"name": "store-a.1", "namespace": "store-a"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal",
            "reason": "Created", "action": "Install", "note": "ok",
            "reportingController": "storekeeper.dev/storekeeper", "reportingInstance": "pod-1",
            "regarding": {"apiVersion": "v1", "kind": "Namespace", "name": "store-a", "namespace": "store-a"},
        })
    }

    #[test]
    fn a_complete_event_passes_and_each_rule_bites() {
        assert_eq!(on_create(events(), &good()), Ok(()));
        let broken: [(&str, Value); 7] = [
            ("reportingController", json!(null)),
            ("reportingInstance", json!("x".repeat(129))),
            ("action", json!("")),
            ("note", json!("n".repeat(1025))),
            ("type", json!("Info")),
            ("eventTime", json!(null)),
            ("deprecatedCount", json!(1)),
        ];
        for (field, value) in broken {
            let mut ev = good();
            ev[field] = value;
            let e = on_create(events(), &ev).expect_err(field);
            assert_eq!((e.code, e.reason), (422, "Invalid"));
            assert!(e.message.contains(field), "{field}: {}", e.message);
        }
        let mut cluster_scoped = good();
        cluster_scoped["regarding"]["namespace"] = json!(null);
        assert!(
            on_create(events(), &cluster_scoped).is_err(),
            "cluster-scoped regarding outside default"
        );
    }

    #[test]
    fn updates_may_grow_a_series_but_not_change_the_note() {
        let old = good();
        let mut new = good();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"});
        assert_eq!(on_update(events(), &old, &new), Ok(()));
        new["series"]["count"] = json!(1);
        assert!(on_update(events(), &old, &new).is_err());
        let mut changed = good();
        changed["note"] = json!("other");
        assert!(on_update(events(), &old, &changed).is_err());
    }
}
