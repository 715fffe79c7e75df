//! The desired-state model: one store file → one [`StoreSpec`].
//!
//! A store's identity is its file stem, so a file that does not parse still names its store
//! (the reconciler then leaves that store exactly as it is). Parsing is strict: unknown keys,
//! wrong types and bad enum values are all errors, all reported together with line and column.

pub mod backup;
mod enforce;
pub mod policy;
mod read;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::diagnostic::Diagnostic;
use crate::iso;
use policy::Policy;
use read::{Ctx, Table};

/// Store files larger than this are rejected before being read whole.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Longest store name: `store-<name>` plus resource suffixes must fit in 63 characters.
pub const MAX_NAME_LEN: usize = 40;

/// Labels and annotations storekeeper owns; a store file may not set them.
const RESERVED_LABEL_PREFIXES: &[&str] = &[
    "storekeeper.dev/",
    "app.kubernetes.io/managed-by",
    "kubernetes.io/",
    "k8s.io/",
];

/// A validated store name (a lowercase DNS label of 1–40 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StoreName(String);

impl StoreName {
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(format!(
                "store name `{name}` must be 1 to {MAX_NAME_LEN} characters long"
            ));
        }
        if !is_dns_label(name) {
            return Err(format!(
                "store name `{name}` must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit"
            ));
        }
        Ok(StoreName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a store belongs to (a team, a client): a lowercase DNS label of 1–63 characters. It is
/// bounded because it becomes the namespace label `storekeeper.dev/owner` and a metric label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    pub fn new(owner: &str) -> Result<Self, String> {
        if is_dns_label(owner) {
            Ok(Owner(owner.to_string()))
        } else {
            Err(format!(
                "`{owner}` is not a valid owner: use a lowercase DNS label of 1–63 characters (a-z, 0-9, '-')"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A host name: dotted DNS labels, at least two of them.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label) && s.contains('.')
}

/// Which ecommerce engine (and so which chart) a store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Woocommerce,
    Medusa,
}

impl Engine {
    pub const ALL: [&'static str; 2] = ["woocommerce", "medusa"];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Woocommerce => "woocommerce",
            Engine::Medusa => "medusa",
        }
    }

    /// The chart directory under the configured charts directory.
    pub fn chart(self) -> &'static str {
        match self {
            Engine::Woocommerce => "woocommerce-store",
            Engine::Medusa => "medusa-store",
        }
    }
}

/// A size preset: namespace quota, default container limits and storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Small,
    Medium,
    Large,
}

impl Plan {
    pub const ALL: [&'static str; 3] = ["small", "medium", "large"];

    pub fn parse(s: &str) -> Option<Plan> {
        match s {
            "small" => Some(Plan::Small),
            "medium" => Some(Plan::Medium),
            "large" => Some(Plan::Large),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Small => "small",
            Plan::Medium => "medium",
            Plan::Large => "large",
        }
    }
}

/// One tax rate, e.g. GST 18 %.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaxRate {
    pub name: String,
    /// Percent, 0–100.
    pub rate: f64,
}

/// Shop settings applied by the store's setup job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shop {
    pub title: String,
    pub currency: String,
    pub country: String,
    pub state: String,
    pub address: String,
    pub city: String,
    pub postcode: String,
    pub taxes: Vec<TaxRate>,
    pub cash_on_delivery: bool,
    pub sample_products: bool,
}

/// A fully validated store file with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreSpec {
    pub name: StoreName,
    pub engine: Engine,
    pub host: String,
    pub plan: Plan,
    pub admin_user: String,
    pub admin_email: String,
    pub shop: Shop,
    pub protect: bool,
    pub suspend: bool,
    /// Who the store belongs to; counted by `max_stores_per_owner`, shown in the status.
    pub owner: Option<Owner>,
    pub labels: BTreeMap<String, String>,
    /// Raw helm values merged last (the escape hatch).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// `[backup]`: this store's changes to the operator's backup settings.
    pub backup: backup::StoreBackup,
    /// `restore_from`: the snapshot a new store is provisioned from (honoured at its first
    /// install only; see `values::restore_values`).
    pub restore_from: Option<backup::RestoreFrom>,
}

/// Why a store file could not become a [`StoreSpec`]; always carries every diagnostic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} error(s) in {}", .diagnostics.len(), .file)]
pub struct SpecError {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// What a store file is read with: the daemon config's defaults and the operator's policy.
/// Build it with `Settings::spec_defaults()`, so that every path (validate, plan, apply, run)
/// reads store files with the same policy. Comparable, so that a cached source can tell when
/// its parsed specs were made with other defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDefaults {
    pub base_domain: String,
    /// Shared: every file of a snapshot is read with the same policy.
    pub policy: Arc<Policy>,
}

/// Reads one store file from disk, enforcing the size limit before reading it whole.
pub fn load_file(path: &Path, defaults: &SpecDefaults) -> Result<StoreSpec, SpecError> {
    let fail = |d: Box<Diagnostic>| SpecError {
        file: path.display().to_string(),
        diagnostics: vec![*d],
    };
    let bytes = read_limited(path).map_err(fail)?;
    parse_bytes(path, &bytes, defaults)
}

/// Reads at most [`MAX_FILE_BYTES`]; a longer file is an error, not a truncation.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, Box<Diagnostic>> {
    let io_err = |e: std::io::Error| Box::new(unreadable(path, &e));
    // Only regular files: opening a FIFO or a device named `*.toml` would block forever.
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(Box::new(not_a_regular_file(path)));
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.len() > MAX_FILE_BYTES {
        return Err(Box::new(too_large(path)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Box::new(too_large(path)));
    }
    Ok(bytes)
}

// The three ways reading a store file fails, shared by every reader (a directory, a Git tree) so
// that each says the same thing about the same problem.

/// The file could not be opened or read.
pub fn unreadable(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::whole_file(path, format!("cannot read store file: {e}"))
        .with_hint("check that the file exists and is readable by the storekeeper user")
}

/// The file is a FIFO, socket, device, directory or submodule.
pub fn not_a_regular_file(path: &Path) -> Diagnostic {
    Diagnostic::whole_file(path, "store file is not a regular file".into())
        .with_hint("store files must be plain files (not FIFOs, sockets, devices or directories)")
}

/// The file is over [`MAX_FILE_BYTES`].
pub fn too_large(path: &Path) -> Diagnostic {
    Diagnostic::whole_file(
        path,
        format!("store file is larger than the {MAX_FILE_BYTES}-byte limit"),
    )
    .with_hint("a store file holds a few settings; move large values into the chart's values files")
}

/// The store name a path stands for (its file stem), validated.
pub fn name_from_path(path: &Path) -> Result<StoreName, Box<Diagnostic>> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    StoreName::new(&stem).map_err(|msg| {
        Box::new(
            Diagnostic::whole_file(path, msg)
                .with_hint("rename the file: the file name (without .toml) is the store's name"),
        )
    })
}

/// Parses and validates a store file's bytes. Never panics, whatever the input.
pub fn parse_bytes(path: &Path, bytes: &[u8], defaults: &SpecDefaults) -> Result<StoreSpec, SpecError> {
    let err = |diagnostics| SpecError {
        file: path.display().to_string(),
        diagnostics,
    };
    let src = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            let d = Diagnostic::at(
                path,
                &valid,
                valid.len()..valid.len(),
                "",
                "file is not valid UTF-8".into(),
            )
            .with_hint("save the file as UTF-8");
            return Err(err(vec![d]));
        }
    };
    let name = name_from_path(path);
    let mut ctx = Ctx::new(path, src);
    if src.trim().is_empty() {
        let d = Diagnostic::whole_file(path, "store file is empty".into())
            .with_hint("a store needs at least `engine = \"woocommerce\"` or `engine = \"medusa\"`");
        return Err(err(vec![d]));
    }
    let doc = match toml::de::DeTable::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            ctx.error(
                span,
                "",
                format!("TOML syntax error: {msg}"),
                Some("see https://toml.io for the syntax".into()),
            );
            let mut diags = ctx.diags;
            if let Err(d) = name {
                diags.insert(0, *d);
            }
            return Err(err(diags));
        }
    };
    let root = Table {
        inner: doc.get_ref(),
        path: String::new(),
        span: 0..0,
    };
    let spec = read_store(&mut ctx, &root, name.as_ref().ok(), defaults);
    let mut diags = ctx.diags;
    diags.sort_by_key(|d| (d.line, d.column));
    if let Err(d) = name {
        diags.insert(0, *d);
    }
    match spec {
        Some(spec) if diags.is_empty() => Ok(spec),
        _ => Err(err(diags)),
    }
}

const TOP_KEYS: &[&str] = &[
    "engine",
    "host",
    "plan",
    "owner",
    "protect",
    "suspend",
    "admin",
    "shop",
    "labels",
    "values",
    "backup",
    "restore_from",
];
const ADMIN_KEYS: &[&str] = &["email", "user"];
const SHOP_KEYS: &[&str] = &[
    "title",
    "currency",
    "country",
    "state",
    "address",
    "city",
    "postcode",
    "taxes",
    "cash_on_delivery",
    "sample_products",
];
const TAX_KEYS: &[&str] = &["name", "rate"];

/// Reads every field, reporting all problems; returns a spec only when the name is valid.
fn read_store(
    ctx: &mut Ctx<'_>,
    root: &Table<'_, '_>,
    name: Option<&StoreName>,
    defaults: &SpecDefaults,
) -> Option<StoreSpec> {
    root.deny_unknown(ctx, TOP_KEYS);

    let engine = read_engine(ctx, root);
    let (plan, plan_span) = read_plan(ctx, root);
    let name_str = name.map_or("store", StoreName::as_str);
    let (host, host_span) = read_host(ctx, root, name_str, &defaults.base_domain);
    let owner = enforce::read_owner(ctx, root, &defaults.policy);
    enforce::check(
        ctx,
        root,
        &defaults.policy,
        &enforce::Facts {
            owner: &owner,
            plan: plan.map(|p| (p, plan_span)),
            host: host_span.map(|span| (host.as_str(), span)),
        },
    );

    let protect = root.boolean(ctx, "protect").is_some_and(|b| b.0);
    let suspend = root.boolean(ctx, "suspend").is_some_and(|b| b.0);

    let (admin_user, admin_email) = read_admin(ctx, root, &host);
    let shop = read_shop(ctx, root, name_str, engine);
    let labels = read_labels(ctx, root);
    let values = root.json(ctx, "values").unwrap_or_default();
    let backup = backup::read_backup(ctx, root);
    let restore_from = backup::read_restore_from(ctx, root);

    Some(StoreSpec {
        name: name?.clone(),
        engine: engine?,
        host,
        plan: plan?,
        admin_user,
        admin_email,
        shop,
        protect,
        suspend,
        owner: owner.owner().cloned(),
        labels,
        values,
        backup,
        restore_from,
    })
}

fn read_engine(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Engine> {
    match root.string(ctx, "engine") {
        Some((s, span)) => choose(ctx, span, "engine", &s, &Engine::ALL, |s| match s {
            "woocommerce" => Some(Engine::Woocommerce),
            "medusa" => Some(Engine::Medusa),
            _ => None,
        }),
        None if root.inner.iter().any(|(k, _)| k.get_ref() == "engine") => None,
        None => {
            ctx.error(
                0..0,
                "engine",
                "missing required field `engine`".into(),
                Some("add `engine = \"woocommerce\"` or `engine = \"medusa\"`".into()),
            );
            None
        }
    }
}

/// The plan (default small) and, when the file sets it, where.
fn read_plan(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> (Option<Plan>, Option<std::ops::Range<usize>>) {
    match root.string(ctx, "plan") {
        Some((s, span)) => {
            let plan = choose(ctx, span.clone(), "plan", &s, &Plan::ALL, Plan::parse);
            (plan, Some(span))
        }
        None => (Some(Plan::Small), None),
    }
}

/// The host (default `<name>.<base_domain>`) and, when the file sets it, where.
fn read_host(
    ctx: &mut Ctx<'_>,
    root: &Table<'_, '_>,
    name: &str,
    base_domain: &str,
) -> (String, Option<std::ops::Range<usize>>) {
    match root.string(ctx, "host") {
        Some((h, span)) => {
            if !is_dns_name(&h) {
                ctx.error(
                    span.clone(),
                    "host",
                    format!("`{h}` is not a valid host name"),
                    Some(
                        "use a lowercase DNS name such as \"shop.example.com\" (no scheme, port or path)"
                            .into(),
                    ),
                );
            }
            (h, Some(span))
        }
        None => (format!("{name}.{base_domain}"), None),
    }
}

/// Matches an enum value, reporting a bad one with the allowed set and a suggestion.
fn choose<T>(
    ctx: &mut Ctx<'_>,
    span: std::ops::Range<usize>,
    field: &str,
    value: &str,
    allowed: &[&str],
    pick: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let found = pick(value);
    if found.is_none() {
        let hint = match crate::diagnostic::did_you_mean(value, allowed) {
            Some(s) => format!("did you mean \"{s}\"?"),
            None => format!(
                "use one of: {}",
                allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ctx.error(
            span,
            field,
            format!(
                "`{field}` must be one of {}, found \"{value}\"",
                allowed.join(", ")
            ),
            Some(hint),
        );
    }
    found
}

fn read_admin(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, host: &str) -> (String, String) {
    let mut user = "admin".to_string();
    let mut email = format!("admin@{host}");
    if let Some(admin) = root.table(ctx, "admin") {
        admin.deny_unknown(ctx, ADMIN_KEYS);
        if let Some((u, span)) = admin.string(ctx, "user") {
            let ok = !u.is_empty()
                && u.len() <= 60
                && u.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
            if !ok {
                ctx.error(
                    span,
                    "admin.user",
                    format!("`{u}` is not a valid admin user name"),
                    Some("use 1–60 characters from a-z, A-Z, 0-9, '_', '.', '-'".into()),
                );
            }
            user = u;
        }
        if let Some((e, span)) = admin.string(ctx, "email") {
            if !is_email(&e) {
                ctx.error(
                    span,
                    "admin.email",
                    format!("`{e}` is not an e-mail address"),
                    Some("write it as \"owner@example.com\"".into()),
                );
            }
            email = e;
        }
    }
    (user, email)
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|c| {
            c.is_ascii_graphic() && !matches!(c, b'@' | b'"' | b'\\' | b'<' | b'>' | b'`' | b'\'' | b'$')
        })
        && is_dns_name(&domain.to_ascii_lowercase())
}

fn read_shop(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, name: &str, engine: Option<Engine>) -> Shop {
    let mut shop = Shop {
        title: title_case(name),
        currency: "USD".into(),
        country: "US".into(),
        state: String::new(),
        address: String::new(),
        city: String::new(),
        postcode: String::new(),
        taxes: Vec::new(),
        cash_on_delivery: engine != Some(Engine::Medusa),
        sample_products: false,
    };
    let Some(t) = root.table(ctx, "shop") else {
        return shop;
    };
    t.deny_unknown(ctx, SHOP_KEYS);
    if let Some((v, span)) = t.string(ctx, "title") {
        if v.trim().is_empty() || v.chars().count() > 100 || v.chars().any(char::is_control) {
            ctx.error(
                span,
                "shop.title",
                "`shop.title` must be 1–100 printable characters".into(),
                None,
            );
        }
        shop.title = v;
    }
    read_codes(ctx, &t, &mut shop);
    read_address(ctx, &t, &mut shop);
    shop.taxes = read_taxes(ctx, &t);
    if let Some((v, span)) = t.boolean(ctx, "cash_on_delivery") {
        if engine == Some(Engine::Medusa) && v {
            ctx.error(
                span,
                "shop.cash_on_delivery",
                "cash on delivery is a WooCommerce setting".into(),
                Some("remove it: Medusa stores take payment providers through `values`".into()),
            );
        }
        shop.cash_on_delivery = v;
    }
    if let Some((v, _)) = t.boolean(ctx, "sample_products") {
        shop.sample_products = v;
    }
    shop
}

/// `shop.currency`, `shop.country` and `shop.state`: ISO codes.
fn read_codes(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, shop: &mut Shop) {
    if let Some((v, span)) = t.string(ctx, "currency") {
        if !iso::is_currency(&v) {
            let hint = if iso::is_currency(&v.to_ascii_uppercase()) {
                format!("codes are upper case: \"{}\"", v.to_ascii_uppercase())
            } else {
                "use an ISO 4217 code such as \"INR\", \"USD\" or \"EUR\"".into()
            };
            ctx.error(
                span,
                "shop.currency",
                format!("`{v}` is not an ISO 4217 currency code"),
                Some(hint),
            );
        }
        shop.currency = v;
    }
    if let Some((v, span)) = t.string(ctx, "country") {
        if !iso::is_country(&v) {
            let hint = if iso::is_country(&v.to_ascii_uppercase()) {
                format!("codes are upper case: \"{}\"", v.to_ascii_uppercase())
            } else {
                "use an ISO 3166-1 alpha-2 code such as \"IN\", \"US\" or \"DE\"".into()
            };
            ctx.error(
                span,
                "shop.country",
                format!("`{v}` is not an ISO 3166-1 country code"),
                Some(hint),
            );
        }
        shop.country = v;
    }
    if let Some((v, span)) = t.string(ctx, "state") {
        if v.is_empty() || v.len() > 3 || !v.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            ctx.error(
                span,
                "shop.state",
                format!("`{v}` is not an ISO 3166-2 subdivision code"),
                Some("use the part after the dash, e.g. \"KA\" for IN-KA (Karnataka)".into()),
            );
        }
        shop.state = v;
    }
}

/// `shop.address`, `shop.city` and `shop.postcode`: short printable text.
fn read_address(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, shop: &mut Shop) {
    for (key, slot) in [
        ("address", &mut shop.address),
        ("city", &mut shop.city),
        ("postcode", &mut shop.postcode),
    ] {
        if let Some((v, span)) = t.string(ctx, key) {
            if v.chars().count() > 200 || v.chars().any(char::is_control) {
                ctx.error(
                    span,
                    &t.field(key),
                    format!("`shop.{key}` must be at most 200 printable characters"),
                    None,
                );
            }
            *slot = v;
        }
    }
}

/// `[[shop.taxes]]`: a name and a percentage each.
fn read_taxes(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Vec<TaxRate> {
    let mut taxes = Vec::new();
    for tax in t.tables(ctx, "taxes") {
        tax.deny_unknown(ctx, TAX_KEYS);
        let name = tax.string(ctx, "name");
        let rate = tax.number(ctx, "rate");
        if let Some((n, span)) = &name
            && (n.trim().is_empty() || n.chars().count() > 50 || n.chars().any(char::is_control))
        {
            ctx.error(
                span.clone(),
                &tax.field("name"),
                "tax name must be 1–50 printable characters".into(),
                None,
            );
        }
        if let Some((r, span)) = &rate
            && !(0.0..=100.0).contains(r)
        {
            ctx.error(
                span.clone(),
                &tax.field("rate"),
                format!("tax rate {r} is not a percentage"),
                Some("write 18 for 18 %".into()),
            );
        }
        for (key, present) in [("name", name.is_some()), ("rate", rate.is_some())] {
            if !present && !tax.inner.iter().any(|(k, _)| k.get_ref() == key) {
                ctx.error(
                    tax.span.clone(),
                    &tax.field(key),
                    format!("tax entry is missing `{key}`"),
                    Some("write `{ name = \"GST\", rate = 18 }`".into()),
                );
            }
        }
        if let (Some((name, _)), Some((rate, _))) = (name, rate) {
            taxes.push(TaxRate { name, rate });
        }
    }
    taxes
}

fn read_labels(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (k, kspan, v, vspan) in root.string_map(ctx, "labels") {
        let field = format!("labels.{k}");
        if RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)) {
            ctx.error(
                kspan,
                &field,
                format!("label `{k}` is reserved"),
                Some("storekeeper sets its own labels; pick another key".into()),
            );
        } else if !is_label_key(&k) {
            ctx.error(
                kspan,
                &field,
                format!("`{k}` is not a valid Kubernetes label key"),
                Some("use [prefix/]name with name ≤ 63 characters of a-z, A-Z, 0-9, '-', '_', '.'".into()),
            );
        } else if !is_label_value(&v) {
            ctx.error(
                vspan,
                &field,
                format!("`{v}` is not a valid Kubernetes label value"),
                Some(
                    "≤ 63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric"
                        .into(),
                ),
            );
        } else {
            labels.insert(k, v);
        }
    }
    labels
}

fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    v.len() <= 63
        && (b.is_empty()
            || (b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))))
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    !name.is_empty() && is_label_value(name) && prefix.is_none_or(|p| is_dns_name(p) || is_dns_label(p))
}

/// The default shop title for a store name (`chai-corner` → `Chai Corner`).
pub fn title_case(name: &str) -> String {
    name.split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds stores that claim the same host; the later file (by name) gets the diagnostic.
pub fn duplicate_hosts(specs: &[(&Path, &StoreSpec)]) -> Vec<Diagnostic> {
    duplicate_hosts_in(specs, |path| std::fs::read_to_string(path).unwrap_or_default())
}

/// [`duplicate_hosts`] for files that are not on disk (a Git tree): `text` gives a file's
/// content, which is only needed to point at the `host` line of a duplicate.
pub fn duplicate_hosts_in(specs: &[(&Path, &StoreSpec)], text: impl Fn(&Path) -> String) -> Vec<Diagnostic> {
    // Looked up once per store on every changed snapshot: a hash map, not a tree.
    let mut seen: std::collections::HashMap<&str, &Path> =
        std::collections::HashMap::with_capacity(specs.len());
    let mut out = Vec::new();
    for (path, spec) in specs {
        match seen.get(spec.host.as_str()) {
            Some(first) => {
                let src = text(path);
                let span = host_span(&src);
                let msg = format!("host `{}` is already used by {}", spec.host, first.display());
                let hint = "each store needs its own host; set `host` in one of the files";
                let d = match span {
                    Some(span) => Diagnostic::at(path, &src, span, "host", msg),
                    None => {
                        let mut d = Diagnostic::whole_file(path, msg);
                        d.field = "host".into();
                        d
                    }
                };
                out.push(d.with_hint(hint));
            }
            None => {
                seen.insert(&spec.host, path);
            }
        }
    }
    out
}

fn host_span(src: &str) -> Option<std::ops::Range<usize>> {
    let doc = toml::de::DeTable::parse(src).ok()?;
    doc.get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "host")
        .map(|(_, v)| v.span())
}

#[cfg(test)]
mod tests;
