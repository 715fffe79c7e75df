//! Store spec → helm values (one function per engine), and the canonical spec hash.
//!
//! The values are the chart's contract (see `charts/*/README.md`). Credentials are never values:
//! the chart reads them from the Secret the daemon creates (`existingSecret`). The hash covers
//! everything that changes what helm would do, so "hash unchanged" safely means "nothing to do".

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use crate::config::BackupSettings;
use crate::spec::backup::RestoreFrom;
use crate::spec::{Engine, Plan, StoreSpec};

/// Name of the Secret the daemon creates in each store namespace and the charts reference.
pub const CREDENTIALS_SECRET: &str = "storekeeper-credentials";

/// Quota, default limits and storage of each plan (the table in the README).
pub fn plan_resources(plan: Plan) -> Json {
    let (rc, rm, lc, lm, st, pvcs, pods, dc, dm, drc, drm, app, db) = match plan {
        Plan::Small => (
            "1", "2Gi", "2", "4Gi", "10Gi", 4, 10, "500m", "512Mi", "100m", "128Mi", "5Gi", "5Gi",
        ),
        Plan::Medium => (
            "2", "4Gi", "4", "8Gi", "20Gi", 4, 20, "1", "1Gi", "200m", "256Mi", "10Gi", "10Gi",
        ),
        Plan::Large => (
            "4", "8Gi", "8", "16Gi", "40Gi", 6, 40, "2", "2Gi", "250m", "512Mi", "20Gi", "20Gi",
        ),
    };
    json!({
        "quota": {
            "requestsCpu": rc, "requestsMemory": rm, "limitsCpu": lc, "limitsMemory": lm,
            "requestsStorage": st, "persistentVolumeClaims": pvcs, "pods": pods
        },
        "limitRange": {
            "defaultCpu": dc, "defaultMemory": dm, "defaultRequestCpu": drc, "defaultRequestMemory": drm
        },
        "storage": { "app": app, "db": db }
    })
}

/// The effective values for a store: the engine's mapping, then the file's raw `values` merged last.
pub fn values_for(spec: &StoreSpec) -> Json {
    let mut v = match spec.engine {
        Engine::Woocommerce => woocommerce(spec),
        Engine::Medusa => medusa(spec),
    };
    merge(&mut v, &Json::Object(spec.values.clone()));
    v
}

/// The values helm gets for a store as its desired state: [`values_for`] plus the chart's
/// `backup:` block. What the spec hash covers.
pub fn store_values(spec: &StoreSpec, backup: Option<&BackupSettings>) -> Json {
    let mut v = values_for(spec);
    if let (Some(b), Json::Object(m)) = (backup_values(spec, backup), &mut v) {
        m.insert("backup".into(), b);
    }
    v
}

/// The chart's `backup:` values from `[backup]` in storekeeper.toml and the store file's own
/// `[backup]`. `None` without `[backup]`: the chart's default (no CronJob), and a store's hash
/// stays what it was before backups existed. The snapshot's revision tag is not here: see
/// [`at_apply`].
pub fn backup_values(spec: &StoreSpec, settings: Option<&BackupSettings>) -> Option<Json> {
    let s = settings?;
    let b = &spec.backup;
    if b.enabled == Some(false) {
        return Some(json!({ "enabled": false, "existingSecret": s.secret.name }));
    }
    Some(json!({
        "enabled": true,
        "repository": s.repository_for(&spec.name),
        "existingSecret": s.secret.name,
        "schedule": b.schedule.as_deref().unwrap_or(&s.schedule),
        "retention": {
            "keepDaily": b.keep_daily.unwrap_or(s.retention.keep_daily),
            "keepWeekly": b.keep_weekly.unwrap_or(s.retention.keep_weekly),
            "keepMonthly": b.keep_monthly.unwrap_or(s.retention.keep_monthly),
        },
    }))
}

/// The chart's restore values (`backup.restore`): the source store's repository, read with the
/// same Secret. Only for a first install (`crate::backup::restore_for`).
pub fn restore_values(restore: &RestoreFrom, settings: &BackupSettings) -> Json {
    json!({
        "existingSecret": settings.secret.name,
        "restore": {
            "enabled": true,
            "fromStore": restore.store.as_str(),
            "snapshot": restore.snapshot.as_str(),
            "repository": settings.repository_for(&restore.store),
        },
    })
}

/// What an apply adds outside the spec hash, under `backup`: the revision this apply comes from
/// (the snapshots' `revision=` tag: the store's CronJob keeps it until the store is applied
/// again, so it is the revision of the store's last apply) and, for a first install, the
/// restore. Hashing them would upgrade every store on every commit (the revision), or a store
/// whose `restore_from` only mattered once.
pub fn at_apply(values: &mut Json, revision: &str, restore: Option<Json>) {
    let Json::Object(m) = values else { return };
    let entry = m.entry("backup").or_insert_with(|| json!({}));
    if let Json::Object(b) = entry {
        b.insert("revision".into(), json!(revision_tag(revision)));
    }
    if let Some(r) = restore {
        merge(entry, &r);
    }
}

/// A revision as the backup scripts take a tag (`[A-Za-z0-9._:/@+-]{1,128}`), else `unknown`.
fn revision_tag(revision: &str) -> &str {
    let ok = (1..=128).contains(&revision.len())
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b));
    if ok { revision } else { "unknown" }
}

fn store_common(spec: &StoreSpec) -> Map<String, Json> {
    let s = &spec.shop;
    let mut m = Map::new();
    m.insert("name".into(), json!(spec.name.as_str()));
    m.insert("host".into(), json!(spec.host));
    m.insert("plan".into(), json!(spec.plan.as_str()));
    m.insert("title".into(), json!(s.title));
    m.insert("adminUser".into(), json!(spec.admin_user));
    m.insert("adminEmail".into(), json!(spec.admin_email));
    m.insert("currency".into(), json!(s.currency));
    m.insert("country".into(), json!(s.country));
    m.insert("state".into(), json!(s.state));
    m.insert("address".into(), json!(s.address));
    m.insert("city".into(), json!(s.city));
    m.insert("postcode".into(), json!(s.postcode));
    m.insert("sampleProducts".into(), json!(s.sample_products));
    m
}

/// The store's tax rates as WooCommerce keeps them: 4-decimal strings. Both charts take them:
/// WooCommerce creates one tax rate each; the Medusa chart passes them to the seed and migration
/// scripts as `STORE_TAXES` ("name|rate" lines) and creates no tax regions itself, because a
/// Medusa tax region belongs to a region that only the seed creates.
fn taxes(spec: &StoreSpec) -> Json {
    spec.shop
        .taxes
        .iter()
        .map(|t| json!({"name": t.name, "rate": format!("{:.4}", t.rate)}))
        .collect()
}

fn chart_values(store: Map<String, Json>, spec: &StoreSpec) -> Json {
    json!({ "existingSecret": CREDENTIALS_SECRET, "store": store, "resources": plan_resources(spec.plan) })
}

/// WooCommerce: the common shop settings, taxes and the cash-on-delivery switch.
fn woocommerce(spec: &StoreSpec) -> Json {
    let mut store = store_common(spec);
    store.insert("taxes".into(), taxes(spec));
    store.insert("cashOnDelivery".into(), json!(spec.shop.cash_on_delivery));
    chart_values(store, spec)
}

/// Medusa: the common shop settings and taxes (cash on delivery is not a Medusa setting).
fn medusa(spec: &StoreSpec) -> Json {
    let mut store = store_common(spec);
    store.insert("taxes".into(), taxes(spec));
    chart_values(store, spec)
}

/// What a change of a store's values does to one of its volumes (`resources.storage.app` or
/// `.db`). The charts never apply a new size blindly: an existing claim keeps its size, because a
/// claim can never shrink and growing needs `persistence.expandVolumes` and a StorageClass with
/// `allowVolumeExpansion` (k3s local-path has none). Plan output shows these next to the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeChange {
    /// The new size is smaller: the volume keeps its size (and may hold more than the new
    /// storage quota allows, which only stops new claims).
    KeepsLarger {
        volume: &'static str,
        kept: String,
        requested: String,
    },
    /// The new size is larger: applied only where the chart may expand volumes.
    GrowsIfExpandable {
        volume: &'static str,
        from: String,
        to: String,
    },
}

impl std::fmt::Display for VolumeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeChange::KeepsLarger {
                volume,
                kept,
                requested,
            } => write!(
                f,
                "{volume} volume stays {kept}: volumes never shrink (the plan asks for {requested})"
            ),
            VolumeChange::GrowsIfExpandable { volume, from, to } => write!(
                f,
                "{volume} volume grows {from} -> {to} only with persistence.expandVolumes = true \
                 on a StorageClass that allows expansion; otherwise it stays {from}"
            ),
        }
    }
}

/// The volume changes between the values last applied (`old`) and the new ones, for
/// `storekeeper plan`; empty when no volume size changes (or on a first install, `old` = null).
pub fn volume_changes(old: &Json, new: &Json) -> Vec<VolumeChange> {
    ["app", "db"]
        .into_iter()
        .filter_map(|volume| {
            let size = |v: &Json| v["resources"]["storage"][volume].as_str().map(str::to_string);
            let (from, to) = (size(old)?, size(new)?);
            let (a, b) = (quantity_bytes(&from)?, quantity_bytes(&to)?);
            if b < a {
                Some(VolumeChange::KeepsLarger {
                    volume,
                    kept: from,
                    requested: to,
                })
            } else if b > a {
                Some(VolumeChange::GrowsIfExpandable { volume, from, to })
            } else {
                None
            }
        })
        .collect()
}

/// A Kubernetes quantity (`5Gi`, `500M`, `1.5Gi`, plain bytes) in bytes. Hand-written: the only
/// crate type for quantities (k8s-openapi's `Quantity`) is a string without arithmetic, and the
/// plan table uses nothing beyond these suffixes.
fn quantity_bytes(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 10] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n * factor)
}

/// Deep merge like helm's: tables merge key by key, anything else replaces.
pub fn merge(base: &mut Json, top: &Json) {
    match (base, top) {
        (Json::Object(b), Json::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Everything besides the values that changes what an apply does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashInputs {
    pub chart_version: String,
    /// Contents of the operator's extra values files, in order.
    pub extra_values: Vec<Vec<u8>>,
}

impl HashInputs {
    /// A short digest of these inputs: memoised spec hashes stay valid while it is unchanged.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.chart_version.as_bytes());
        for b in &self.extra_values {
            h.update([0]);
            h.update(Sha256::digest(b));
        }
        hex::encode(h.finalize())
    }
}

/// The canonical spec hash: sha256 over a canonical JSON document of the effective values, the
/// namespace settings (labels, owner, protect), the chart version and the extra values files. Key order, whitespace and
/// comments of the store file cannot change it; any effective value does.
pub fn spec_hash(spec: &StoreSpec, values: &Json, inputs: &HashInputs) -> String {
    let extra: Vec<String> = inputs
        .extra_values
        .iter()
        .map(|b| hex::encode(Sha256::digest(b)))
        .collect();
    let mut doc = json!({
        "v": 1,
        "engine": spec.engine.as_str(),
        "chart": inputs.chart_version,
        "extra": extra,
        "labels": spec.labels,
        "protect": spec.protect,
        "values": values,
    });
    // The owner is a namespace label (`storekeeper.dev/owner`). Only present when set, so that
    // a store without an owner keeps the hash it had before owners existed.
    if let (Some(owner), Json::Object(m)) = (&spec.owner, &mut doc) {
        m.insert("owner".into(), json!(owner.as_str()));
    }
    // `final = false` is recorded on the namespace at apply time, so it must cause an apply;
    // present only when set, so other stores keep their hashes.
    if let (false, Json::Object(m)) = (spec.backup.final_backup, &mut doc) {
        m.insert("final_backup".into(), json!(false));
    }
    let mut canonical = String::new();
    write_canonical(&doc, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The spec's identity apart from its name: the canonical hash with every field that was
/// derived from the store's name (the default host `<name>.<base_domain>`, the default title,
/// the default admin e-mail) replaced by a placeholder. Two files whose specs differ only in
/// their names have the same identity: the mark of a renamed store file.
pub fn identity_hash(spec: &StoreSpec, base_domain: &str) -> String {
    const NAME: &str = "{name}";
    let name = spec.name.as_str();
    let mut s = spec.clone();
    let default_email = format!("admin@{}", spec.host);
    if spec.host == format!("{name}.{base_domain}") {
        s.host = format!("{NAME}.{base_domain}");
    }
    if spec.shop.title == crate::spec::title_case(name) {
        s.shop.title = NAME.into();
    }
    if spec.admin_email == default_email {
        s.admin_email = NAME.into();
    }
    let mut values = values_for(&s);
    if let Some(store) = values.get_mut("store").and_then(Json::as_object_mut) {
        store.insert("name".into(), json!(NAME));
    }
    spec_hash(&s, &values, &HashInputs::default())
}

/// JSON with object keys sorted at every level, whatever map type serde_json was built with.
pub fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Reads `version:` from a chart's Chart.yaml without a YAML parser (the field is a plain scalar).
pub fn chart_version(chart_yaml: &str) -> Option<String> {
    chart_yaml.lines().find_map(|l| {
        let rest = l.strip_prefix("version:")?;
        Some(rest.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::spec::{SpecDefaults, parse_bytes};

    /// One store file's settings, rendered to TOML in a chosen layout.
    #[derive(Debug, Clone)]
    struct Fields {
        engine: &'static str,
        plan: &'static str,
        currency: &'static str,
        title: String,
        rate: u8,
        cod: bool,
        label: String,
        replicas: u8,
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            prop_oneof![Just("woocommerce"), Just("medusa")],
            prop_oneof![Just("small"), Just("medium"), Just("large")],
            prop_oneof![Just("INR"), Just("USD"), Just("EUR")],
            "[A-Za-z][A-Za-z ]{0,20}[A-Za-z]",
            0u8..=100,
            any::<bool>(),
            "[a-z]{1,8}",
            0u8..5,
        )
            .prop_map(
                |(engine, plan, currency, title, rate, cod, label, replicas)| Fields {
                    engine,
                    plan,
                    currency,
                    title,
                    rate,
                    cod: cod && engine == "woocommerce",
                    label,
                    replicas,
                },
            )
    }

    /// Renders the same settings as TOML; `variant` shuffles key order, spacing and comments.
    fn render(f: &Fields, variant: u8) -> String {
        let mut top = [
            format!("engine = \"{}\"", f.engine),
            format!("plan=\"{}\"", f.plan),
            "protect = false # keep".to_string(),
        ];
        let mut shop = [
            format!("currency = \"{}\"", f.currency),
            format!("title   =   \"{}\"", f.title),
            format!("cash_on_delivery = {}", f.cod),
            format!("taxes = [ {{ rate = {}, name = \"T\" }} ]", f.rate),
        ];
        if !variant.is_multiple_of(2) {
            top.reverse();
            shop.reverse();
        }
        let comment = if variant.is_multiple_of(3) {
            "# a comment\n\n"
        } else {
            ""
        };
        format!(
            "{comment}{}\n\n[shop]\n{}\n[labels]\nteam = \"{}\"\n[values]\nreplicas = {}\n",
            top.join("\n"),
            shop.join("\n"),
            f.label,
            f.replicas
        )
    }

    fn hash_of(src: &str, inputs: &HashInputs) -> String {
        let d = SpecDefaults {
            base_domain: "example.com".into(),
            policy: Default::default(),
        };
        let spec = match parse_bytes(Path::new("s.toml"), src.as_bytes(), &d) {
            Ok(s) => s,
            Err(e) => panic!("generated file must be valid: {e:?}\n{src}"),
        };
        spec_hash(&spec, &values_for(&spec), inputs)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Layout (key order, whitespace, comments) never changes the hash.
        #[test]
        fn hash_ignores_layout(f in fields(), a in 0u8..6, b in 0u8..6) {
            let inputs = HashInputs { chart_version: "1.0.0".into(), extra_values: vec![] };
            prop_assert_eq!(hash_of(&render(&f, a), &inputs), hash_of(&render(&f, b), &inputs));
        }

        /// Any effective change (a field, the chart version, an extra values file) changes it.
        #[test]
        fn hash_follows_every_effective_value(f in fields(), g in fields(), variant in 0u8..6) {
            let inputs = HashInputs { chart_version: "1.0.0".into(), extra_values: vec![b"a: 1".to_vec()] };
            let base = hash_of(&render(&f, variant), &inputs);
            let same = f.engine == g.engine && f.plan == g.plan && f.currency == g.currency
                && f.title == g.title && f.rate == g.rate && f.cod == g.cod && f.label == g.label
                && f.replicas == g.replicas;
            prop_assert_eq!(same, base == hash_of(&render(&g, variant), &inputs));
            let bumped = HashInputs { chart_version: "1.0.1".into(), ..inputs.clone() };
            prop_assert_ne!(&base, &hash_of(&render(&f, variant), &bumped));
            let other_extra = HashInputs { extra_values: vec![b"a: 2".to_vec()], ..inputs.clone() };
            prop_assert_ne!(&base, &hash_of(&render(&f, variant), &other_extra));
        }
    }

    fn storage(app: &str, db: &str) -> Json {
        json!({"resources": {"storage": {"app": app, "db": db}}})
    }

    #[test]
    fn plan_changes_say_what_happens_to_each_volume() {
        let small = plan_resources(Plan::Small);
        let medium = plan_resources(Plan::Medium);
        assert_eq!(
            volume_changes(
                &json!({"resources": medium.clone()}),
                &json!({"resources": small.clone()})
            ),
            vec![
                VolumeChange::KeepsLarger {
                    volume: "app",
                    kept: "10Gi".into(),
                    requested: "5Gi".into()
                },
                VolumeChange::KeepsLarger {
                    volume: "db",
                    kept: "10Gi".into(),
                    requested: "5Gi".into()
                },
            ]
        );
        let up = volume_changes(&json!({"resources": small}), &json!({"resources": medium}));
        assert_eq!(up.len(), 2);
        assert_eq!(
            up[0].to_string(),
            "app volume grows 5Gi -> 10Gi only with persistence.expandVolumes = true on a \
             StorageClass that allows expansion; otherwise it stays 5Gi"
        );
        // Same size in other units, a first install, or unparsable sizes: nothing to say.
        assert!(volume_changes(&storage("1Gi", "5Gi"), &storage("1024Mi", "5Gi")).is_empty());
        assert!(volume_changes(&Json::Null, &storage("5Gi", "5Gi")).is_empty());
        assert!(volume_changes(&storage("lots", "5Gi"), &storage("5Gi", "5Gi")).is_empty());
        assert_eq!(
            volume_changes(&storage("5Gi", "20Gi"), &storage("5Gi", "15Gi"))[0].to_string(),
            "db volume stays 20Gi: volumes never shrink (the plan asks for 15Gi)"
        );
    }

    #[test]
    fn quantities_in_both_unit_systems() {
        assert_eq!(quantity_bytes("1Gi"), quantity_bytes("1024Mi"));
        assert_eq!(quantity_bytes("1073741824"), quantity_bytes("1Gi"));
        assert_eq!(quantity_bytes("500M"), Some(5e8));
        assert!(quantity_bytes("1.5Gi") > quantity_bytes("1Gi"));
        assert_eq!(quantity_bytes("-1Gi"), None);
        assert_eq!(quantity_bytes(""), None);
    }

    /// The owner becomes the namespace label `storekeeper.dev/owner`, so it is hashed; a store
    /// without one keeps the hash it had before owners existed (no upgrade of every store).
    #[test]
    fn owner_is_hashed_only_when_set() {
        let inputs = HashInputs {
            chart_version: "1.0.0".into(),
            extra_values: vec![],
        };
        let none = hash_of("engine = \"woocommerce\"\n", &inputs);
        assert_eq!(
            none,
            "73e298234f8d488e6375ac8b1d8b7988044547b7e80778b4442f8b10af643aec"
        );
        let acme = hash_of("engine = \"woocommerce\"\nowner = \"acme\"\n", &inputs);
        let bob = hash_of("engine = \"woocommerce\"\nowner = \"bob\"\n", &inputs);
        assert!(acme != none && acme != bob, "{acme} {bob} {none}");
    }

    fn backup_settings(src: &str) -> BackupSettings {
        let s = crate::config::Settings::parse(Path::new("c.toml"), src).unwrap_or_else(|e| panic!("{e:?}"));
        (*s.backup.expect("[backup]")).clone()
    }

    fn spec_of(name: &str, src: &str) -> StoreSpec {
        let d = SpecDefaults {
            base_domain: "example.com".into(),
            policy: Default::default(),
        };
        parse_bytes(Path::new(&format!("{name}.toml")), src.as_bytes(), &d)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn backup_values_combine_the_operator_and_the_store_file() {
        let b = backup_settings(
            "[backup]\nrepository = \"s3:https://s3.example.com/b\"\nsecret = \"restic\"\nkeep_monthly = 12\n",
        );
        let spec = spec_of(
            "shop",
            "engine = \"woocommerce\"\n[backup]\nschedule = \"@daily\"\nkeep_daily = 3\n",
        );
        let v = store_values(&spec, Some(&b));
        assert_eq!(
            v["backup"],
            json!({"enabled": true, "repository": "s3:https://s3.example.com/b/shop", "existingSecret": "restic",
                   "schedule": "@daily", "retention": {"keepDaily": 3, "keepWeekly": 4, "keepMonthly": 12}})
        );
        let off = spec_of("shop", "engine = \"woocommerce\"\n[backup]\nenabled = false\n");
        assert_eq!(
            store_values(&off, Some(&b))["backup"],
            json!({"enabled": false, "existingSecret": "restic"})
        );
        assert!(
            store_values(&spec, None).get("backup").is_none(),
            "no [backup]: no block"
        );
    }

    /// The revision and the restore are added when a store is applied, outside the hash: a new
    /// commit that does not touch a store does not upgrade it.
    #[test]
    fn the_revision_tag_and_the_restore_are_not_hashed() {
        let b = backup_settings("[backup]\nrepository = \"/repository\"\n");
        let spec = spec_of(
            "clone",
            "engine = \"woocommerce\"\nrestore_from = { store = \"shop\" }\n",
        );
        let inputs = HashInputs::default();
        let hashed = store_values(&spec, Some(&b));
        let hash = spec_hash(&spec, &hashed, &inputs);
        let mut applied = hashed.clone();
        let restore = spec.restore_from.as_ref().map(|r| restore_values(r, &b));
        at_apply(&mut applied, "git:0123abcd", restore);
        assert_eq!(applied["backup"]["revision"], "git:0123abcd");
        assert_eq!(
            applied["backup"]["restore"],
            json!({"enabled": true, "fromStore": "shop", "snapshot": "latest", "repository": "/repository/shop"})
        );
        assert_eq!(applied["backup"]["enabled"], true, "merged into the backup block");
        let again = store_values(&spec, Some(&b));
        assert_eq!(
            spec_hash(&spec, &again, &inputs),
            hash,
            "the same spec keeps its hash whatever the revision"
        );
        let mut odd = hashed;
        at_apply(&mut odd, "rev with spaces", None);
        assert_eq!(odd["backup"]["revision"], "unknown");
    }

    #[test]
    fn final_false_changes_the_hash_and_stores_without_backup_settings_keep_theirs() {
        let inputs = HashInputs {
            chart_version: "1.0.0".into(),
            extra_values: vec![],
        };
        let plain = "engine = \"woocommerce\"\n";
        assert_eq!(
            hash_of(plain, &inputs),
            "73e298234f8d488e6375ac8b1d8b7988044547b7e80778b4442f8b10af643aec",
            "the hash of a store before backups existed"
        );
        assert_ne!(
            hash_of(&format!("{plain}[backup]\nfinal = false\n"), &inputs),
            hash_of(plain, &inputs)
        );
        let b = backup_settings("[backup]\nrepository = \"/repository\"\n");
        let spec = spec_of("s", plain);
        assert_ne!(
            spec_hash(&spec, &store_values(&spec, Some(&b)), &inputs),
            hash_of(plain, &inputs),
            "turning backups on applies the CronJob"
        );
    }

    #[test]
    fn raw_values_merge_last_and_deep() {
        let mut base = serde_json::json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut base, &serde_json::json!({"a": {"c": 3}, "d": [2, 3]}));
        assert_eq!(base, serde_json::json!({"a": {"b": 1, "c": 3}, "d": [2, 3]}));
    }

    #[test]
    fn chart_version_is_read_from_chart_yaml() {
        let y = "apiVersion: v2\nname: x\nversion: \"0.3.1\"\nappVersion: 6.8\n";
        assert_eq!(chart_version(y).as_deref(), Some("0.3.1"));
        assert_eq!(chart_version("name: x\n"), None);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let mut out = String::new();
        write_canonical(
            &serde_json::json!({"b": {"d": 1, "c": [true, null]}, "a": "x"}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":"x","b":{"c":[true,null],"d":1}}"#);
    }
}
