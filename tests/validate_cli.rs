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
    std::fs::write(&cfg, "[reconcile]\nmax_delet = 2\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .current_dir(root())
        .args(["validate", "--config", path_str(&cfg), "stores.d"])
        .output()?;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("unknown field `max_delet`"), "{all}");
    assert!(all.contains("storekeeper.toml:2:1"), "{all}");
    assert!(all.contains("did you mean `max_deletions`?"), "{all}");
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

// ---------------------------------------------------------------------------------------------
// The operator's policy (`[policy]`, README "Policy")

const AGENCY: &str = "tests/fixtures/policy/agency.toml";
const STAR: &str = "tests/fixtures/policy/star.toml";

/// Validates one policy fixture (with a config, or under the default policy) and checks the exit
/// code and one complete diagnostic: message, position and hint.
fn expect_refused(config: Option<&str>, store: &str, position: &str, message: &str, hint: &str) -> String {
    let path = format!("tests/fixtures/policy/stores/{store}");
    let mut args = Vec::new();
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    args.push(&path);
    let out = validate(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{store}: exit code\n{all}");
    let expected = format!("error: {message}\n  --> {path}:{position}\n");
    assert!(all.contains(&expected), "{store}: {expected:?} missing\n{all}");
    // The diagnostic's own block (blocks are separated by an empty line).
    let block = all
        .split("\n\n")
        .find(|b| b.contains(&expected))
        .unwrap_or_default();
    assert!(
        format!("{block}\n").contains(&format!("  = hint: {hint}\n")),
        "{store}: hint {hint:?} missing\n{all}"
    );
    all
}

#[test]
fn a_store_that_disables_network_policies_is_refused() {
    for config in [None, Some(AGENCY)] {
        expect_refused(
            config,
            "no-network-policy.toml",
            "6:1",
            "`values.networkPolicy.enabled` is a guard-rail key (the network policies) that the policy does not allow",
            &format!(
                "guard-rail keys are allowed only when named; the operator can allow it by naming it in [policy] values_allowed, e.g. \"networkPolicy.enabled\"; allowed: {}",
                match config {
                    None => "\"*\", \"image.repository\", \"image.tag\" (the default policy)",
                    Some(_) => "\"wordpress.resources.*\", \"wordpress.extraEnv\" ([policy] values_allowed)",
                }
            )
            .replace("guard-rail keys are allowed only when named", match config {
                None => "`*` is a glob, and a glob never reaches guard-rail keys",
                Some(_) => "guard-rail keys are allowed only when named",
            }),
        );
    }
}

#[test]
fn a_store_that_lifts_the_quota_is_refused_key_by_key() {
    let all = expect_refused(
        None,
        "lifted-quota.toml",
        "6:11",
        "`values.resources.quota.limitsCpu` is a guard-rail key (the plan's quota, limit range and volume sizes) that the policy does not allow",
        "`*` is a glob, and a glob never reaches guard-rail keys; the operator can allow it by naming it in [policy] values_allowed, e.g. \"resources.quota.limitsCpu\"; allowed: \"*\", \"image.repository\", \"image.tag\" (the default policy)",
    );
    assert!(
        all.contains("--> tests/fixtures/policy/stores/lifted-quota.toml:6:29\n"),
        "{all}"
    );
    assert!(all.ends_with("invalid: 2 error(s) in 1 of 1 file(s)\n"), "{all}");
}

#[test]
fn a_store_that_replaces_an_image_is_refused() {
    expect_refused(
        None,
        "own-image.toml",
        "6:1",
        "`values.image.wordpress.repository` is a guard-rail key (the images) that the policy does not allow",
        "`*` is a glob, and a glob never reaches guard-rail keys; the operator can allow it by naming it in [policy] values_allowed, e.g. \"image.wordpress.repository\"; allowed: \"*\", \"image.repository\", \"image.tag\" (the default policy)",
    );
    // The Medusa app image is in the default list (Medusa has no official image), not in a list
    // that leaves it out.
    let out = validate(&["tests/fixtures/policy/stores/own-medusa-image.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    expect_refused(
        Some(AGENCY),
        "own-medusa-image.toml",
        "6:1",
        "`values.image.repository` is a guard-rail key (the images) that the policy does not allow",
        "guard-rail keys are allowed only when named; the operator can allow it by naming it in [policy] values_allowed, e.g. \"image.repository\"; allowed: \"wordpress.resources.*\", \"wordpress.extraEnv\" ([policy] values_allowed)",
    );
}

#[test]
fn a_host_outside_the_suffixes_is_refused() {
    expect_refused(
        Some(AGENCY),
        "foreign-host.toml",
        "4:8",
        "host `shop.bobs-bakery.com` is not under an allowed host suffix",
        "use a host ending in `.shops.agency.dev`, or leave `host` out for the default; custom hosts are not allowed for owner `bob` ([policy] custom_hosts_allowed)",
    );
    let out = validate(&["tests/fixtures/policy/stores/foreign-host.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "no suffixes, any host: {}",
        text(&out)
    );
}

#[test]
fn a_star_glob_warns_in_the_config_and_cannot_reach_a_guard_rail_key() {
    // The config loads, with a warning at the glob: it matches guard-rail keys it cannot allow.
    let out = validate(&[
        "--config",
        STAR,
        "stores.d/chai-corner.toml",
        "stores.d/corner-shop.toml",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("warning: `*` does not reach the guard-rail keys it matches\n  --> tests/fixtures/policy/star.toml:3:19\n"),
        "{all}"
    );
    assert!(all.contains("  = field: policy.values_allowed[0]\n"), "{all}");
    assert!(
        all.contains("  = hint: it matches image, imagePullSecrets, ingress.annotations, mariadb.tolerations, networkPolicy, plans, postgres.image, redis.image, resources, server.tolerations, wordpress.tolerations, but "),
        "{all}"
    );
    assert!(all.contains("but a glob never allows a guard-rail key; a store may set one only if values_allowed names it, e.g. \"networkPolicy.enabled\"\n"), "{all}");
    assert!(
        all.ends_with("ok: 2 store file(s) valid, 1 warning(s)\n"),
        "{all}"
    );
    // A store that tries to reach a guard-rail key through it is refused, pointing at the glob.
    let all = expect_refused(
        Some(STAR),
        "no-network-policy.toml",
        "6:1",
        "`values.networkPolicy.enabled` is a guard-rail key (the network policies) that the policy does not allow",
        "`*` (tests/fixtures/policy/star.toml:3:19) is a glob, and a glob never reaches guard-rail keys; the operator can allow it by naming it in [policy] values_allowed, e.g. \"networkPolicy.enabled\"; allowed: \"*\" ([policy] values_allowed)",
    );
    assert!(all.starts_with("warning: `*` does not reach"), "{all}");
}

#[test]
fn allowed_keys_pass() {
    let out = validate(&["--config", AGENCY, "tests/fixtures/policy/stores/allowed.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(text(&out), "ok: 1 store file(s) valid\n");
    // Both "allowed" fixtures pass the default policy too (they are the chart checks' cases for
    // allowed overrides: their rendered output must still pass the chart policies).
    let out = validate(&[
        "tests/fixtures/policy/stores/allowed.toml",
        "tests/fixtures/policy/stores/allowed-medusa.toml",
    ]);
    assert_eq!(text(&out), "ok: 2 store file(s) valid\n");
}

#[test]
fn the_owner_is_required_when_stores_are_counted_per_owner() {
    expect_refused(
        Some(AGENCY),
        "no-owner.toml",
        "1:1",
        "missing required field `owner`",
        "the policy counts stores per owner ([policy] max_stores_per_owner): add `owner = \"your-team\"`",
    );
    let out = validate(&["tests/fixtures/policy/stores/no-owner.toml"]);
    assert_eq!(out.status.code(), Some(0), "optional by default: {}", text(&out));
}

#[test]
fn a_plan_the_owner_may_not_use_is_refused() {
    expect_refused(
        Some(AGENCY),
        "big-plan.toml",
        "4:8",
        "plan `large` is not allowed for owner `bob`",
        "allowed for owner `bob`: \"small\" ([policy] plans_allowed)",
    );
}

#[test]
fn policy_errors_in_the_config_point_at_their_keys() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("storekeeper.toml");
    std::fs::write(
        &cfg,
        "[policy]\nvalues_allowed = [\"store.host\"]\nplans_allowed = [\"larg\"]\nmax_stores_per_owner = 0\n",
    )?;
    let out = validate(&["--config", path_str(&cfg), "stores.d"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let at = |pos: &str| format!("storekeeper.toml:{pos}\n");
    assert!(
        all.contains("error: `store.host` can never be allowed: storekeeper sets `store` itself\n"),
        "{all}"
    );
    assert!(
        all.contains(&at("2:19")) && all.contains(&at("3:18")) && all.contains(&at("4:24")),
        "{all}"
    );
    assert!(all.contains("  = hint: did you mean \"large\"?\n"), "{all}");
    Ok(())
}

#[test]
fn json_output_carries_config_warnings_separately() {
    let out = validate(&[
        "--output",
        "json",
        "--config",
        STAR,
        "tests/fixtures/policy/stores/no-network-policy.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let warnings = doc["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{doc:#}");
    assert_eq!(
        (warnings[0]["line"].as_u64(), warnings[0]["column"].as_u64()),
        (Some(3), Some(19))
    );
    let diags = doc["diagnostics"].as_array().cloned().unwrap_or_default();
    assert_eq!(diags.len(), 1, "{doc:#}");
    assert_eq!(diags[0]["field"], "values.networkPolicy.enabled");
    let keys: Vec<&String> = diags[0]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["column", "field", "file", "hint", "line", "message"],
        "the documented shape"
    );
    // Without warnings the document has no `warnings` key at all (the documented shape).
    let out = validate(&["--output", "json", "stores.d"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(doc.get("warnings").is_none(), "{doc:#}");
}

fn readme_section(start: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has no {start:?}"));
    let rest = &readme[from + start.len()..];
    let end = rest
        .find("\n## ")
        .or_else(|| rest.find("\n### "))
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The fenced blocks of one language in a piece of Markdown.
fn blocks<'a>(md: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    md.split(&fence)
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect()
}

#[test]
fn the_readme_policy_example_gives_the_output_it_shows() -> std::io::Result<()> {
    let section = readme_section("### Worked example");
    let dir = tempfile::tempdir()?;
    let files = blocks(&section, "toml");
    assert_eq!(files.len(), 3, "the config and two store files");
    for body in files {
        // Each block opens with `# <path>`: where the file lives.
        let name = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .and_then(|l| l.split([' ', ':']).next())
            .unwrap_or_else(|| panic!("a block without its path:\n{body}"));
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))?;
        std::fs::write(path, body)?;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .current_dir(dir.path())
        .args(["validate", "--config", "storekeeper.toml", "stores.d"])
        .output()?;
    let shown = blocks(&section, "text");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        shown[0],
        "the README shows this output"
    );
    Ok(())
}

#[test]
fn the_readme_guard_rail_table_is_the_guard_rail_list() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    let table = readme
        .split("<!-- guard-rails:start -->")
        .nth(1)
        .and_then(|t| t.split("<!-- guard-rails:end -->").next())
        .expect("guard-rails markers");
    let mut documented: Vec<&str> = table
        .lines()
        .flat_map(|l| l.split('|').nth(2).unwrap_or("").split('`').skip(1).step_by(2))
        .collect();
    documented.sort_unstable();
    let mut rails: Vec<&str> = storekeeper::spec::policy::GUARD_RAILS
        .iter()
        .map(|r| r.pattern)
        .collect();
    rails.sort_unstable();
    assert_eq!(documented, rails);
    let never: Vec<&str> = storekeeper::spec::policy::GUARD_RAILS
        .iter()
        .filter(|r| r.never)
        .map(|r| r.pattern)
        .collect();
    let never_row = table
        .lines()
        .find(|l| l.starts_with("| never"))
        .unwrap_or_default();
    assert!(
        never.iter().all(|n| never_row.contains(&format!("`{n}`"))),
        "{never_row}"
    );
}
