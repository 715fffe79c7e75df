//! The README must not drift from the code: its metric list equals what the daemon exposes, and
//! every subcommand it documents exists.

use std::path::PathBuf;
use std::process::Command;

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn metric_list_equals_the_exposed_metrics() {
    let text = readme();
    let start = text.find("<!-- metrics:start -->").expect("metrics:start marker");
    let end = text.find("<!-- metrics:end -->").expect("metrics:end marker");
    let mut documented: Vec<String> = text[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    documented.sort();
    assert_eq!(documented, storekeeper::metrics::NAMES);
}

#[test]
fn documented_subcommands_exist() {
    let text = readme();
    for sub in [
        "validate",
        "plan",
        "apply",
        "run",
        "status",
        "approve-deletion",
        "suspend",
        "resume",
        "reconcile",
        "logs",
        "render",
        "backup",
        "backups",
    ] {
        assert!(
            text.contains(&format!("`storekeeper {sub}")),
            "README documents `storekeeper {sub}`"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
            .args([sub, "--help"])
            .output()
            .expect("run");
        assert!(out.status.success(), "storekeeper {sub} --help");
    }
}

#[test]
fn readme_opens_with_the_two_commands() {
    let text = readme();
    let first_block = text
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    assert!(first_block.contains("scripts/run"), "{first_block}");
    assert!(first_block.contains("scripts/test"), "{first_block}");
    let ci =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains("exec scripts/test"),
        ".ci/run runs the README's test command"
    );
}
