//! `storekeeper validate` through the real binary: exit codes, compiler-style messages with
//! `file:line:col`, and the documented `--output json` shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validate(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .current_dir(root())
        .arg("validate")
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run storekeeper: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs one bad fixture and checks the exit code, the position, the message and the hint.
fn expect_bad(file: &str, position: &str, message: &str, hint: Option<&str>) {
    let path = format!("tests/fixtures/bad/{file}");
    let out = validate(&[&path]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{file}: exit code\n{all}");
    assert!(
        all.contains(&format!("error: {message}\n")),
        "{file}: message {message:?} missing\n{all}"
    );
    assert!(
        all.contains(&format!("--> {path}:{position}\n")),
        "{file}: position {position} missing\n{all}"
    );
    if let Some(hint) = hint {
        assert!(
            all.contains(&format!("= hint: {hint}\n")),
            "{file}: hint {hint:?} missing\n{all}"
        );
    }
}

#[test]
fn shipped_stores_are_valid() {
    let out = validate(&["stores.d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("ok: 3 store file(s) valid"), "{}", text(&out));
}

#[test]
fn unknown_key_with_suggestion() {
    expect_bad(
        "unknown-key.toml",
        "3:1",
        "unknown field `plna`",
        Some("did you mean `plan`?"),
    );
    let out = text(&validate(&["tests/fixtures/bad/unknown-key.toml"]));
    assert!(
        out.contains("3 | plna = \"small\"\n  | ^^^^\n"),
        "caret under the key:\n{out}"
    );
}

#[test]
fn wrong_type() {
    expect_bad(
        "wrong-type.toml",
        "2:11",
        "`protect` must be true or false, found string",
        None,
    );
}

#[test]
fn bad_enum() {
    expect_bad(
        "bad-enum.toml",
        "1:10",
        "`engine` must be one of woocommerce, medusa, found \"magento\"",
        Some("use one of: \"woocommerce\", \"medusa\""),
    );
}

#[test]
fn invalid_name_from_the_file_stem() {
    expect_bad(
        "Invalid_Name.toml",
        "1:1",
        "store name `Invalid_Name` must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit",
        Some("rename the file: the file name (without .toml) is the store's name"),
    );
}

#[test]
fn bad_currency_and_country() {
    expect_bad(
        "bad-currency.toml",
        "4:12",
        "`RUPEE` is not an ISO 4217 currency code",
        Some("use an ISO 4217 code such as \"INR\", \"USD\" or \"EUR\""),
    );
    expect_bad(
        "bad-country.toml",
        "4:11",
        "`ZZ` is not an ISO 3166-1 country code",
        None,
    );
}

#[test]
fn duplicate_host_across_files() {
    let out = validate(&["tests/fixtures/dup-host"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(
            "error: host `shop.example.com` is already used by tests/fixtures/dup-host/first.toml\n"
        ),
        "{all}"
    );
    assert!(
        all.contains("--> tests/fixtures/dup-host/second.toml:2:8\n"),
        "{all}"
    );
}

#[test]
fn toml_syntax_error() {
    let out = validate(&["tests/fixtures/bad/syntax-error.toml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("error: TOML syntax error: "), "{all}");
    assert!(
        all.contains("--> tests/fixtures/bad/syntax-error.toml:2:"),
        "{all}"
    );
}

#[test]
fn empty_file() {
    expect_bad("empty.toml", "1:1", "store file is empty", None);
}

#[test]
fn non_utf8_bytes() {
    expect_bad(
        "non-utf8.toml",
        "3:13",
        "file is not valid UTF-8",
        Some("save the file as UTF-8"),
    );
}

#[test]
fn oversized_file_is_refused() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("huge.toml");
    // Valid TOML, just too much of it: the limit must apply before parsing.
    let mut body = String::from("engine = \"woocommerce\"\n");
    while body.len() <= 70 * 1024 {
        body.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, body)?;
    let out = validate(&[path_str(&path)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("store file is larger than the 65536-byte limit"),
        "{}",
        text(&out)
    );
    Ok(())
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn all_errors_of_a_directory_are_reported_together() {
    let out = validate(&["tests/fixtures/bad"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        all.lines().filter(|l| l.starts_with("error: ")).count(),
        9,
        "{all}"
    );
    assert!(all.ends_with("invalid: 9 error(s) in 9 of 9 file(s)\n"), "{all}");
}

#[test]
fn usage_error_exits_2() {
    let out = validate(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn json_output_has_the_documented_shape() {
    let out = validate(&[
        "--output",
        "json",
        "tests/fixtures/bad/unknown-key.toml",
        "stores.d",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("stdout is not JSON: {e}\n{}", text(&out)),
    };
    assert_eq!(doc["valid"], false);
    let files = doc["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 4);
    for f in &files {
        assert!(
            f["path"].is_string()
                && f["valid"].is_boolean()
                && (f["store"].is_string() || f["store"].is_null())
        );
    }
    let diags = doc["diagnostics"].as_array().cloned().unwrap_or_default();
    assert_eq!(diags.len(), 1);
    let d = &diags[0];
    assert_eq!(d["file"], "tests/fixtures/bad/unknown-key.toml");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(3), Some(1)));
    assert_eq!(d["field"], "plna");
    assert_eq!(d["message"], "unknown field `plna`");
    assert_eq!(d["hint"], "did you mean `plan`?");
    let keys: Vec<&String> = d.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["column", "field", "file", "hint", "line", "message"]);
}

#[test]
fn daemon_config_is_validated_with_config() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("storekeeper.toml");
    std::fs::write(&cfg, "[reconcile]\nmax_deletions = 2\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .current_dir(root())
        .args(["validate", "--config", path_str(&cfg), "stores.d"])
        .output()?;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("unknown field `max_deletions`"), "{all}");
    assert!(all.contains("storekeeper.toml:2:1"), "{all}");
    assert!(all.contains("did you mean `max_deletions_per_cycle`?"), "{all}");
    Ok(())
}

#[test]
fn shipped_daemon_configs_are_valid() {
    for cfg in [
        "systemd/storekeeper.toml",
        "examples/vps-k3s/storekeeper.toml",
        "examples/local-k3d/storekeeper.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
            .current_dir(root())
            .args(["validate", "--config", cfg, "stores.d"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{cfg}: {}", text(&out));
    }
}
