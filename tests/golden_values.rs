//! The engine mappings (store file → chart values) against golden files in `tests/golden/`.
//! The chart checks (`scripts/check-charts`) render the charts with these same files, so the
//! daemon's output and the charts' input cannot drift apart unnoticed.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo nextest run --test golden_values`.

use std::path::PathBuf;

use storekeeper::source::dir;
use storekeeper::spec::SpecDefaults;
use storekeeper::values::values_for;

/// Compares `rendered` with a golden file, or with UPDATE_GOLDEN rewrites the file.
fn compare_golden(rendered: &str, file: &std::path::Path, update: bool) {
    if update {
        if let Err(e) = std::fs::write(file, rendered) {
            panic!("{}: {e}", file.display());
        }
        return;
    }
    let golden = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(
        rendered,
        golden,
        "{} differs; UPDATE_GOLDEN=1 regenerates it",
        file.display()
    );
}

/// Compares (or with UPDATE_GOLDEN rewrites) one golden values file.
fn check_golden(spec: &storekeeper::spec::StoreSpec, file: &std::path::Path, update: bool) {
    let rendered = match serde_json::to_string_pretty(&values_for(spec)) {
        Ok(s) => s + "\n",
        Err(e) => panic!("{e}"),
    };
    compare_golden(&rendered, file, update);
    // Credentials are never values: only the Secret's name is.
    assert!(
        !rendered.to_lowercase().contains("password"),
        "{}",
        file.display()
    );
}

/// Overrides a policy allows reach the charts as values the chart checks render and validate
/// (`scripts/check-charts` renders every golden file): an agency's allowed keys and the default
/// policy's Medusa image and sizing.
#[test]
fn allowed_overrides_map_to_golden_values_the_chart_checks_render() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let agency = storekeeper::config::Settings::load(&root.join("tests/fixtures/policy/agency.toml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let cases = [
        (
            "allowed.toml",
            agency.spec_defaults(),
            "woocommerce--policy-allowed",
        ),
        (
            "allowed-medusa.toml",
            storekeeper::config::Settings::default().spec_defaults(),
            "medusa--policy-allowed",
        ),
    ];
    for (file, defaults, golden) in cases {
        let path = root.join("tests/fixtures/policy/stores").join(file);
        let spec = storekeeper::spec::load_file(&path, &defaults).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        check_golden(
            &spec,
            &root.join(format!("tests/golden/{golden}.values.json")),
            update,
        );
    }
}

#[test]
fn example_stores_map_to_the_golden_values() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let defaults = SpecDefaults {
        base_domain: "localtest.me".into(),
        policy: Default::default(),
    };
    let snap = match dir::read(&root.join("stores.d"), &defaults) {
        Ok(s) => s,
        Err(e) => panic!("stores.d: {e}"),
    };
    assert_eq!(snap.stores.len(), 3);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for spec in snap.specs() {
        let file = root.join(format!(
            "tests/golden/{}--{}.values.json",
            spec.engine.as_str(),
            spec.name
        ));
        check_golden(spec, &file, update);
    }
}

/// What storekeeper adds for backups, per example store, as the chart checks render it on top
/// of the values above (`tests/golden/<engine>--<store>.backup.json`): the `backup:` block from
/// a `[backup]` config, the revision tag of an apply, and the restore of a first install (from
/// the first example store of the same engine: a clone, or a restore of the store itself).
/// Regenerated like the values files.
#[test]
fn backup_values_map_to_the_golden_overlays() {
    use storekeeper::spec::backup::{RestoreFrom, Snapshot};
    use storekeeper::values::{at_apply, restore_values, store_values};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = "[backup]\nrepository = \"s3:https://s3.example.com/shops-backups/storekeeper\"\n\
                  secret = \"storekeeper-backup\"\nschedule = \"30 3 * * *\"\n";
    let settings = storekeeper::config::Settings::parse(std::path::Path::new("storekeeper.toml"), config)
        .unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
    let b = settings.backup.clone().expect("[backup]");
    let snap = dir::read(&root.join("stores.d"), &settings.spec_defaults()).unwrap_or_else(|e| panic!("{e}"));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut specs: Vec<(storekeeper::spec::StoreSpec, String)> =
        snap.specs().map(|s| (s.clone(), s.name.to_string())).collect();
    // The policy fixtures' goldens are rendered by the chart checks too, so they need overlays.
    for (file, golden) in [
        ("allowed.toml", "policy-allowed"),
        ("allowed-medusa.toml", "policy-allowed"),
    ] {
        let path = root.join("tests/fixtures/policy/stores").join(file);
        let defaults = storekeeper::config::Settings::default().spec_defaults();
        let spec = storekeeper::spec::load_file(&path, &defaults).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        specs.push((spec, golden.to_string()));
    }
    for (spec, golden_name) in &specs {
        let mut v = store_values(spec, Some(&b));
        let source = snap
            .specs()
            .find(|s| s.engine == spec.engine)
            .map(|s| s.name.clone());
        let restore = RestoreFrom {
            store: source.expect("a store of its engine"),
            snapshot: Snapshot::Latest,
        };
        at_apply(
            &mut v,
            "git:0123456789abcdef0123456789abcdef01234567",
            Some(restore_values(&restore, &b)),
        );
        let overlay = serde_json::json!({ "backup": v["backup"] });
        let rendered = serde_json::to_string_pretty(&overlay).unwrap_or_default() + "\n";
        let file = root.join(format!(
            "tests/golden/{}--{golden_name}.backup.json",
            spec.engine.as_str(),
        ));
        compare_golden(&rendered, &file, update);
    }
}
