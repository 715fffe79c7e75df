//! The engine mappings (store file → chart values) against golden files in `tests/golden/`.
//! The chart checks (`scripts/check-charts`) render the charts with these same files, so the
//! daemon's output and the charts' input cannot drift apart unnoticed.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo nextest run --test golden_values`.

use std::path::PathBuf;

use storekeeper::source::dir;
use storekeeper::spec::SpecDefaults;
use storekeeper::values::values_for;

/// Compares (or with UPDATE_GOLDEN rewrites) one golden values file.
fn check_golden(spec: &storekeeper::spec::StoreSpec, file: &std::path::Path, update: bool) {
    let rendered = match serde_json::to_string_pretty(&values_for(spec)) {
        Ok(s) => s + "\n",
        Err(e) => panic!("{e}"),
    };
    if update {
        if let Err(e) = std::fs::write(file, &rendered) {
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
        let rendered = match serde_json::to_string_pretty(&values_for(spec)) {
            Ok(s) => s + "\n",
            Err(e) => panic!("{e}"),
        };
        if update {
            if let Err(e) = std::fs::write(&file, &rendered) {
                panic!("{}: {e}", file.display());
            }
            continue;
        }
        let golden = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(
            rendered,
            golden,
            "{} differs; UPDATE_GOLDEN=1 regenerates it",
            file.display()
        );
        // Credentials are never values: only the Secret's name is.
        assert!(
            !rendered.to_lowercase().contains("password"),
            "{}",
            file.display()
        );
    }
}
