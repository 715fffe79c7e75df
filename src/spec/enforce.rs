//! The operator's policy, applied while a store file is read: the `owner` field, the plan and host
//! a store may use, and every `[values]` key, each reported at its own line and column. A store
//! that breaks the policy is Invalid like any other bad file: left exactly as it is.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::policy::{self, Class, GuardRail, Policy, Verdict};
use super::read::{Ctx, MAX_DEPTH, Table};
use super::{Owner, Plan};

/// The `owner` field as read.
pub(super) enum OwnerField {
    Absent,
    Valid(Owner),
    /// Present but unusable (reported): checks that depend on the owner are skipped.
    Invalid,
}

impl OwnerField {
    pub(super) fn owner(&self) -> Option<&Owner> {
        match self {
            OwnerField::Valid(o) => Some(o),
            _ => None,
        }
    }
}

/// What the policy checks besides `[values]`.
pub(super) struct Facts<'a> {
    pub owner: &'a OwnerField,
    /// The plan, and where the file sets it (`None`: the default, small).
    pub plan: Option<(Plan, Option<Range<usize>>)>,
    /// The host when the file sets one. The default host is always under a suffix: the config
    /// refuses suffixes that do not cover `cluster.base_domain`.
    pub host: Option<(&'a str, Range<usize>)>,
}

/// Reads `owner`; it is required when the policy counts stores per owner.
pub(super) fn read_owner(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, policy: &Policy) -> OwnerField {
    match root.string(ctx, "owner") {
        Some((o, span)) => match Owner::new(&o) {
            Ok(owner) => OwnerField::Valid(owner),
            Err(msg) => {
                let hint = "it names the store's team or client, e.g. \"acme\", and becomes a label";
                ctx.error(span, "owner", msg, Some(hint.into()));
                OwnerField::Invalid
            }
        },
        None if root.get("owner").is_some() => OwnerField::Invalid,
        None => {
            if policy.requires_owner() {
                ctx.error(
                    0..0,
                    "owner",
                    "missing required field `owner`".into(),
                    Some(
                        "the policy counts stores per owner ([policy] max_stores_per_owner): add `owner = \"your-team\"`"
                            .into(),
                    ),
                );
            }
            OwnerField::Absent
        }
    }
}

/// Checks the plan, the host and every `[values]` key against the policy.
pub(super) fn check(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, policy: &Policy, facts: &Facts<'_>) {
    if !matches!(facts.owner, OwnerField::Invalid) {
        let owner = facts.owner.owner();
        if let Some((plan, span)) = &facts.plan {
            check_plan(ctx, policy, owner, *plan, span.clone());
        }
        if let Some((host, span)) = &facts.host {
            check_host(ctx, policy, owner, host, span.clone());
        }
    }
    if let Some(values) = root.peek_table("values") {
        let mut path = Vec::new();
        walk(ctx, policy, values.inner, &mut path);
    }
}

fn quoted_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let list: Vec<String> = items.into_iter().map(|i| format!("\"{i}\"")).collect();
    if list.is_empty() {
        "nothing".into()
    } else {
        list.join(", ")
    }
}

fn check_plan(
    ctx: &mut Ctx<'_>,
    policy: &Policy,
    owner: Option<&Owner>,
    plan: Plan,
    span: Option<Range<usize>>,
) {
    let allowed = policy.plans_for(owner);
    if allowed.contains(&plan) {
        return;
    }
    let plans = quoted_list(allowed.iter().map(|p| p.as_str()));
    let (whom, source) = match owner {
        Some(o) if policy.plans_allowed_per_owner.contains_key(o) => {
            (format!("owner `{o}`"), "[policy] plans_allowed_per_owner")
        }
        Some(o) => (format!("owner `{o}`"), "[policy] plans_allowed"),
        None => ("stores without an owner".to_string(), "[policy] plans_allowed"),
    };
    let set = if span.is_some() {
        ""
    } else {
        " (small is the default when `plan` is not set)"
    };
    ctx.error(
        span.unwrap_or(0..0),
        "plan",
        format!("plan `{}` is not allowed for {whom}{set}", plan.as_str()),
        Some(format!("allowed for {whom}: {plans} ({source})")),
    );
}

fn check_host(ctx: &mut Ctx<'_>, policy: &Policy, owner: Option<&Owner>, host: &str, span: Range<usize>) {
    if policy.host_under_suffix(host) || policy.custom_hosts_for(owner) {
        return;
    }
    let suffixes: Vec<String> = policy.host_suffixes.iter().map(|s| format!("`.{s}`")).collect();
    let whom = owner.map_or("stores without an owner".to_string(), |o| format!("owner `{o}`"));
    ctx.error(
        span,
        "host",
        format!("host `{host}` is not under an allowed host suffix"),
        Some(format!(
            "use a host ending in {}, or leave `host` out for the default; custom hosts are not allowed for {whom} ([policy] custom_hosts_allowed)",
            suffixes.join(" or ")
        )),
    );
}

/// Walks `[values]` down to its leaves (anything but a table) and judges each one.
fn walk(ctx: &mut Ctx<'_>, policy: &Policy, table: &DeTable<'_>, path: &mut Vec<String>) {
    if path.len() >= MAX_DEPTH {
        return; // too deep: the values reader reports it
    }
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        match value.get_ref() {
            DeValue::Table(t) => walk(ctx, policy, t, path),
            _ => {
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                let inner = contents_rail(&keys, value, 0);
                let verdict = policy.judge(&keys, inner);
                report(ctx, policy, &keys, key.span(), verdict);
            }
        }
        path.pop();
    }
}

/// A guard-rail key inside a leaf value (a table within an array), if there is one.
fn contents_rail(path: &[&str], value: &Spanned<DeValue<'_>>, depth: usize) -> Option<&'static GuardRail> {
    if depth >= MAX_DEPTH {
        return None;
    }
    match value.get_ref() {
        DeValue::Array(items) => items.iter().find_map(|i| contents_rail(path, i, depth + 1)),
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            let mut inner = path.to_vec();
            inner.push(k.get_ref());
            match policy::classify(&inner) {
                Class::Guarded { depth: d, rail } if d > path.len() => Some(rail),
                Class::Reserved(rail) => Some(rail),
                _ => contents_rail(&inner, v, depth + 1),
            }
        }),
        _ => None,
    }
}

/// A dotted path as the operator would write it in `values_allowed` (keys with dots quoted).
fn dotted(path: &[&str]) -> String {
    let keys: Vec<String> = path
        .iter()
        .map(|k| {
            if k.contains('.') {
                format!("\"{k}\"")
            } else {
                (*k).to_string()
            }
        })
        .collect();
    keys.join(".")
}

fn report(ctx: &mut Ctx<'_>, policy: &Policy, path: &[&str], span: Range<usize>, verdict: Verdict<'_>) {
    if verdict == Verdict::Allowed {
        return;
    }
    let field = format!("values.{}", path.join("."));
    let allowed = format!(
        "allowed: {} ({})",
        quoted_list(&policy.values_allowed),
        if policy.values_allowed_is_default() {
            "the default policy"
        } else {
            "[policy] values_allowed"
        }
    );
    let (message, hint) = match verdict {
        Verdict::Allowed => return, // handled above, before any formatting
        Verdict::NotListed => (
            format!("`{field}` is not in the policy's allowed values"),
            allowed,
        ),
        Verdict::Reserved(rail) => (
            format!("`{field}` is set by storekeeper and cannot be overridden"),
            format!(
                "`{}` holds {}: set those in the store file itself",
                rail.pattern, rail.guards
            ),
        ),
        Verdict::GuardRail { rail, root, near } => {
            let why = match near {
                Some(p) if p.is_glob() => format!(
                    "`{p}`{} is a glob, and a glob never reaches guard-rail keys",
                    p.origin().map(|o| format!(" ({o})")).unwrap_or_default()
                ),
                Some(p) => format!(
                    "`{p}`{} covers it but does not name the guard-rail key `{}`",
                    p.origin().map(|o| format!(" ({o})")).unwrap_or_default(),
                    dotted(&path[..root.min(path.len())])
                ),
                None => "guard-rail keys are allowed only when named".to_string(),
            };
            (
                format!(
                    "`{field}` is a guard-rail key ({}) that the policy does not allow",
                    rail.guards
                ),
                format!(
                    "{why}; the operator can allow it by naming it in [policy] values_allowed, e.g. \"{}\"; {allowed}",
                    dotted(path)
                ),
            )
        }
    };
    ctx.error(span, &field, message, Some(hint));
}
