//! `[policy]` in `storekeeper.toml` → a validated [`Policy`]. Every value keeps its span, so each
//! problem points at its own key's line and column, and all of them are reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::Path;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value as Json;
use toml::Spanned;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::spec::policy::{Class, CustomHosts, PathPattern, Policy, classify};
use crate::spec::{Owner, Plan, is_dns_name};

/// A list of strings, each with its span (and the list's own).
type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    values_allowed: Option<Vec<Spanned<String>>>,
    max_stores: Option<Spanned<i64>>,
    max_stores_per_owner: Option<Spanned<i64>>,
    max_creations_per_hour: Option<Spanned<i64>>,
    host_suffixes: Option<SpannedList>,
    custom_hosts_allowed: Option<Spanned<RawCustomHosts>>,
    plans_allowed: Option<SpannedList>,
    plans_allowed_per_owner: Option<BTreeMap<Spanned<String>, SpannedList>>,
}

/// `custom_hosts_allowed = true | false | ["owner", ...]`.
#[derive(Debug)]
enum RawCustomHosts {
    All(bool),
    Owners(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawCustomHosts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawCustomHosts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a list of owners")
            }
            fn visit_bool<E>(self, b: bool) -> Result<RawCustomHosts, E> {
                Ok(RawCustomHosts::All(b))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawCustomHosts, A::Error> {
                let mut owners = Vec::new();
                while let Some(o) = seq.next_element::<Spanned<String>>()? {
                    owners.push(o);
                }
                Ok(RawCustomHosts::Owners(owners))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Collects the diagnostics of one config file.
struct Reader<'s> {
    path: &'s Path,
    src: &'s str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn diagnostic(&self, span: Range<usize>, field: &str, message: String, hint: String) -> Diagnostic {
        Diagnostic::at(self.path, self.src, span, field, message).with_hint(hint)
    }

    fn error(&mut self, span: Range<usize>, field: &str, message: String, hint: impl Into<String>) {
        let d = self.diagnostic(span, field, message, hint.into());
        self.errors.push(d);
    }

    /// `storekeeper.toml:3:19`, for hints in store-file diagnostics.
    fn origin(&self, span: Range<usize>) -> String {
        let d = Diagnostic::at(self.path, self.src, span, "", String::new());
        format!("{}:{}:{}", self.path.display(), d.line, d.column)
    }
}

/// Validates `[policy]`; returns the policy and its warnings, or every error found.
pub(super) fn read(
    raw: RawPolicy,
    base_domain: &str,
    path: &Path,
    src: &str,
) -> Result<(Policy, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut r = Reader {
        path,
        src,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let default = Policy::default();
    let host_suffixes = suffixes(&mut r, raw.host_suffixes, base_domain);
    let custom_hosts = custom_hosts(&mut r, raw.custom_hosts_allowed, !host_suffixes.is_empty());
    let policy = Policy {
        values_allowed: match raw.values_allowed {
            Some(list) => values_allowed(&mut r, list),
            None => default.values_allowed,
        },
        max_stores: count(&mut r, "max_stores", raw.max_stores, 0),
        max_stores_per_owner: nonzero(count(&mut r, "max_stores_per_owner", raw.max_stores_per_owner, 1)),
        max_creations_per_hour: nonzero(count(
            &mut r,
            "max_creations_per_hour",
            raw.max_creations_per_hour,
            1,
        )),
        host_suffixes,
        custom_hosts,
        plans_allowed: match raw.plans_allowed {
            Some(list) => plans(&mut r, "policy.plans_allowed", list),
            None => default.plans_allowed,
        },
        plans_allowed_per_owner: plans_per_owner(&mut r, raw.plans_allowed_per_owner.unwrap_or_default()),
    };
    r.errors.sort_by_key(|d| (d.line, d.column));
    if r.errors.is_empty() {
        Ok((policy, r.warnings))
    } else {
        Err(r.errors)
    }
}

fn nonzero(n: Option<u32>) -> Option<NonZeroU32> {
    n.and_then(NonZeroU32::new)
}

/// A cap: an integer from `min` to `u32::MAX`.
fn count(r: &mut Reader<'_>, key: &str, raw: Option<Spanned<i64>>, min: i64) -> Option<u32> {
    let raw = raw?;
    let n = *raw.get_ref();
    match u32::try_from(n) {
        Ok(v) if n >= min => Some(v),
        _ => {
            let hint = if min == 0 {
                "0 allows no new store; remove the key for no cap"
            } else {
                "remove the key for no cap"
            };
            r.error(
                raw.span(),
                &format!("policy.{key}"),
                format!(
                    "`policy.{key}` must be an integer from {min} to {}, found {n}",
                    u32::MAX
                ),
                hint,
            );
            None
        }
    }
}

fn values_allowed(r: &mut Reader<'_>, list: Vec<Spanned<String>>) -> Vec<PathPattern> {
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let field = format!("policy.values_allowed[{i}]");
        let (text, span) = (item.get_ref().as_str(), item.span());
        let pattern = match PathPattern::parse(text) {
            Ok(p) => p.with_origin(r.origin(span.clone())),
            Err(why) => {
                r.error(
                    span,
                    &field,
                    format!("`{text}` is not a values pattern: {why}"),
                    PATTERN_HINT,
                );
                continue;
            }
        };
        if let Class::Reserved(rail) = classify(&pattern.literal_prefix()) {
            r.error(
                span,
                &field,
                format!(
                    "`{text}` can never be allowed: storekeeper sets `{}` itself",
                    rail.pattern
                ),
                format!(
                    "`{}` holds {}; store files set those through their own fields",
                    rail.pattern, rail.guards
                ),
            );
            continue;
        }
        if pattern.is_glob() {
            warn_unreached(r, &pattern, span, &field);
        }
        out.push(pattern);
    }
    out
}

const PATTERN_HINT: &str = "write dotted keys with globs, e.g. \"wordpress.resources.*\" or \"wordpress.extraEnv\"; quote a key that holds dots: ingress.annotations.\"example.com/x\"";

/// Every key path of both shipped charts' values (and the plan resources storekeeper renders):
/// what a glob in `values_allowed` is checked against.
static CHART_KEYS: LazyLock<Vec<Vec<String>>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for text in [
        include_str!("../../charts/woocommerce-store/values.yaml"),
        include_str!("../../charts/medusa-store/values.yaml"),
    ] {
        if let Ok(doc) = serde_yaml::from_str::<Json>(text) {
            collect_keys(&doc, &mut Vec::new(), &mut out);
        }
    }
    let resources = serde_json::json!({ "resources": crate::values::plan_resources(Plan::Small) });
    collect_keys(&resources, &mut Vec::new(), &mut out);
    out.sort();
    out.dedup();
    out
});

fn collect_keys(v: &Json, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Json::Object(map) = v {
        for (k, child) in map {
            path.push(k.clone());
            out.push(path.clone());
            collect_keys(child, path, out);
            path.pop();
        }
    }
}

/// Warns when a glob matches guard-rail keys of the shipped charts: it does not allow them.
fn warn_unreached(r: &mut Reader<'_>, pattern: &PathPattern, span: Range<usize>, field: &str) {
    let mut reached = BTreeSet::new();
    for key in CHART_KEYS.iter() {
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        if !pattern.covers(&key) {
            continue;
        }
        // Reserved keys (store, existingSecret) are refused whatever the list says.
        if let Class::Guarded { depth, .. } = classify(&key)
            && depth > pattern.literal_len()
        {
            reached.insert(key[..depth].join("."));
        }
    }
    // A guard rail inside another (image.readOnlyRootFilesystem in image) is not news.
    let outer: Vec<&String> = reached
        .iter()
        .filter(|k| {
            !reached
                .iter()
                .any(|o| k.strip_prefix(o.as_str()).is_some_and(|t| t.starts_with('.')))
        })
        .collect();
    let Some(first) = outer.first() else { return };
    let example = if outer.iter().any(|k| *k == "networkPolicy") {
        "networkPolicy.enabled".to_string()
    } else {
        (*first).clone()
    };
    let shown: Vec<&str> = outer.iter().take(12).map(|k| k.as_str()).collect();
    let more = outer.len().saturating_sub(shown.len());
    let d = r
        .diagnostic(
            span,
            field,
            format!("`{pattern}` does not reach the guard-rail keys it matches"),
            format!(
                "it matches {}{}, but a glob never allows a guard-rail key; a store may set one only if values_allowed names it, e.g. \"{example}\"",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
        )
        .warning();
    r.warnings.push(d);
}

/// `host_suffixes`, without leading dots; they must cover the default host `<name>.<base_domain>`.
fn suffixes(r: &mut Reader<'_>, raw: Option<SpannedList>, base_domain: &str) -> Vec<String> {
    let Some(raw) = raw else { return Vec::new() };
    let list_span = raw.span();
    if raw.get_ref().is_empty() {
        r.error(
            list_span,
            "policy.host_suffixes",
            "`policy.host_suffixes` is empty: no store host would be allowed".into(),
            "list the domains stores live under, e.g. [\"shops.example.com\"], or remove the key to allow any host",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, item) in raw.into_inner().into_iter().enumerate() {
        let s = item.get_ref().strip_prefix('.').unwrap_or(item.get_ref());
        if is_dns_name(s) || crate::spec::StoreName::new(s).is_ok() {
            out.push(s.to_string());
        } else {
            r.error(
                item.span(),
                &format!("policy.host_suffixes[{i}]"),
                format!("`{}` is not a domain", item.get_ref()),
                "write a lowercase domain such as \"shops.example.com\" (a leading dot is optional)",
            );
        }
    }
    let covered = out.iter().any(|s| {
        base_domain == s
            || base_domain
                .strip_suffix(s.as_str())
                .is_some_and(|h| h.ends_with('.'))
    });
    if !out.is_empty() && !covered {
        r.error(
            list_span,
            "policy.host_suffixes",
            format!("the default store host `<name>.{base_domain}` is under none of the host suffixes"),
            format!("add \"{base_domain}\" to host_suffixes, or set cluster.base_domain under one of them"),
        );
    }
    out
}

fn custom_hosts(
    r: &mut Reader<'_>,
    raw: Option<Spanned<RawCustomHosts>>,
    have_suffixes: bool,
) -> CustomHosts {
    let Some(raw) = raw else {
        return CustomHosts::Nobody;
    };
    if !have_suffixes {
        r.error(
            raw.span(),
            "policy.custom_hosts_allowed",
            "`policy.custom_hosts_allowed` has no effect without `host_suffixes`: every host is allowed"
                .into(),
            "set host_suffixes to the domains stores live under, or remove custom_hosts_allowed",
        );
        return CustomHosts::Nobody;
    }
    match raw.into_inner() {
        RawCustomHosts::All(true) => CustomHosts::Everyone,
        RawCustomHosts::All(false) => CustomHosts::Nobody,
        RawCustomHosts::Owners(list) => {
            let mut owners = BTreeSet::new();
            for (i, o) in list.into_iter().enumerate() {
                if let Some(owner) = owner(r, &format!("policy.custom_hosts_allowed[{i}]"), &o) {
                    owners.insert(owner);
                }
            }
            CustomHosts::Owners(owners)
        }
    }
}

fn owner(r: &mut Reader<'_>, field: &str, raw: &Spanned<String>) -> Option<Owner> {
    match Owner::new(raw.get_ref()) {
        Ok(o) => Some(o),
        Err(msg) => {
            r.error(
                raw.span(),
                field,
                msg,
                "owners are the `owner` values of store files, e.g. \"acme\"",
            );
            None
        }
    }
}

fn plans(r: &mut Reader<'_>, field: &str, raw: SpannedList) -> Vec<Plan> {
    if raw.get_ref().is_empty() {
        r.error(
            raw.span(),
            field,
            format!("`{field}` is empty: no store could use any plan"),
            format!("list at least one of {}", Plan::ALL.join(", ")),
        );
    }
    let mut out = Vec::new();
    for (i, item) in raw.into_inner().into_iter().enumerate() {
        match Plan::parse(item.get_ref()) {
            Some(p) if !out.contains(&p) => out.push(p),
            Some(_) => {}
            None => {
                let hint = match did_you_mean(item.get_ref(), &Plan::ALL) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("use {}", Plan::ALL.join(", ")),
                };
                r.error(
                    item.span(),
                    &format!("{field}[{i}]"),
                    format!("`{}` is not a plan", item.get_ref()),
                    hint,
                );
            }
        }
    }
    out
}

fn plans_per_owner(
    r: &mut Reader<'_>,
    raw: BTreeMap<Spanned<String>, SpannedList>,
) -> BTreeMap<Owner, Vec<Plan>> {
    let mut out = BTreeMap::new();
    for (key, list) in raw {
        let field = format!("policy.plans_allowed_per_owner.{}", key.get_ref());
        let plans = plans(r, &field, list);
        if let Some(o) = owner(r, &field, &key) {
            out.insert(o, plans);
        }
    }
    out
}
