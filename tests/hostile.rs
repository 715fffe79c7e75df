//! Hostile input (issue 9): property tests over the store-file parser
//! (`storekeeper::spec::parse_bytes`) and the daemon-config parser
//! (`storekeeper::config::Settings::parse`); injection attempts, path tricks and oversized input
//! through the real `storekeeper validate`; proof that accepted-but-hostile text reaches helm
//! only inside the values file; and the webhook checks.
//!
//! Case counts: the property tests run 105 000 cases in total by default (see `DEFAULT_CASES`).
//! `STOREKEEPER_FUZZ_CASES=<n>` runs `n` cases in *each* of the six property tests instead,
//! e.g. `STOREKEEPER_FUZZ_CASES=2000000 cargo test --release --test hostile` for a long run
//! (see docs/faults.md).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use storekeeper::config::Settings;
use storekeeper::source::webhook::{MAX_BODY_BYTES, RateLimiter, ReplayGuard, WebhookError, verify};
use storekeeper::spec::{SpecDefaults, StoreSpec, parse_bytes};
use storekeeper::values::{HashInputs, spec_hash, values_for};
use support::{Env, signal, wait_for};

// ---------------------------------------------------------------------------------------------
// Case counts

/// Default cases per property test: 105 000 in all.
const DEFAULT_CASES: [(&str, u32); 6] = [
    ("store_random_bytes", 30_000),
    ("store_mutated_files", 15_000),
    ("store_hostile_documents", 25_000),
    ("store_one_hostile_field", 5_000),
    ("config_random_bytes", 10_000),
    ("config_hostile_documents", 20_000),
];

fn cases(test: &str) -> u32 {
    if let Some(n) = std::env::var("STOREKEEPER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    DEFAULT_CASES
        .iter()
        .find(|(t, _)| *t == test)
        .map_or(1000, |(_, n)| *n)
}

fn runner(test: &str) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(test),
        failure_persistence: None,
        // Shrinking a parser failure is quick; keep it bounded anyway.
        max_shrink_iters: 2000,
        ..Config::default()
    })
}

fn defaults() -> SpecDefaults {
    SpecDefaults {
        base_domain: "example.com".into(),
        policy: Default::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// What an accepted store spec must look like, whatever the input

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn label_ok(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !s.starts_with(['-', '_', '.'])
        && !s.ends_with(['-', '_', '.'])
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Invariants of every accepted spec: nothing that reaches a command line (the store name, in
/// the release name and namespace) can look like a flag, the host is a DNS name, free text is
/// printable, labels are Kubernetes labels, values are bounded in depth — and building the helm
/// values and the spec hash works and is deterministic.
fn check_accepted(spec: &StoreSpec) -> Result<(), TestCaseError> {
    let name = spec.name.as_str();
    prop_assert!(dns_label(name) && name.len() <= 40, "name {name:?}");
    prop_assert!(
        spec.host.len() <= 253 && spec.host.contains('.') && spec.host.split('.').all(dns_label),
        "host {:?}",
        spec.host
    );
    prop_assert!(
        !spec.admin_user.is_empty()
            && spec.admin_user.len() <= 60
            && spec
                .admin_user
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')),
        "admin user {:?}",
        spec.admin_user
    );
    prop_assert!(
        !spec
            .admin_email
            .contains(['$', '`', '"', '\'', '\\', '<', '>', ' ', '\n']),
        "admin email {:?}",
        spec.admin_email
    );
    let shop = &spec.shop;
    prop_assert!(
        printable(&shop.title) && shop.title.chars().count() <= 100 && !shop.title.trim().is_empty(),
        "title {:?}",
        shop.title
    );
    for s in [&shop.address, &shop.city, &shop.postcode] {
        prop_assert!(printable(s) && s.chars().count() <= 200, "{s:?}");
    }
    prop_assert!(shop.currency.len() == 3 && shop.currency.bytes().all(|c| c.is_ascii_uppercase()));
    prop_assert!(shop.country.len() == 2 && shop.country.bytes().all(|c| c.is_ascii_uppercase()));
    for t in &shop.taxes {
        prop_assert!(printable(&t.name) && (0.0..=100.0).contains(&t.rate), "{t:?}");
    }
    for (k, v) in &spec.labels {
        let (prefix, key) = k.rsplit_once('/').unwrap_or(("", k));
        prop_assert!(
            label_ok(key) && !key.is_empty() && label_ok(v),
            "label {k:?}={v:?}"
        );
        prop_assert!(
            !k.starts_with("storekeeper.dev/")
                && !k.starts_with("kubernetes.io/")
                && !k.starts_with("k8s.io/")
                && k != "app.kubernetes.io/managed-by",
            "reserved label {k:?} (prefix {prefix:?})"
        );
    }
    let raw = Value::Object(spec.values.clone());
    prop_assert!(depth(&raw) <= 32, "values depth {}", depth(&raw));
    let vals = values_for(spec);
    prop_assert!(serde_json::to_string(&vals).is_ok());
    let inputs = HashInputs::default();
    prop_assert_eq!(spec_hash(spec, &vals, &inputs), spec_hash(spec, &vals, &inputs));
    Ok(())
}

/// Parses; never panics (a panic fails the property); checks whichever outcome.
fn parse_and_check(file: &str, bytes: &[u8]) -> Result<Option<Vec<String>>, TestCaseError> {
    let path = Path::new(file);
    match parse_bytes(path, bytes, &defaults()) {
        Ok(spec) => {
            check_accepted(&spec)?;
            Ok(None)
        }
        Err(e) => {
            prop_assert_eq!(&e.file, file);
            prop_assert!(!e.diagnostics.is_empty(), "an error without diagnostics");
            for d in &e.diagnostics {
                prop_assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
            }
            Ok(Some(e.diagnostics.iter().map(|d| d.field.clone()).collect()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Strings that try to become flags, templates, shell or a second line, plus plain oddities.
const HOSTILE: &[&str] = &[
    "--set x=y",
    "--set=image.repository=evil",
    "-f /etc/passwd",
    "--post-renderer=/bin/sh",
    "--kubeconfig=/root/.kube/config",
    "a\n--set b=c",
    "x\r\n-f /etc/shadow",
    "{{ .Release.Name }}",
    "{{ lookup \"v1\" \"Secret\" \"kube-system\" \"\" }}",
    "{{- /* */ -}}",
    "$(reboot)",
    "`id`",
    "; rm -rf /",
    "|| true",
    "${HOME}",
    "../../etc/passwd",
    "\u{0}",
    "\u{7f}",
    "\u{202e}gpj.exe",
    "\t",
    " ",
    "",
    "shop.example.com",
    "shop.example.com --set a=b",
    "-shop.example.com",
    "admin",
    "owner@example.com",
    "owner@example.com\n--set x=y",
    "$(id)@example.com",
    "`id`@example.com",
    "INR",
    "IN",
    "KA",
    "south",
    "café ☕",
    "Chai Corner",
    "storekeeper.dev/store",
    "app.kubernetes.io/managed-by",
    "kubernetes.io/x",
];

/// A TOML basic string holding `s` exactly (escapes for quotes, backslashes, controls).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
        3 => proptest::collection::vec(proptest::sample::select(ODD_CHARS), 0..24)
            .prop_map(|v| v.into_iter().collect()),
        1 => (proptest::sample::select(HOSTILE), 1usize..20).prop_map(|(s, n)| s.repeat(n)),
        1 => (0usize..300).prop_map(|n| "x".repeat(n)),
    ]
}

/// Characters that matter to TOML, YAML, Go templates, shells, helm flags and terminals.
const ODD_CHARS: &[char] = &[
    'a', 'Z', '0', '9', '-', '_', '.', '/', '@', '=', ' ', '\t', '\n', '\r', '\0', '\u{7f}', '\u{1b}', '{',
    '}', '[', ']', '"', '\'', '`', '$', '(', ')', ';', '|', '&', '#', ':', ',', '*', '!', '%', '\\', 'é',
    '☕', '\u{202e}', '\u{feff}', '\u{fffd}',
];

/// A cheap generator driven by a proptest-made choice sequence (Hypothesis style): proptest's
/// recursive strategies cost over a millisecond per document in a debug build, a `Vec<u32>` a
/// few microseconds, and shrinking the numbers towards 0 still shrinks towards the first (plain)
/// options.
struct Choices<'a> {
    seq: &'a [u32],
    at: usize,
}

impl Choices<'_> {
    fn next(&mut self, n: usize) -> usize {
        let v = self.seq.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v as usize % n.max(1)
    }

    fn string(&mut self) -> String {
        match self.next(16) {
            0..=10 => HOSTILE[self.next(HOSTILE.len())].to_string(),
            11..=13 => {
                let n = self.next(24);
                (0..n).map(|_| ODD_CHARS[self.next(ODD_CHARS.len())]).collect()
            }
            14 => HOSTILE[self.next(HOSTILE.len())].repeat(1 + self.next(20)),
            _ => "x".repeat(self.next(300)),
        }
    }

    fn key(&mut self) -> String {
        const KEYS: &[&str] = &[
            "engine",
            "host",
            "plan",
            "protect",
            "suspend",
            "admin",
            "shop",
            "labels",
            "values",
            "email",
            "user",
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
            "name",
            "rate",
            "plna",
            "team",
            "wordpress",
            "resources",
            "limits",
            "memory",
        ];
        if self.next(10) < 8 {
            KEYS[self.next(KEYS.len())].to_string()
        } else {
            toml_str(&self.string())
        }
    }

    fn value(&mut self, depth: usize) -> String {
        const SCALARS: &[&str] = &[
            "nan",
            "inf",
            "-inf",
            "1e309",
            "18",
            "-1",
            "100.5",
            "0x7f",
            "true",
            "false",
            "99999999999999999999999",
            "-9223372036854775808",
            "1979-05-27T07:32:00Z",
            "07:32:00",
        ];
        let pick = if depth >= 3 { self.next(12) } else { self.next(14) };
        match pick {
            0..=7 => toml_str(&self.string()),
            8 => {
                let s = self.string();
                if s.contains(['\'', '\n', '\r']) || !printable(&s) {
                    toml_str(&s)
                } else {
                    format!("'{s}'")
                }
            }
            9 => (self.seq.get(self.at).copied().unwrap_or(0) as i32).to_string(),
            10 | 11 => SCALARS[self.next(SCALARS.len())].to_string(),
            12 => {
                let n = self.next(4);
                let items: Vec<String> = (0..n).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                let n = self.next(4);
                let items: Vec<String> = (0..n)
                    .map(|_| format!("{} = {}", self.key(), self.value(depth + 1)))
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
        }
    }

    /// A document from `sections` (header, keys): `entries` lines spread over them.
    fn document(&mut self, sections: &[(&str, &[&str])], value: impl Fn(&mut Self) -> String) -> String {
        let entries = self.next(12);
        let mut lines: Vec<Vec<String>> = vec![Vec::new(); sections.len()];
        for _ in 0..entries {
            let s = self.next(sections.len());
            let keys = sections[s].1;
            let k = if self.next(10) == 0 {
                self.key()
            } else {
                keys[self.next(keys.len())].to_string()
            };
            let v = value(self);
            lines[s].push(format!("{k} = {v}"));
        }
        let mut out = String::new();
        for (i, ls) in lines.iter().enumerate() {
            if ls.is_empty() {
                continue;
            }
            if !sections[i].0.is_empty() {
                out.push_str(sections[i].0);
                out.push('\n');
            }
            for l in ls {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

fn choices() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(any::<u32>(), 0..160)
}

/// Sections of a store file and the keys that belong in each.
const SECTIONS: &[(&str, &[&str])] = &[
    ("", &["engine", "host", "plan", "protect", "suspend"]),
    ("[admin]", &["email", "user"]),
    (
        "[shop]",
        &[
            "title",
            "currency",
            "country",
            "state",
            "address",
            "city",
            "postcode",
            "cash_on_delivery",
            "sample_products",
        ],
    ),
    ("[[shop.taxes]]", &["name", "rate"]),
    ("[labels]", &["team", "tier"]),
    ("[values]", &["wordpress", "neverReady", "image"]),
    ("[values.deep.er]", &["x", "y"]),
];

/// Random bytes, cheaply: 8 bytes per generated element; half the time mapped onto the
/// characters TOML cares about, so the reader gets past its first byte.
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    const TOML_BYTES: &[u8] = b"=[]{}\"'\n .,#-_+:azAZ09\\\ttrue";
    (any::<bool>(), proptest::collection::vec(any::<u64>(), 0..80)).prop_map(|(tomlish, words)| {
        let bytes = words.iter().flat_map(|w| w.to_le_bytes());
        if tomlish {
            bytes
                .map(|b| TOML_BYTES[usize::from(b) % TOML_BYTES.len()])
                .collect()
        } else {
            bytes.collect()
        }
    })
}

/// A complete, valid store file (the README example) for mutation.
const FULL: &str = r#"engine = "woocommerce"
plan = "small"
host = "chai-corner.localtest.me"
protect = true
suspend = false

[admin]
email = "owner@chaicorner.in"
user = "admin"

[shop]
title = "Chai Corner"
currency = "INR"
country = "IN"
state = "KA"
address = "12 MG Road"
city = "Bengaluru"
postcode = "560001"
cash_on_delivery = true
sample_products = true

[[shop.taxes]]
name = "GST"
rate = 18

[labels]
team = "south"

[values]
wordpress = { resources = { limits = { memory = "1Gi" } } }
"#;

// ---------------------------------------------------------------------------------------------
// Property tests: the store-file parser

#[test]
fn store_random_bytes_never_panic() {
    let mut r = runner("store_random_bytes");
    let name = prop_oneof![
        4 => Just("shop.toml".to_string()),
        1 => proptest::sample::select(&["-f.toml", "--set.toml", "{{x}}.toml", "a b.toml", ".toml", "x"][..])
            .prop_map(str::to_string),
        1 => (1usize..60).prop_map(|n| format!("{}.toml", "a".repeat(n))),
    ];
    r.run(&(name, random_bytes()), |(file, bytes)| {
        parse_and_check(&file, &bytes)?;
        Ok(())
    })
    .expect("property");
}

#[test]
fn store_mutated_files_never_panic() {
    assert!(parse_bytes(Path::new("chai-corner.toml"), FULL.as_bytes(), &defaults()).is_ok());
    let mut r = runner("store_mutated_files");
    let edit = (0usize..FULL.len(), 0u8..4, any::<u8>(), hostile_string());
    r.run(&proptest::collection::vec(edit, 1..6), |edits| {
        let mut bytes = FULL.as_bytes().to_vec();
        for (at, how, byte, text) in edits {
            let at = at.min(bytes.len());
            match how {
                0 => {
                    if at < bytes.len() {
                        bytes[at] = byte;
                    }
                }
                1 => bytes.insert(at, byte),
                2 => {
                    let end = (at + usize::from(byte % 16)).min(bytes.len());
                    bytes.drain(at..end);
                }
                _ => {
                    let t = text.into_bytes();
                    bytes.splice(at..at, t);
                }
            }
        }
        parse_and_check("chai-corner.toml", &bytes)?;
        Ok(())
    })
    .expect("property");
}

#[test]
fn store_hostile_documents_are_rejected_or_safe() {
    let mut r = runner("store_hostile_documents");
    r.run(&choices(), |seq| {
        let mut c = Choices { seq: &seq, at: 0 };
        let mut doc = String::new();
        if c.next(5) != 0 {
            doc.push_str("engine = \"woocommerce\"\n");
        }
        doc.push_str(&c.document(SECTIONS, |c| c.value(0)));
        parse_and_check("shop.toml", doc.as_bytes())?;
        Ok(())
    })
    .expect("property");
}

/// One field of a valid file replaced by a hostile value: either accepted (and then safe, see
/// `check_accepted`) or rejected with a diagnostic that names that field.
#[test]
fn one_hostile_field_is_named_when_rejected() {
    const FIELDS: &[(&str, &str)] = &[
        ("", "engine"),
        ("", "host"),
        ("", "plan"),
        ("[admin]", "email"),
        ("[admin]", "user"),
        ("[shop]", "title"),
        ("[shop]", "currency"),
        ("[shop]", "country"),
        ("[shop]", "state"),
        ("[shop]", "address"),
        ("[shop]", "city"),
        ("[shop]", "postcode"),
        ("[labels]", "team"),
    ];
    let mut r = runner("store_one_hostile_field");
    r.run(
        &(proptest::sample::select(FIELDS), hostile_string()),
        |((section, key), value)| {
            let mut doc = String::new();
            if key != "engine" {
                doc.push_str("engine = \"woocommerce\"\n");
            }
            if !section.is_empty() {
                doc.push_str(section);
                doc.push('\n');
            }
            doc.push_str(&format!("{key} = {}\n", toml_str(&value)));
            if let Some(fields) = parse_and_check("shop.toml", doc.as_bytes())? {
                let want = match section {
                    "" => key.to_string(),
                    s => format!("{}.{key}", s.trim_matches(['[', ']'])),
                };
                prop_assert!(
                    fields.contains(&want),
                    "{value:?} in {want}: diagnostics name {fields:?}"
                );
            }
            Ok(())
        },
    )
    .expect("property");
}

// ---------------------------------------------------------------------------------------------
// Property tests: the daemon-config parser

fn check_settings(s: &Settings) -> Result<(), TestCaseError> {
    prop_assert!(!s.helm.timeout.is_zero());
    prop_assert!(!s.reconcile.interval.is_zero() && !s.reconcile.resync_interval.is_zero());
    prop_assert!(s.helm.max_concurrent.get() >= 1);
    prop_assert!(
        s.cluster.namespace_prefix.len() <= 20
            && s.cluster
                .namespace_prefix
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
        "prefix {:?}",
        s.cluster.namespace_prefix
    );
    Ok(())
}

fn parse_config(src: &str) -> Result<(), TestCaseError> {
    match Settings::parse(Path::new("storekeeper.toml"), src) {
        Ok(s) => check_settings(&s),
        Err(e) => {
            prop_assert!(!e.diagnostics.is_empty());
            for d in &e.diagnostics {
                prop_assert!(!d.message.trim().is_empty(), "{d:?}");
            }
            Ok(())
        }
    }
}

#[test]
fn config_random_bytes_never_panic() {
    let mut r = runner("config_random_bytes");
    r.run(&random_bytes(), |bytes| {
        parse_config(&String::from_utf8_lossy(&bytes))
    })
    .expect("property");
}

const CONFIG_SECTIONS: &[(&str, &[&str])] = &[
    ("[source]", &["directory"]),
    (
        "[source.git]",
        &[
            "url",
            "branch",
            "tag",
            "commit",
            "subpath",
            "ssh_key_file",
            "known_hosts_file",
            "token_file",
            "token_env",
            "poll_interval",
            "state_dir",
            "webhook_secret_file",
        ],
    ),
    (
        "[cluster]",
        &["kubeconfig", "context", "namespace_prefix", "base_domain"],
    ),
    (
        "[helm]",
        &[
            "binary",
            "charts_dir",
            "values_files",
            "timeout",
            "max_concurrent",
        ],
    ),
    (
        "[reconcile]",
        &[
            "interval",
            "resync_interval",
            "prune",
            "max_deletions",
            "deletion_grace",
        ],
    ),
    ("[http]", &["listen"]),
];

const CONFIG_SCALARS: &[&str] = &[
    "\"30s\"",
    "\"0s\"",
    "\"250ms\"",
    "\"5m\"",
    "\"1h\"",
    "\"18446744073709551615s\"",
    "\"18446744073709551615h\"",
    "\"99999999999999999999s\"",
    "\"-1s\"",
    "\"1.5s\"",
    "\"s\"",
    "\"10\"",
    "0",
    "1",
    "18446744073709551615",
    "-1",
    "\"127.0.0.1:0\"",
    "\"[::1]:9464\"",
    "\"0.0.0.0:99999\"",
    "\"store-\"",
    "\"STORE-\"",
    "[\"values-prod.yaml\"]",
    "true",
    "\"file:///nonexistent\"",
    "\"ssh://git@example.com:22/x.git\"",
    "\"deadbeef\"",
];

#[test]
fn config_hostile_documents_never_panic() {
    let mut r = runner("config_hostile_documents");
    r.run(&choices(), |seq| {
        let mut c = Choices { seq: &seq, at: 0 };
        let doc = c.document(CONFIG_SECTIONS, |c| {
            if c.next(3) == 0 {
                CONFIG_SCALARS[c.next(CONFIG_SCALARS.len())].to_string()
            } else {
                c.value(0)
            }
        });
        parse_config(&doc)
    })
    .expect("property");
}

// ---------------------------------------------------------------------------------------------
// Targeted cases through the real binary: `storekeeper validate --output json`

fn validate(paths: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storekeeper"));
    cmd.args(["validate", "--output", "json"]).args(paths);
    run_with_timeout(cmd, Duration::from_secs(20))
}

/// Runs a command and kills it (by pid) if it has not finished within `limit`.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "`storekeeper` did not finish within {limit:?} (killed)\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Validates one file `name` with `body`; expects exit 1 and a diagnostic whose field is
/// `field` and whose message contains `message`.
fn expect_rejected(name: &str, body: &[u8], field: &str, message: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("write");
    let out = validate(&[&path]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{name}: {r:#}");
    assert_eq!(r["valid"], false);
    let diags = r["diagnostics"].as_array().expect("diagnostics");
    assert!(
        diags
            .iter()
            .any(|d| d["field"] == field && d["message"].as_str().is_some_and(|m| m.contains(message))),
        "{name}: want field {field:?} with {message:?}, got {r:#}"
    );
}

fn expect_accepted(name: &str, body: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("write");
    let out = validate(&[&path]);
    assert_eq!(out.status.code(), Some(0), "{name}: {:#}", report(&out));
}

const WOO: &str = "engine = \"woocommerce\"\n";

#[test]
fn flag_and_template_injection_in_checked_fields_is_rejected_naming_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("host", "--set x=y", "not a valid host name"),
        ("host", "-f /etc/passwd", "not a valid host name"),
        ("host", "shop.example.com\n--set a=b", "not a valid host name"),
        ("host", "{{ .Release.Name }}.example.com", "not a valid host name"),
        ("host", "$(id).example.com", "not a valid host name"),
        ("host", "`id`.example.com", "not a valid host name"),
        ("host", "-shop.example.com", "not a valid host name"),
        ("engine", "woocommerce --set x=y", "must be one of"),
        ("plan", "small\n", "must be one of"),
    ];
    for (field, value, message) in cases {
        let body = if *field == "engine" {
            format!("engine = {}\n", toml_str(value))
        } else {
            format!("{WOO}{field} = {}\n", toml_str(value))
        };
        expect_rejected("shop.toml", body.as_bytes(), field, message);
    }
    let nested: &[(&str, &str, &str, &str)] = &[
        ("admin", "email", "$(reboot)@example.com", "not an e-mail address"),
        ("admin", "email", "`id`@example.com", "not an e-mail address"),
        (
            "admin",
            "email",
            "a@example.com\n--set x=y",
            "not an e-mail address",
        ),
        (
            "admin",
            "email",
            "--set=x@example.com --set y",
            "not an e-mail address",
        ),
        ("admin", "user", "$(id)", "not a valid admin user name"),
        ("admin", "user", "admin\n--set x=y", "not a valid admin user name"),
        (
            "admin",
            "user",
            "{{ .Release.Name }}",
            "not a valid admin user name",
        ),
        ("shop", "title", "Shop\n--set x=y", "printable"),
        ("shop", "title", "Shop\r-f /etc/passwd", "printable"),
        ("shop", "city", "x\ny", "printable"),
        ("shop", "address", "\u{0}", "printable"),
        ("shop", "currency", "{{ .Values }}", "not an ISO 4217"),
        ("shop", "country", "$(id)", "not an ISO 3166-1"),
        ("shop", "state", "--set", "not an ISO 3166-2"),
        (
            "labels",
            "team",
            "{{ .Release.Name }}",
            "not a valid Kubernetes label value",
        ),
        ("labels", "team", "--set", "not a valid Kubernetes label value"),
        ("labels", "team", "a\nb", "not a valid Kubernetes label value"),
    ];
    for (table, key, value, message) in nested {
        let body = format!("{WOO}[{table}]\n{key} = {}\n", toml_str(value));
        expect_rejected("shop.toml", body.as_bytes(), &format!("{table}.{key}"), message);
    }
    // Hostile label keys and reserved ones.
    for (key, message) in [
        ("--set", "not a valid Kubernetes label key"),
        ("{{x}}", "not a valid Kubernetes label key"),
        ("$(id)", "not a valid Kubernetes label key"),
        ("storekeeper.dev/store", "is reserved"),
        ("app.kubernetes.io/managed-by", "is reserved"),
    ] {
        let body = format!("{WOO}[labels]\n{} = \"x\"\n", toml_str(key));
        expect_rejected("shop.toml", body.as_bytes(), &format!("labels.{key}"), message);
    }
    // A tax name with a newline.
    let body = format!("{WOO}[[shop.taxes]]\nname = \"GST\\n--set x=y\"\nrate = 18\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, body).expect("write");
    let out = validate(&[&path]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert!(
        r["diagnostics"][0]["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("shop.taxes") && f.ends_with("name")),
        "{r:#}"
    );
}

#[test]
fn hostile_file_names_name_no_store_and_fail_validation() {
    for name in [
        "--set.toml",
        "-f.toml",
        "{{x}}.toml",
        "$(id).toml",
        "`id`.toml",
        "a b.toml",
        "UPPER.toml",
        "x\ny.toml",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, WOO).expect("write");
        let out = validate(&[dir.path()]);
        let r = report(&out);
        assert_eq!(out.status.code(), Some(1), "{name:?}: {r:#}");
        assert_eq!(r["files"][0]["store"], Value::Null, "{name:?}: {r:#}");
        assert!(
            r["diagnostics"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("store name")),
            "{name:?}: {r:#}"
        );
    }
}

#[test]
fn legitimately_accepted_hostile_text_validates() {
    // Free text may contain template or shell syntax: it is data, never a template or argv.
    expect_accepted(
        "shop.toml",
        &format!(
            "{WOO}[admin]\nuser = \"--set\"\n[shop]\ntitle = {}\n[values]\n\"--set\" = \"x=y\"\nnote = \"{{{{ .Release.Name }}}}\"\n",
            toml_str("{{ .Release.Name }} $(id) `id` --set x=y -f /etc/passwd")
        ),
    );
}

#[test]
fn oversized_and_deep_input_is_rejected() {
    // Larger than 64 KiB: refused before it is parsed, as a whole-file problem.
    let mut big = WOO.to_string();
    big.push_str("[shop]\naddress = \"");
    big.push_str(&"x".repeat(70 * 1024));
    big.push_str("\"\n");
    expect_rejected(
        "shop.toml",
        big.as_bytes(),
        "",
        "larger than the 65536-byte limit",
    );

    // 33 levels of tables under values: refused, naming the field.
    let mut deep = format!("{WOO}[values]\nv = ");
    for _ in 0..33 {
        deep.push_str("{ a = ");
    }
    deep.push('1');
    for _ in 0..33 {
        deep.push_str(" }");
    }
    deep.push('\n');
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, &deep).expect("write");
    let r = report(&validate(&[&path]));
    let d = &r["diagnostics"][0];
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains("deeper than 32")),
        "{r:#}"
    );
    assert!(
        d["field"].as_str().is_some_and(|f| f.starts_with("values.v.a")),
        "{r:#}"
    );

    // 32 levels are fine.
    let mut ok = format!("{WOO}[values]\nv = ");
    ok.push_str(&"{ a = ".repeat(31));
    ok.push('1');
    ok.push_str(&" }".repeat(31));
    ok.push('\n');
    expect_accepted("shop.toml", &ok);

    // Thousands of levels of arrays: the TOML reader's own recursion limit, not a stack overflow.
    let absurd = format!(
        "{WOO}[values]\nv = {}1{}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    expect_rejected("shop.toml", absurd.as_bytes(), "", "recursion");

    // Very long strings in checked fields.
    expect_rejected(
        "shop.toml",
        format!("{WOO}[shop]\ntitle = \"{}\"\n", "T".repeat(10_000)).as_bytes(),
        "shop.title",
        "1–100 printable characters",
    );
    expect_rejected(
        "shop.toml",
        format!("{WOO}host = \"{}.example.com\"\n", "a".repeat(300)).as_bytes(),
        "host",
        "not a valid host name",
    );
    expect_rejected(
        "shop.toml",
        format!("{WOO}[labels]\nteam = \"{}\"\n", "a".repeat(64)).as_bytes(),
        "labels.team",
        "not a valid Kubernetes label value",
    );
    // Not UTF-8.
    expect_rejected("shop.toml", b"engine = \"woo\xff\"\n", "", "not valid UTF-8");
}

#[test]
fn symlinks_out_of_the_source_directory_are_refused() {
    let outside = tempfile::tempdir().expect("outside");
    let target = outside.path().join("secret.toml");
    std::fs::write(&target, WOO).expect("write");
    let dir = tempfile::tempdir().expect("dir");
    let stores = dir.path().join("stores.d");
    std::fs::create_dir(&stores).expect("mkdir");
    std::os::unix::fs::symlink(&target, stores.join("evil.toml")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../etc/passwd", stores.join("passwd.toml")).expect("symlink");
    std::os::unix::fs::symlink("/dev/zero", stores.join("zero.toml")).expect("symlink");
    // A symlink to a sibling inside the directory is fine.
    std::fs::write(stores.join("real.toml"), WOO).expect("write");
    std::os::unix::fs::symlink("real.toml", stores.join("alias.toml")).expect("symlink");
    let out = validate(&[&stores]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    for store in ["evil", "passwd", "zero"] {
        let f = r["files"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["store"] == store))
            .unwrap_or_else(|| panic!("{store} missing: {r:#}"));
        assert_eq!(f["valid"], false, "{store}: {r:#}");
    }
    let outside_msgs = r["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("resolves outside the source directory"))
        })
        .count();
    assert_eq!(outside_msgs, 3, "{r:#}");
    // `alias` and `real` share a host, so only their host clash is reported for them.
    let alias = r["files"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["store"] == "real"))
        .expect("real");
    assert_eq!(alias["valid"], true, "{r:#}");
}

/// A FIFO named like a store file inside the directory: opening it for reading blocks until a
/// writer appears, so a reader that opens it would hang the daemon's loop forever.
#[test]
fn a_fifo_in_the_store_directory_does_not_hang_the_reader() {
    let dir = tempfile::tempdir().expect("dir");
    let stores = dir.path().join("stores.d");
    std::fs::create_dir(&stores).expect("mkdir");
    std::fs::write(stores.join("good.toml"), WOO).expect("write");
    let fifo = stores.join("pipe.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let out = validate(&[&stores]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert!(
        r["files"]
            .as_array()
            .is_some_and(|fs| fs.iter().any(|f| f["store"] == "pipe" && f["valid"] == false)),
        "{r:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// Accepted hostile text reaches helm only inside the values file

#[test]
fn accepted_hostile_text_reaches_helm_only_as_data() {
    let env = Env::new(4);
    let title = "{{ .Release.Name }} $(id) `id` --set x=y -f /etc/passwd";
    env.write_store(
        "shop",
        &format!(
            "{WOO}[admin]\nuser = \"--set\"\n[shop]\ntitle = {}\n[values]\n\"--set\" = \"image=evil\"\nnote = {}\n",
            toml_str(title),
            toml_str("{{ .Release.Namespace }}")
        ),
    );
    let out = env.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    let cm = env
        .api
        .get("/api/v1/namespaces/store-shop/configmaps/shop-store")
        .expect("configmap");
    assert_eq!(cm["data"]["title"], title, "rendered as data, not as a template");
    let values = env.helm_json(&["get", "values", "shop", "-n", "store-shop"]);
    assert_eq!(values["--set"], "image=evil", "{values}");
    assert_eq!(values["note"], "{{ .Release.Namespace }}", "{values}");
    let calls = env.helm_calls();
    assert!(!calls.is_empty());
    for c in &calls {
        for needle in [
            "Release",
            "$(id)",
            "`id`",
            "/etc/passwd",
            "x=y",
            "image=evil",
            "--set",
        ] {
            assert!(!c.contains(needle), "helm argv carries {needle:?}: {c}");
        }
    }
    let install = calls
        .iter()
        .find(|c| c.starts_with("upgrade --install"))
        .expect("install call");
    assert!(
        install.contains("--values") || install.contains("-f "),
        "{install}"
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook

const SECRET: &[u8] = b"webhook-secret";

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn webhook_bad_signatures_are_refused() {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let good = sign(body);
    assert_eq!(
        verify(&h(&[("X-Hub-Signature-256", &good)]), body, SECRET),
        Ok(())
    );
    let tampered = br#"{"ref":"refs/heads/evil"}"#;
    for (headers, body) in [
        (h(&[("X-Hub-Signature-256", &good)]), &tampered[..]),
        (h(&[("X-Hub-Signature-256", "sha256=00")]), &body[..]),
        (h(&[("X-Hub-Signature-256", "sha256=zz")]), &body[..]),
        (h(&[("X-Hub-Signature-256", &good[7..])]), &body[..]),
        (h(&[("X-Hub-Signature-256", "sha1=abc")]), &body[..]),
        (h(&[("X-Hub-Signature-256", "")]), &body[..]),
        (h(&[("X-Gitlab-Token", "wrong")]), &body[..]),
        (h(&[("X-Gitlab-Token", "")]), &body[..]),
        // The GitHub signature decides when both are present.
        (
            h(&[
                ("X-Hub-Signature-256", "sha256=00"),
                ("X-Gitlab-Token", "webhook-secret"),
            ]),
            &body[..],
        ),
    ] {
        assert_eq!(
            verify(&headers, body, SECRET),
            Err(WebhookError::BadSignature),
            "{headers:?}"
        );
    }
    assert_eq!(verify(&[], body, SECRET), Err(WebhookError::MissingSignature));
    assert_eq!(
        verify(&h(&[("X-Hub-Signature-256", &good)]), body, b""),
        Err(WebhookError::NoSecret),
        "an empty secret accepts nothing"
    );
}

#[test]
fn webhook_oversized_bodies_are_refused_even_when_signed() {
    let big = vec![b'x'; MAX_BODY_BYTES + 1];
    let sig = sign(&big);
    assert_eq!(
        verify(&h(&[("X-Hub-Signature-256", &sig)]), &big, SECRET),
        Err(WebhookError::BodyTooLarge)
    );
    let fits = vec![b'x'; MAX_BODY_BYTES];
    let sig = sign(&fits);
    assert_eq!(
        verify(&h(&[("X-Hub-Signature-256", &sig)]), &fits, SECRET),
        Ok(())
    );
}

#[test]
fn webhook_replays_and_floods_are_refused() {
    let mut guard = ReplayGuard::new(2);
    let d = |id: &str| h(&[("X-GitHub-Delivery", id)]);
    assert_eq!(guard.check(&d("a")), Ok(()));
    assert_eq!(guard.check(&d("a")), Err(WebhookError::Replayed));
    assert_eq!(
        guard.check(&h(&[("X-Gitlab-Event-UUID", "a")])),
        Err(WebhookError::Replayed),
        "the same id under GitLab's header"
    );
    assert_eq!(
        guard.check(&d(&"x".repeat(129))),
        Err(WebhookError::BadDeliveryId)
    );
    assert_eq!(guard.check(&d("b")), Ok(()));
    assert_eq!(guard.check(&d("c")), Ok(()));
    assert_eq!(
        guard.check(&d("a")),
        Ok(()),
        "forgotten after `capacity` newer ids"
    );

    let mut limiter = RateLimiter::new(3, 60);
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(limiter.check(t0), Ok(()));
    }
    assert_eq!(limiter.check(t0), Err(WebhookError::RateLimited));
    assert_eq!(limiter.check(t0 + Duration::from_millis(1100)), Ok(()));
    assert_eq!(
        limiter.check(t0 + Duration::from_millis(1100)),
        Err(WebhookError::RateLimited)
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=t@example.com"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One raw HTTP/1.1 request; returns the status code (0 when the connection gave nothing).
fn http(addr: &str, head: &str, body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(
        format!(
            "{head}Host: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `POST /hooks/git` over real HTTP against the daemon following a Git remote with a webhook
/// secret: bad or missing signature → 401, oversized body → 413, a good delivery → 202 and its
/// replay → 409; and a connection whose request headers do not arrive within 5 s (slowloris) is
/// closed while other clients are served.
#[test]
fn webhook_over_http_and_slow_headers() {
    let env = Env::new(4);
    let tmp = tempfile::tempdir().expect("tmp");
    let bare = tmp.path().join("remote.git");
    let work = tmp.path().join("work");
    git(tmp.path(), &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    std::fs::create_dir_all(work.join("stores.d")).expect("mkdir");
    std::fs::write(work.join("stores.d/shop.toml"), WOO).expect("write");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "stores"]);
    git(&work, &["push", "-q", &bare.to_string_lossy(), "HEAD:main"]);
    let secret_file = tmp.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{}\n", String::from_utf8_lossy(SECRET))).expect("write");
    let cfg = std::fs::read_to_string(&env.config).expect("config");
    let cfg = cfg.replace(
        &format!("[source]\ndirectory = '{}'\n", env.stores.display()),
        &format!(
            "[source.git]\nurl = 'file://{}'\nstate_dir = '{}'\npoll_interval = '1h'\nwebhook_secret_file = '{}'\n",
            bare.display(),
            tmp.path().join("state").display(),
            secret_file.display()
        ),
    );
    assert!(cfg.contains("[source.git]"), "{cfg}");
    let config = tmp.path().join("storekeeper.toml");
    std::fs::write(&config, cfg).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .envs(env.helm.envs())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("daemon did not report its HTTP address");
    let result = std::panic::catch_unwind(|| {
        let hook = "POST /hooks/git HTTP/1.1\r\n";
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(body);
        let bad = format!("{hook}X-Hub-Signature-256: sha256={}\r\n", "0".repeat(64));
        assert_eq!(http(&addr, &bad, body), 401, "bad signature");
        assert_eq!(http(&addr, hook, body), 401, "missing signature");
        let forged = format!("{hook}X-Gitlab-Token: guess\r\n");
        assert_eq!(http(&addr, &forged, body), 401, "wrong GitLab token");
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        let signed_big = format!("{hook}X-Hub-Signature-256: {}\r\n", sign(&big));
        assert_eq!(http(&addr, &signed_big, &big), 413, "oversized body");
        let delivery = format!("{hook}X-Hub-Signature-256: {good}\r\nX-GitHub-Delivery: d-1\r\n");
        assert_eq!(http(&addr, &delivery, body), 202, "a good delivery");
        assert_eq!(http(&addr, &delivery, body), 409, "its replay");

        let mut slow = TcpStream::connect(&addr).expect("connect");
        slow.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        slow.write_all(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\n")
            .expect("partial headers");
        let started = Instant::now();
        assert_eq!(
            http(&addr, "GET /healthz HTTP/1.1\r\n", b""),
            200,
            "others are served"
        );
        let mut buf = Vec::new();
        let _ = slow.read_to_end(&mut buf);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "slow connection closed after {took:?}"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "nothing served on it: {text}"
        );
    });
    signal(&child, "TERM");
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

// ---------------------------------------------------------------------------------------------
// Daemon config values that parse but cannot be used

/// `Settings::parse` accepts any duration up to `u64::MAX` seconds, but the daemon computes
/// `helm.timeout * 2 + interval * 2` (and helm's limit `timeout + GRACE`) with `Duration`'s
/// panicking operators: an absurd but accepted timeout must be refused with a message naming the
/// field, not crash the daemon.
#[test]
fn absurd_durations_are_refused_not_a_panic() {
    let env = Env::new(4);
    let cfg = std::fs::read_to_string(&env.config).expect("config");
    let cfg = cfg.replace("timeout = '30s'", "timeout = '18446744073709551615s'");
    assert!(cfg.contains("18446744073709551615s"));
    let path = env.dir.path().join("absurd.toml");
    std::fs::write(&path, cfg).expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storekeeper"));
    cmd.args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .envs(env.helm.envs());
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = wait_for(Duration::from_secs(5), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        signal(&child, "TERM");
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    if exited {
        assert!(stderr.contains("helm.timeout"), "{stderr}");
    }
}
