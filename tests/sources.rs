//! The daemon's sources end to end: real filesystem events on a watched directory, real Git
//! remotes (file:// and smart HTTP) with the webhook, a remote that goes away, a force-push,
//! and SIGHUP config reloads — the real binary, the real helm 4, the test API server.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::daemon::Daemon;
use support::git::{Remote, serve_http};
use support::{Env, Opts, signal, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n";

fn count(env: &Env, prefix: &str) -> usize {
    env.helm_calls().iter().filter(|c| c.starts_with(prefix)).count()
}

fn post(addr: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    let _ = s.write_all(body);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn watched_directory_create_edit_delete_each_start_an_action() {
    // A long interval: only the file watcher can make these actions start quickly.
    let env = Env::with(
        4,
        Opts {
            interval: "60s",
            ..Opts::default()
        },
    );
    env.write_store("first", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("first", Duration::from_secs(30)));

    env.write_store("shop", SHOP);
    assert!(
        wait_for(Duration::from_secs(5), || count(&env, "upgrade --install shop")
            == 1),
        "create"
    );
    assert!(d.wait_ready("shop", Duration::from_secs(30)));
    env.write_store("shop", "engine = \"woocommerce\"\n[shop]\ntitle = \"Edited\"\n");
    assert!(
        wait_for(Duration::from_secs(5), || count(&env, "upgrade --install shop")
            == 2),
        "edit"
    );
    assert!(d.wait_ready("shop", Duration::from_secs(30)));
    env.remove_store("shop");
    assert!(
        wait_for(Duration::from_secs(5), || count(&env, "uninstall shop") == 1),
        "delete"
    );
    assert!(wait_for(Duration::from_secs(30), || env
        .namespace("store-shop")
        .is_none()));
    d.stop();
}

#[test]
fn an_atomic_save_and_a_rename_are_each_one_change() {
    let env = Env::with(
        4,
        Opts {
            interval: "60s",
            ..Opts::default()
        },
    );
    env.write_store("a", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("a", Duration::from_secs(30)));

    // An editor's save: write a temporary file, then rename it over the store file.
    let tmp = env.stores.join(".a.toml.swp");
    std::fs::write(&tmp, "engine = \"woocommerce\"\n[shop]\ntitle = \"Saved\"\n").expect("write");
    std::fs::rename(&tmp, env.stores.join("a.toml")).expect("rename");
    assert!(wait_for(Duration::from_secs(5), || count(
        &env,
        "upgrade --install a"
    ) == 2));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&env, "upgrade --install a"),
        2,
        "exactly one upgrade for one save"
    );
    assert!(d.wait_ready("a", Duration::from_secs(30)));

    // A rename: store b comes, once; store a stays, held as a possible rename (names are
    // identity: tests/deletion.rs covers the rule).
    std::fs::rename(env.stores.join("a.toml"), env.stores.join("b.toml")).expect("rename");
    assert!(wait_for(Duration::from_secs(5), || count(
        &env,
        "upgrade --install b"
    ) == 1));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (count(&env, "upgrade --install b"), count(&env, "uninstall a")),
        (1, 0)
    );
    assert!(
        d.get("/stores/a").1.contains("possible rename")
            || d.get("/stores/a").1.contains("probably a rename")
    );
    d.stop();
}

fn git_env(url: &str, poll: &str, secret_file: Option<&std::path::Path>) -> Env {
    let state = tempfile::tempdir().expect("state").keep();
    let mut source = format!(
        "[source.git]\nurl = '{url}'\nbranch = 'main'\nsubpath = 'stores.d'\npoll_interval = '{poll}'\nstate_dir = '{}'\n",
        state.display()
    );
    if let Some(f) = secret_file {
        source.push_str(&format!("webhook_secret_file = '{}'\n", f.display()));
    }
    Env::with(
        4,
        Opts {
            source: Some(source),
            ..Opts::default()
        },
    )
}

fn webhook_applies_commits(remote: &Remote, url: &str) {
    let secret_dir = tempfile::tempdir().expect("tmp");
    let secret_file = secret_dir.path().join("secret");
    std::fs::write(&secret_file, "s3cret\n").expect("write secret");
    let first = remote.commit(&[("stores.d/one.toml", Some(SHOP))]);
    let env = git_env(url, "10m", Some(&secret_file));
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("one", Duration::from_secs(30)));
    assert_eq!(
        env.annotation("store-one", "storekeeper.dev/revision").as_deref(),
        Some(first.as_str())
    );

    // A bad signature: 401, no fetch.
    let second = remote.commit(&[("stores.d/two.toml", Some(SHOP))]);
    let body = br#"{"ref":"refs/heads/main"}"#;
    let bad = [
        ("X-Hub-Signature-256", github_signature(b"wrong", body)),
        ("X-GitHub-Delivery", "d-1".into()),
    ];
    assert_eq!(post(&d.addr, "/hooks/git", &bad, body), 401);
    assert_eq!(post(&d.addr, "/hooks/git", &[], body), 401, "a missing signature");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&env, "upgrade --install two"),
        0,
        "no fetch after a bad signature"
    );
    let m = d.metrics();
    assert!(
        m.contains(r#"storekeeper_webhook_requests_total{result="bad_signature"} 1"#),
        "{m}"
    );

    // A good one: fetched and applied at once; the revision annotation is the commit SHA.
    let good = [
        ("X-Hub-Signature-256", github_signature(b"s3cret", body)),
        ("X-GitHub-Delivery", "d-2".into()),
    ];
    assert_eq!(post(&d.addr, "/hooks/git", &good, body), 202);
    assert!(d.wait_ready("two", Duration::from_secs(10)));
    assert_eq!(
        env.annotation("store-two", "storekeeper.dev/revision").as_deref(),
        Some(second.as_str())
    );
    // The same delivery again is a replay.
    assert_eq!(post(&d.addr, "/hooks/git", &good, body), 409);
    // GitLab's token header works too.
    assert_eq!(
        post(
            &d.addr,
            "/hooks/git",
            &[("X-Gitlab-Token", "s3cret".into())],
            body
        ),
        202
    );
    d.stop();
}

#[test]
fn git_file_url_with_webhook() {
    let remote = Remote::new();
    let url = remote.url();
    webhook_applies_commits(&remote, &url);
}

#[test]
fn git_smart_http_with_webhook() {
    let remote = Remote::new();
    let port = serve_http(remote.tmp.path().to_path_buf(), None);
    webhook_applies_commits(&remote, &format!("http://127.0.0.1:{port}/remote.git"));
}

#[test]
fn unreachable_remote_keeps_the_last_snapshot_and_readiness_says_stale() {
    let remote = Remote::new();
    remote.commit(&[
        ("stores.d/one.toml", Some(SHOP)),
        ("stores.d/two.toml", Some(SHOP)),
    ]);
    let env = git_env(&remote.url(), "1s", None);
    let d = Daemon::start(&env, &[]);
    assert!(wait_for(Duration::from_secs(30), || d
        .get("/stores")
        .1
        .matches("\"Ready\"")
        .count()
        == 2));
    assert_eq!(d.get("/readyz").0, 200);

    let moved = remote.tmp.path().join("gone.git");
    std::fs::rename(&remote.bare, &moved).expect("move the remote away");
    assert!(
        wait_for(Duration::from_secs(15), || d
            .get("/readyz")
            .1
            .contains("source is stale")),
        "{}",
        d.get("/readyz").1
    );
    assert!(d.get("/stores").1.contains("\"stale\": true"));
    assert!(env.namespace("store-one").is_some() && env.namespace("store-two").is_some());
    assert_eq!(
        count(&env, "uninstall"),
        0,
        "an unreachable source deletes nothing"
    );
    assert!(
        d.metrics()
            .contains(r#"storekeeper_source_errors_total{kind="git_fetch"}"#),
        "{}",
        d.metrics()
    );

    std::fs::rename(&moved, &remote.bare).expect("bring it back");
    assert!(wait_for(Duration::from_secs(15), || d.get("/readyz").0 == 200));
    d.stop();
}

#[test]
fn force_push_to_an_older_commit_deletes_only_what_the_new_snapshot_says() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/one.toml", Some(SHOP))]);
    remote.commit(&[("stores.d/two.toml", Some(SHOP))]);
    let env = git_env(&remote.url(), "1s", None);
    let d = Daemon::start(&env, &[]);
    assert!(wait_for(Duration::from_secs(30), || d
        .get("/stores")
        .1
        .matches("\"Ready\"")
        .count()
        == 2));
    support::git::git(
        &remote.work,
        &["push", "-q", "--force", "origin", &format!("{c1}:main")],
    );
    assert!(wait_for(Duration::from_secs(20), || env
        .namespace("store-two")
        .is_none()));
    assert!(env.namespace("store-one").is_some());
    assert_eq!(count(&env, "uninstall"), 1);
    assert!(
        d.get("/stores").1.contains(&c1),
        "the snapshot revision follows the force-push"
    );
    d.stop();
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let env = Env::with(
        4,
        Opts {
            interval: "500ms",
            ..Opts::default()
        },
    );
    env.write_store("shop", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("shop", Duration::from_secs(30)));
    let good = std::fs::read_to_string(&env.config).expect("config");

    std::fs::write(&env.config, format!("{good}\n[bogus]\nkey = 1\n")).expect("write");
    signal(&d.child, "HUP");
    assert!(wait_for(Duration::from_secs(10), || d
        .logs()
        .contains("invalid new config; keeping the running one")));
    assert_eq!(d.get("/readyz").0, 200, "still running on the old config");

    // A valid change: the new base domain changes the default host, so the store is upgraded.
    std::fs::write(
        &env.config,
        good.replace("base_domain = 'test.local'", "base_domain = 'example.net'"),
    )
    .expect("write");
    signal(&d.child, "HUP");
    assert!(wait_for(Duration::from_secs(10), || d
        .logs()
        .contains("config reloaded")));
    assert!(wait_for(Duration::from_secs(30), || {
        env.api
            .get("/api/v1/namespaces/store-shop/configmaps/shop-store")
            .is_some_and(|cm| cm["data"]["host"] == "shop.example.net")
    }));
    d.stop();
}
