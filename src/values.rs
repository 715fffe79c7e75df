//! Store spec → helm values (one function per engine), and the canonical spec hash.
//!
//! The values are the chart's contract (see `charts/*/README.md`). Credentials are never values:
//! the chart reads them from the Secret the daemon creates (`existingSecret`). The hash covers
//! everything that changes what helm would do, so "hash unchanged" safely means "nothing to do".

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

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

/// The store's tax rates as WooCommerce keeps them: 4-decimal strings. Both charts take them
/// (the Medusa chart passes them to its seed; tax regions are otherwise Medusa's own).
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
    let mut canonical = String::new();
    write_canonical(&doc, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
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
