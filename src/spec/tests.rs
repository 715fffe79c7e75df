use std::path::Path;

use proptest::prelude::*;

use super::*;

fn defaults() -> SpecDefaults {
    SpecDefaults {
        base_domain: "shops.example.com".into(),
        policy: Default::default(),
    }
}

fn parse(name: &str, src: &str) -> Result<StoreSpec, SpecError> {
    parse_bytes(
        Path::new(&format!("stores.d/{name}.toml")),
        src.as_bytes(),
        &defaults(),
    )
}

fn messages(e: &SpecError) -> Vec<String> {
    e.diagnostics
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect()
}

const FULL: &str = r#"
engine = "woocommerce"
plan = "medium"
host = "chai.example.in"
protect = true
suspend = false

[admin]
email = "owner@chai.example.in"
user = "owner"

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
taxes = [{ name = "GST", rate = 18 }, { name = "Cess", rate = 0.5 }]

[labels]
team = "south"
"example.com/tier" = "gold"

[values.wordpress]
replicas = 2
"#;

#[test]
fn full_store_file_is_read_field_by_field() {
    let s = parse("chai-corner", FULL).expect("valid");
    assert_eq!(s.name.as_str(), "chai-corner");
    assert_eq!(s.engine, Engine::Woocommerce);
    assert_eq!(s.plan, Plan::Medium);
    assert_eq!(s.host, "chai.example.in");
    assert!(s.protect && !s.suspend);
    assert_eq!(
        (s.admin_user.as_str(), s.admin_email.as_str()),
        ("owner", "owner@chai.example.in")
    );
    assert_eq!(s.shop.currency, "INR");
    assert_eq!(s.shop.state, "KA");
    assert_eq!(
        s.shop.taxes,
        vec![
            TaxRate {
                name: "GST".into(),
                rate: 18.0
            },
            TaxRate {
                name: "Cess".into(),
                rate: 0.5
            }
        ]
    );
    assert!(s.shop.cash_on_delivery && s.shop.sample_products);
    assert_eq!(s.labels.get("example.com/tier").map(String::as_str), Some("gold"));
    assert_eq!(s.values["wordpress"]["replicas"], serde_json::json!(2));
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let s = parse("corner-shop", "engine = \"woocommerce\"\n").expect("valid");
    assert_eq!(s.host, "corner-shop.shops.example.com");
    assert_eq!(s.plan, Plan::Small);
    assert_eq!(s.admin_user, "admin");
    assert_eq!(s.admin_email, "admin@corner-shop.shops.example.com");
    assert_eq!(s.shop.title, "Corner Shop");
    assert_eq!((s.shop.currency.as_str(), s.shop.country.as_str()), ("USD", "US"));
    assert!(s.shop.cash_on_delivery && !s.shop.sample_products && !s.protect && !s.suspend);
    let m = parse("m", "engine = \"medusa\"\n").expect("valid");
    assert!(!m.shop.cash_on_delivery, "COD is a WooCommerce feature");
}

#[test]
fn every_error_of_a_file_is_reported_with_its_position() {
    let src =
        "engine = \"wordpress\"\nplan = 3\nhots = \"x\"\n[shop]\ncurrency = \"inr\"\ncountry = \"XX\"\n";
    let e = parse("shop", src).expect_err("invalid");
    let m = messages(&e);
    assert_eq!(m.len(), 5, "{m:#?}");
    assert!(
        m[0].starts_with("1:10 `engine` must be one of woocommerce, medusa"),
        "{m:#?}"
    );
    assert!(
        m[1].starts_with("2:8 `plan` must be a string, found integer"),
        "{m:#?}"
    );
    assert!(m[2].starts_with("3:1 unknown field `hots`"), "{m:#?}");
    assert!(m[3].starts_with("5:12 `inr` is not an ISO 4217"), "{m:#?}");
    assert!(m[4].starts_with("6:11 `XX` is not an ISO 3166-1"), "{m:#?}");
    assert_eq!(e.diagnostics[2].hint.as_deref(), Some("did you mean `host`?"));
    assert_eq!(
        e.diagnostics[3].hint.as_deref(),
        Some("codes are upper case: \"INR\"")
    );
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("use one of: \"woocommerce\", \"medusa\"")
    );
}

#[test]
fn names_must_be_short_dns_labels() {
    assert!(StoreName::new("a").is_ok());
    assert!(StoreName::new(&"a".repeat(40)).is_ok());
    for bad in ["", "A", "-a", "a-", "a_b", "a.b", &"a".repeat(41)] {
        assert!(StoreName::new(bad).is_err(), "{bad:?}");
    }
    let e = parse("Bad_Name", "engine = \"woocommerce\"\n").expect_err("bad name");
    assert!(e.diagnostics[0].message.contains("lowercase DNS label"));
}

#[test]
fn nested_tables_report_dotted_fields() {
    let src = "engine = \"woocommerce\"\n[shop]\ncash_on_delivry = true\ntaxes = [{ name = \"GST\" }]\n[admin]\nemail = \"nope\"\n";
    let e = parse("s", src).expect_err("invalid");
    let fields: Vec<&str> = e.diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        ["shop.cash_on_delivry", "shop.taxes[0].rate", "admin.email"],
        "{:#?}",
        e.diagnostics
    );
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("did you mean `cash_on_delivery`?")
    );
}

#[test]
fn reserved_and_malformed_labels_are_rejected() {
    let src = "engine = \"woocommerce\"\n[labels]\n\"storekeeper.dev/store\" = \"x\"\n\"bad key!\" = \"v\"\nok = \"not ok!\"\n";
    let e = parse("s", src).expect_err("invalid");
    assert_eq!(e.diagnostics.len(), 3, "{:#?}", e.diagnostics);
    assert!(e.diagnostics[0].message.contains("reserved"));
}

#[test]
fn cash_on_delivery_on_medusa_is_an_error_and_tax_rate_is_bounded() {
    let e = parse("m", "engine = \"medusa\"\n[shop]\ncash_on_delivery = true\n").expect_err("invalid");
    assert!(e.diagnostics[0].message.contains("WooCommerce setting"));
    let e = parse(
        "w",
        "engine = \"woocommerce\"\n[[shop.taxes]]\nname = \"VAT\"\nrate = 180\n",
    )
    .expect_err("invalid");
    assert!(e.diagnostics[0].message.contains("not a percentage"));
}

#[test]
fn empty_syntax_error_and_non_utf8() {
    let e = parse("s", " \n\t\n").expect_err("empty");
    assert_eq!(e.diagnostics[0].message, "store file is empty");
    let e = parse("s", "engine = \"woocommerce\"\nplan = \n").expect_err("syntax");
    assert!(
        e.diagnostics[0].message.starts_with("TOML syntax error"),
        "{:?}",
        e.diagnostics
    );
    assert_eq!(e.diagnostics[0].line, 2);
    let e = parse_bytes(Path::new("s.toml"), b"engine = \"wo\xffo\"\n", &defaults()).expect_err("utf8");
    assert_eq!(e.diagnostics[0].message, "file is not valid UTF-8");
    assert_eq!((e.diagnostics[0].line, e.diagnostics[0].column), (1, 13));
}

#[test]
fn deep_values_are_refused_not_overflowed() {
    let mut src = String::from("engine = \"woocommerce\"\nvalues = ");
    for _ in 0..40 {
        src.push_str("{ a = ");
    }
    src.push('1');
    for _ in 0..40 {
        src.push_str(" }");
    }
    src.push('\n');
    match parse("s", &src) {
        Err(e) => assert!(
            e.diagnostics
                .iter()
                .any(|d| d.message.contains("deeper") || d.message.contains("syntax"))
        ),
        Ok(_) => panic!("40 levels of nesting must be refused"),
    }
}

#[test]
fn comment_only_file_is_missing_engine() {
    let e = parse("s", "# nothing here\n").expect_err("no engine");
    assert_eq!(e.diagnostics[0].message, "missing required field `engine`");
}

#[test]
fn oversized_file_is_rejected_before_reading() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.toml");
    std::fs::write(&path, vec![b'#'; MAX_FILE_BYTES as usize + 1])?;
    let e = load_file(&path, &defaults()).expect_err("too big");
    assert!(e.diagnostics[0].message.contains("larger than"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes never panic the parser.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_bytes(Path::new("s.toml"), &bytes, &defaults());
    }

    /// Random (mostly valid) TOML documents with our keys never panic the reader.
    #[test]
    fn random_documents_never_panic(
        keys in proptest::collection::vec(prop_oneof![
            Just("engine"), Just("plan"), Just("host"), Just("shop.currency"), Just("shop.taxes"),
            Just("labels.x"), Just("values.a.b"), Just("admin.email"), Just("protect"), Just("zz"),
        ], 0..8),
        vals in proptest::collection::vec(prop_oneof![
            Just("\"woocommerce\"".to_string()), Just("\"medusa\"".to_string()), Just("1".to_string()),
            Just("-0.5".to_string()), Just("true".to_string()), Just("[1, \"a\"]".to_string()),
            Just("{ name = \"GST\", rate = 18 }".to_string()), Just("[{ rate = 1e400 }]".to_string()),
            "\"[^\"\\\\]{0,12}\"", Just("1979-05-27T07:32:00Z".to_string()),
        ], 8),
    ) {
        let doc: String = keys.iter().zip(vals.iter()).map(|(k, v)| format!("{k} = {v}\n")).collect();
        let _ = parse("s", &doc);
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's policy, applied while reading

fn with_policy(policy: policy::Policy, name: &str, src: &str) -> Result<StoreSpec, SpecError> {
    let d = SpecDefaults {
        policy: std::sync::Arc::new(policy),
        ..defaults()
    };
    parse_bytes(Path::new(&format!("stores.d/{name}.toml")), src.as_bytes(), &d)
}

fn owner(s: &str) -> Owner {
    Owner::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn allowing(patterns: &[&str]) -> policy::Policy {
    policy::Policy {
        values_allowed: patterns
            .iter()
            .map(|p| policy::PathPattern::parse(p).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
        ..policy::Policy::default()
    }
}

#[test]
fn owner_is_a_bounded_label_and_optional_by_default() {
    let s = parse("a", "engine = \"woocommerce\"\nowner = \"acme\"\n").expect("valid");
    assert_eq!(s.owner, Some(owner("acme")));
    assert_eq!(
        parse("a", "engine = \"woocommerce\"\n").expect("valid").owner,
        None
    );
    for bad in ["Acme", "acme corp", "-x", &"a".repeat(64)] {
        let e = parse("a", &format!("engine = \"woocommerce\"\nowner = \"{bad}\"\n")).expect_err(bad);
        assert_eq!(messages(&e).len(), 1, "{bad}: {:#?}", e.diagnostics);
        assert!(messages(&e)[0].starts_with("2:9 "), "{bad}: {:#?}", messages(&e));
        assert_eq!(e.diagnostics[0].field, "owner");
    }
    let e = parse("a", "engine = \"woocommerce\"\nownr = \"acme\"\n").expect_err("typo");
    assert_eq!(e.diagnostics[0].hint.as_deref(), Some("did you mean `owner`?"));
}

#[test]
fn owner_is_required_when_stores_are_counted_per_owner() {
    let policy = policy::Policy {
        max_stores_per_owner: std::num::NonZeroU32::new(3),
        ..policy::Policy::default()
    };
    let e = with_policy(policy.clone(), "a", "engine = \"woocommerce\"\n").expect_err("no owner");
    assert_eq!(messages(&e), ["1:1 missing required field `owner`"]);
    assert!(
        e.diagnostics[0]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("max_stores_per_owner"))
    );
    assert!(with_policy(policy, "a", "engine = \"woocommerce\"\nowner = \"acme\"\n").is_ok());
}

#[test]
fn plans_are_checked_per_owner_with_a_default_for_the_rest() {
    let policy = policy::Policy {
        plans_allowed: vec![Plan::Small],
        plans_allowed_per_owner: [(owner("acme"), vec![Plan::Small, Plan::Medium])].into(),
        ..policy::Policy::default()
    };
    let file = |owner: &str, plan: &str| format!("engine = \"woocommerce\"\n{owner}plan = \"{plan}\"\n");
    assert!(with_policy(policy.clone(), "a", &file("owner = \"acme\"\n", "medium")).is_ok());
    let e = with_policy(policy.clone(), "a", &file("owner = \"acme\"\n", "large")).expect_err("large");
    assert_eq!(messages(&e), ["3:8 plan `large` is not allowed for owner `acme`"]);
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("allowed for owner `acme`: \"small\", \"medium\" ([policy] plans_allowed_per_owner)")
    );
    let e = with_policy(policy.clone(), "a", &file("owner = \"bob\"\n", "medium")).expect_err("bob");
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("allowed for owner `bob`: \"small\" ([policy] plans_allowed)")
    );
    let e = with_policy(policy, "a", &file("", "medium")).expect_err("nobody");
    assert_eq!(
        messages(&e),
        ["2:8 plan `medium` is not allowed for stores without an owner"]
    );
}

#[test]
fn hosts_must_be_under_a_suffix_unless_the_owner_may_use_custom_hosts() {
    let policy = policy::Policy {
        host_suffixes: vec!["shops.example.com".into()],
        custom_hosts: policy::CustomHosts::Owners([owner("acme")].into()),
        ..policy::Policy::default()
    };
    let file = |owner: &str, host: &str| {
        format!("engine = \"woocommerce\"\nowner = \"{owner}\"\nhost = \"{host}\"\n")
    };
    assert!(
        with_policy(policy.clone(), "a", "engine = \"woocommerce\"\n").is_ok(),
        "the default host"
    );
    assert!(with_policy(policy.clone(), "a", &file("bob", "a.shops.example.com")).is_ok());
    assert!(
        with_policy(policy.clone(), "a", &file("acme", "www.acme.in")).is_ok(),
        "acme may"
    );
    let e = with_policy(policy, "a", &file("bob", "www.bob.in")).expect_err("bob may not");
    assert_eq!(
        messages(&e),
        ["3:8 host `www.bob.in` is not under an allowed host suffix"]
    );
    let hint = e.diagnostics[0].hint.clone().unwrap_or_default();
    assert!(
        hint.contains("`.shops.example.com`") && hint.contains("owner `bob`"),
        "{hint}"
    );
}

#[test]
fn every_values_key_outside_the_policy_is_reported_at_its_own_position() {
    let src = "engine = \"woocommerce\"\n\
               [values.wordpress.resources.limits]\nmemory = \"1Gi\"\n\
               [values.wordpress]\nextraEnv = [{ name = \"A\", value = \"b\" }]\nport = 9000\n\
               [values]\nnetworkPolicy = { enabled = false }\nstore.host = \"x.example.com\"\n";
    let e = with_policy(
        allowing(&["wordpress.resources.*", "wordpress.extraEnv"]),
        "a",
        src,
    )
    .expect_err("invalid");
    assert_eq!(
        messages(&e),
        [
            "6:1 `values.wordpress.port` is not in the policy's allowed values",
            "8:19 `values.networkPolicy.enabled` is a guard-rail key (the network policies) that the policy does not allow",
            "9:7 `values.store.host` is set by storekeeper and cannot be overridden",
        ]
    );
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("allowed: \"wordpress.resources.*\", \"wordpress.extraEnv\" ([policy] values_allowed)")
    );
    assert_eq!(e.diagnostics[1].field, "values.networkPolicy.enabled");
    let hint = e.diagnostics[1].hint.clone().unwrap_or_default();
    assert!(hint.starts_with("guard-rail keys are allowed only when named; the operator can allow it by naming it in [policy] values_allowed, e.g. \"networkPolicy.enabled\""), "{hint}");
}

#[test]
fn the_default_policy_blocks_guard_rails_and_keeps_the_escape_hatch() {
    let ok = "engine = \"medusa\"\n[values]\nneverReady = true\nimage = { repository = \"r\", tag = \"1\" }\n[values.server]\nextraEnv = []\n";
    assert!(parse("a", ok).is_ok(), "{:?}", parse("a", ok).err());
    let e = parse(
        "a",
        "engine = \"woocommerce\"\n[values.image.wordpress]\ntag = \"evil\"\n",
    )
    .expect_err("image");
    let hint = e.diagnostics[0].hint.clone().unwrap_or_default();
    assert!(
        hint.starts_with("`*` is a glob, and a glob never reaches guard-rail keys"),
        "{hint}"
    );
    assert!(
        hint.ends_with("allowed: \"*\", \"image.repository\", \"image.tag\" (the default policy)"),
        "{hint}"
    );
}

#[test]
fn guard_rail_keys_inside_arrays_are_found() {
    let src = "engine = \"woocommerce\"\n[values.wordpress]\nsidecars = [{ name = \"x\", securityContext = { privileged = true } }]\n";
    let e = parse("a", src).expect_err("privileged sidecar");
    assert!(
        messages(&e)[0]
            .starts_with("3:1 `values.wordpress.sidecars` is a guard-rail key (a security context)"),
        "{:#?}",
        messages(&e)
    );
    assert!(
        with_policy(allowing(&["wordpress.sidecars"]), "a", src).is_ok(),
        "named explicitly"
    );
}

#[test]
fn backup_table_and_restore_from_are_read_strictly() {
    let s = parse(
        "clone",
        "engine = \"woocommerce\"\nrestore_from = { store = \"chai-corner\", snapshot = \"3f2a9c1b\" }\n\
         [backup]\nschedule = \"0 2 * * *\"\nkeep_daily = 14\nfinal = false\n",
    )
    .expect("valid");
    assert_eq!(s.backup.schedule.as_deref(), Some("0 2 * * *"));
    assert_eq!((s.backup.keep_daily, s.backup.keep_weekly), (Some(14), None));
    assert!(!s.backup.final_backup && s.backup.enabled.is_none());
    let r = s.restore_from.expect("restore_from");
    assert_eq!(
        (r.store.as_str(), r.snapshot.as_str()),
        ("chai-corner", "3f2a9c1b")
    );
    let latest = parse("c", "engine = \"medusa\"\nrestore_from = { store = \"c\" }\n").expect("valid");
    assert_eq!(
        latest.restore_from.map(|r| r.snapshot),
        Some(backup::Snapshot::Latest)
    );
    let e = parse(
        "clone",
        "engine = \"woocommerce\"\nrestore_from = { store = \"Chai\", snapshot = \"yesterday\", at = 1 }\n\
         [backup]\nschedul = \"x\"\nschedule = \"0 0 * * 7\"\nkeep_weekly = 2.5\nfinal = \"no\"\n",
    )
    .expect_err("invalid");
    let got = messages(&e);
    for want in [
        "2:26 store name `Chai` must be a lowercase DNS label",
        "2:45 `restore_from.snapshot` must be \"latest\" or a snapshot id",
        "2:58 unknown field `at`",
        "4:1 unknown field `schedul`",
        "5:12 `backup.schedule` \"0 0 * * 7\"",
        "6:15 `backup.keep_weekly` must be a whole number",
        "7:9 `backup.final` must be true or false",
    ] {
        assert!(got.iter().any(|m| m.starts_with(want)), "{want}\n{got:#?}");
    }
    let typo = e
        .diagnostics
        .iter()
        .find(|d| d.field == "backup.schedul")
        .expect("typo");
    assert_eq!(typo.hint.as_deref(), Some("did you mean `schedule`?"));
    let e = parse(
        "c",
        "engine = \"woocommerce\"\nrestore_from = { snapshot = \"latest\" }\n",
    )
    .expect_err("no store");
    assert!(
        messages(&e)[0].contains("`restore_from` is missing `store`"),
        "{:?}",
        messages(&e)
    );
}

#[test]
fn backup_values_through_raw_values_are_refused() {
    let e = parse(
        "a",
        "engine = \"woocommerce\"\n[values.backup]\nrepository = \"/elsewhere\"\n",
    )
    .expect_err("reserved");
    assert!(
        messages(&e)[0].contains("`values.backup.repository` is set by storekeeper"),
        "{:?}",
        messages(&e)
    );
}
