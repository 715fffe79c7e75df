//! GitSource against real repositories: a bare remote on disk, a work clone driven by the `git`
//! CLI, and the remote served over `file://` and over smart HTTP (`git http-backend` behind a
//! tiny CGI server on 127.0.0.1).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use support::git::{Remote, git, git_settings_at, serve_http};

use storekeeper::config::GitRef;
use storekeeper::source::Snapshot;
use storekeeper::source::git::GitSource;
use storekeeper::spec::SpecDefaults;

const GOOD: &str = "engine = \"woocommerce\"\n";
const OTHER: &str = "engine = \"medusa\"\n";

fn defaults() -> SpecDefaults {
    SpecDefaults {
        base_domain: "example.com".into(),
        policy: Default::default(),
    }
}

fn names(snap: &Snapshot) -> Vec<String> {
    snap.stores.keys().map(|n| n.as_str().to_string()).collect()
}

fn sync_ok(src: &mut GitSource) -> Arc<Snapshot> {
    match src.sync(&defaults()) {
        Ok(s) => s,
        Err(e) => panic!("sync failed: {e} (kind {}): {e:?}", e.kind()),
    }
}

fn sync_err(src: &mut GitSource) -> storekeeper::source::SourceError {
    match src.sync(&defaults()) {
        Ok(s) => panic!(
            "expected an error, got revision {} with {:?}",
            s.revision,
            names(&s)
        ),
        Err(e) => e,
    }
}

#[test]
fn file_url_first_sync_clones_then_follows_new_commits() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD)), ("README.md", Some("x"))]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));

    let snap = sync_ok(&mut src);
    assert_eq!(snap.revision, c1);
    assert_eq!(names(&snap), ["shop"]);
    assert!(snap.stores.values().all(Result::is_ok));

    let c2 = remote.commit(&[("stores.d/blog.toml", Some(OTHER))]);
    let snap = sync_ok(&mut src);
    assert_eq!(snap.revision, c2);
    assert_eq!(names(&snap), ["blog", "shop"]);

    // Nothing new: the very same snapshot again.
    assert!(Arc::ptr_eq(&sync_ok(&mut src), &snap));

    // Files are named by their path in the repository, and nothing is checked out: the state
    // directory holds only the bare repository.
    assert_eq!(
        snap.files
            .values()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
        ["stores.d/blog.toml", "stores.d/shop.toml"]
    );
    let state_entries: Vec<String> = std::fs::read_dir(state.path())
        .expect("state")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(state_entries, ["repo"]);
}

#[test]
fn a_plain_local_path_works_too() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let url = remote.bare.to_string_lossy().into_owned();
    let mut src = GitSource::new(git_settings_at(url, GitRef::Branch("main".into()), state.path()));
    assert_eq!(sync_ok(&mut src).revision, c1);
}

#[test]
fn a_force_push_to_an_older_commit_is_followed() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let c2 = remote.commit(&[("stores.d/blog.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    assert_eq!(sync_ok(&mut src).revision, c2);

    git(
        &remote.work,
        &["push", "-q", "--force", "origin", &format!("{c1}:main")],
    );
    let snap = sync_ok(&mut src);
    assert_eq!(snap.revision, c1);
    assert_eq!(names(&snap), ["shop"]);
}

#[test]
fn tags_and_pinned_commits() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    git(&remote.work, &["tag", "-a", "-m", "release", "v1", &c1]);
    git(&remote.work, &["tag", "light", &c1]);
    git(&remote.work, &["push", "-q", "origin", "--tags"]);
    let c2 = remote.commit(&[("stores.d/blog.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");

    for tag in ["v1", "light"] {
        let mut src = GitSource::new(git_settings_at(
            remote.url(),
            GitRef::Tag(tag.into()),
            state.path(),
        ));
        let snap = sync_ok(&mut src);
        assert_eq!(snap.revision, c1, "tag {tag}");
        assert_eq!(names(&snap), ["shop"]);
    }
    for pin in [c1.clone(), c1[..8].to_string()] {
        let mut src = GitSource::new(git_settings_at(
            remote.url(),
            GitRef::Commit(pin.clone()),
            state.path(),
        ));
        assert_eq!(sync_ok(&mut src).revision, c1, "pin {pin}");
    }
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Commit(c2.clone()),
        state.path(),
    ));
    assert_eq!(names(&sync_ok(&mut src)), ["blog", "shop"]);

    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Commit("0123456789abcdef0123456789abcdef01234567".into()),
        state.path(),
    ));
    assert_eq!(sync_err(&mut src).kind(), "git_ref_missing");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Tag("v9".into()),
        state.path(),
    ));
    assert_eq!(sync_err(&mut src).kind(), "git_ref_missing");

    // A tag moved on the remote is followed.
    git(&remote.work, &["tag", "-f", "light", &c2]);
    git(&remote.work, &["push", "-q", "--force", "origin", "light"]);
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Tag("light".into()),
        state.path(),
    ));
    assert_eq!(sync_ok(&mut src).revision, c2);
}

#[test]
fn an_unreachable_remote_is_an_error_and_the_source_recovers() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    assert_eq!(sync_ok(&mut src).revision, c1);

    let moved = remote.tmp.path().join("moved.git");
    std::fs::rename(&remote.bare, &moved).expect("hide remote");
    let err = sync_err(&mut src);
    assert_eq!(err.kind(), "git_fetch", "{err}");
    // The local repository was kept: a remote outage is not local corruption.
    assert!(state.path().join("repo/objects").is_dir());

    std::fs::rename(&moved, &remote.bare).expect("restore remote");
    assert_eq!(sync_ok(&mut src).revision, c1);
}

#[test]
fn a_first_sync_against_an_unreachable_remote_is_an_error_not_empty() {
    let state = tempfile::tempdir().expect("state");
    let url = format!("file://{}/nothing-here.git", state.path().display());
    let mut src = GitSource::new(git_settings_at(url, GitRef::Branch("main".into()), state.path()));
    let err = sync_err(&mut src);
    assert!(
        matches!(err.kind(), "git_fetch" | "git_checkout"),
        "{err} ({})",
        err.kind()
    );
}

#[test]
fn a_fetch_past_its_deadline_is_a_timeout() {
    let remote = Remote::new();
    remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ))
    .with_fetch_timeout(Duration::ZERO);
    let err = sync_err(&mut src);
    assert_eq!(err.kind(), "git_timeout", "{err}");
}

#[test]
fn a_pinned_commit_already_fetched_survives_a_remote_outage() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Commit(c1.clone()),
        state.path(),
    ));
    assert_eq!(sync_ok(&mut src).revision, c1);
    std::fs::remove_dir_all(&remote.bare).expect("rm remote");
    assert_eq!(sync_ok(&mut src).revision, c1);
}

#[test]
fn a_deleted_branch_is_ref_missing() {
    let remote = Remote::new();
    remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    git(&remote.work, &["push", "-q", "origin", "HEAD:feature"]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("feature".into()),
        state.path(),
    ));
    sync_ok(&mut src);

    git(&remote.work, &["push", "-q", "origin", "--delete", "feature"]);
    let err = sync_err(&mut src);
    assert_eq!(err.kind(), "git_ref_missing", "{err}");

    let mut never = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("nope".into()),
        state.path(),
    ));
    assert_eq!(sync_err(&mut never).kind(), "git_ref_missing");
}

fn delete_files_under(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            n += delete_files_under(&p);
        } else {
            std::fs::remove_file(&p).expect("remove");
            n += 1;
        }
    }
    n
}

#[test]
fn a_corrupt_local_repository_is_cloned_again() {
    // The re-clone is logged; show it when this test fails.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    assert_eq!(sync_ok(&mut src).revision, c1);

    // Objects gone.
    let deleted = delete_files_under(&state.path().join("repo/objects"));
    assert!(deleted > 0);
    let snap = sync_ok(&mut src);
    assert_eq!(
        (snap.revision.as_str(), names(&snap)),
        (c1.as_str(), vec!["shop".to_string()])
    );

    // HEAD truncated.
    std::fs::write(state.path().join("repo/HEAD"), "").expect("truncate HEAD");
    assert_eq!(sync_ok(&mut src).revision, c1);

    // Objects gone *and* a new commit on the remote.
    delete_files_under(&state.path().join("repo/objects"));
    let c2 = remote.commit(&[("stores.d/blog.toml", Some(GOOD))]);
    assert_eq!(sync_ok(&mut src).revision, c2);

    // The whole repository directory replaced by a file.
    std::fs::remove_dir_all(state.path().join("repo")).expect("rm repo");
    std::fs::write(state.path().join("repo"), "not a repo").expect("file");
    assert_eq!(sync_ok(&mut src).revision, c2);
}

#[test]
fn a_remote_replaced_with_an_unrelated_history_is_followed() {
    let remote = Remote::new();
    remote.commit(&[
        ("stores.d/shop.toml", Some(GOOD)),
        ("stores.d/blog.toml", Some(GOOD)),
    ]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    assert_eq!(names(&sync_ok(&mut src)), ["blog", "shop"]);

    std::fs::remove_dir_all(&remote.bare).expect("rm remote");
    let work2 = remote.tmp.path().join("work2");
    Remote::init(&remote.bare, &work2);
    let other = Remote {
        tmp: tempfile::tempdir().expect("unused"),
        bare: remote.bare.clone(),
        work: work2,
    };
    let n1 = other.commit(&[("stores.d/news.toml", Some(OTHER))]);
    let snap = sync_ok(&mut src);
    assert_eq!(snap.revision, n1);
    assert_eq!(names(&snap), ["news"]);
}

#[test]
fn an_invalid_store_file_is_an_error_entry_not_dropped() {
    let remote = Remote::new();
    let c1 = remote.commit(&[
        ("stores.d/good.toml", Some(GOOD)),
        ("stores.d/bad.toml", Some("engine = 5\n")),
        ("stores.d/Bad Name.toml", Some(GOOD)),
        ("stores.d/big.toml", Some(&"#".repeat(100 * 1024))),
        ("stores.d/.hidden.toml", Some("garbage")),
        ("stores.d/notes.txt", Some("not a store")),
    ]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    let snap = sync_ok(&mut src);
    assert_eq!(snap.revision, c1);
    assert_eq!(names(&snap), ["bad", "big", "good"]);
    assert!(
        snap.stores
            .iter()
            .all(|(n, r)| r.is_ok() == (n.as_str() == "good"))
    );
    assert_eq!(snap.unnamed.len(), 1);
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_store_directory_is_refused() {
    let remote = Remote::new();
    remote.commit(&[("secret.toml", Some(GOOD)), ("stores.d/shop.toml", Some(GOOD))]);
    std::os::unix::fs::symlink("../secret.toml", remote.work.join("stores.d/evil.toml")).expect("ln");
    std::os::unix::fs::symlink("shop.toml", remote.work.join("stores.d/alias.toml")).expect("ln");
    remote.commit(&[]);
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    let snap = sync_ok(&mut src);
    assert_eq!(names(&snap), ["alias", "evil", "shop"]);
    let evil = snap
        .stores
        .iter()
        .find(|(n, _)| n.as_str() == "evil")
        .map(|(_, r)| r);
    assert!(matches!(evil, Some(Err(_))), "{evil:?}");
}

#[test]
fn a_missing_subpath_is_an_error_not_zero_stores() {
    let remote = Remote::new();
    remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let state = tempfile::tempdir().expect("state");
    let mut s = git_settings_at(remote.url(), GitRef::Branch("main".into()), state.path());
    s.subpath = PathBuf::from("nope");
    assert_eq!(sync_err(&mut GitSource::new(s)).kind(), "git_subpath_missing");

    let mut src = GitSource::new(git_settings_at(
        remote.url(),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    sync_ok(&mut src);
    // The directory removed (or replaced by a file) in a later commit.
    remote.commit(&[("stores.d/shop.toml", None), ("stores.d", Some("a file now"))]);
    assert_eq!(sync_err(&mut src).kind(), "git_subpath_missing");
    remote.commit(&[("stores.d", None), ("other/x.toml", Some(GOOD))]);
    assert_eq!(sync_err(&mut src).kind(), "git_subpath_missing");

    // An existing but empty-of-stores directory is a valid, empty snapshot.
    remote.commit(&[("stores.d/README.md", Some("none yet"))]);
    let snap = sync_ok(&mut src);
    assert!(snap.stores.is_empty());

    // The repository root as subpath.
    let mut s = git_settings_at(remote.url(), GitRef::Branch("main".into()), state.path());
    s.subpath = PathBuf::from(".");
    remote.commit(&[("root.toml", Some(GOOD))]);
    assert_eq!(names(&sync_ok(&mut GitSource::new(s))), ["root"]);
}

#[test]
fn smart_http_transport_clones_and_follows() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let port = serve_http(remote.tmp.path().to_path_buf(), None);
    let url = format!("http://127.0.0.1:{port}/remote.git");
    let state = tempfile::tempdir().expect("state");
    let mut src = GitSource::new(git_settings_at(url, GitRef::Branch("main".into()), state.path()));
    let snap = sync_ok(&mut src);
    assert_eq!(snap.revision, c1);
    assert_eq!(names(&snap), ["shop"]);

    let c2 = remote.commit(&[("stores.d/blog.toml", Some(GOOD))]);
    assert_eq!(sync_ok(&mut src).revision, c2);
    git(
        &remote.work,
        &["push", "-q", "--force", "origin", &format!("{c1}:main")],
    );
    assert_eq!(sync_ok(&mut src).revision, c1);

    // The server goes away: an error with a bounded kind, never an empty snapshot.
    let mut gone = GitSource::new(git_settings_at(
        format!("http://127.0.0.1:{port}/missing.git"),
        GitRef::Branch("main".into()),
        state.path(),
    ));
    let err = sync_err(&mut gone);
    assert_eq!(err.kind(), "git_fetch", "{err}");
}

#[test]
fn https_style_token_auth_from_a_file_or_the_environment() {
    let remote = Remote::new();
    let c1 = remote.commit(&[("stores.d/shop.toml", Some(GOOD))]);
    let token = "s3cr3t-token";
    let port = serve_http(remote.tmp.path().to_path_buf(), Some(token.into()));
    let url = format!("http://127.0.0.1:{port}/remote.git");
    let state = tempfile::tempdir().expect("state");

    let token_file = state.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let mut s = git_settings_at(
        url.clone(),
        GitRef::Branch("main".into()),
        &state.path().join("a"),
    );
    s.token_file = Some(token_file.clone());
    assert_eq!(sync_ok(&mut GitSource::new(s.clone())).revision, c1);

    std::fs::write(&token_file, "wrong").expect("token");
    let err = sync_err(&mut GitSource::new(s.clone()));
    assert_eq!(err.kind(), "git_auth", "{err}");
    assert!(
        !err.to_string().contains("wrong") && !err.to_string().contains(token),
        "{err}"
    );

    s.token_file = Some(state.path().join("missing-token"));
    assert_eq!(sync_err(&mut GitSource::new(s.clone())).kind(), "git_auth");

    // No credentials configured at all.
    let none = git_settings_at(
        url.clone(),
        GitRef::Branch("main".into()),
        &state.path().join("b"),
    );
    assert_eq!(sync_err(&mut GitSource::new(none)).kind(), "git_auth");

    // The environment variable name is unique to this test, so no other test can see it.
    let var = "STOREKEEPER_TEST_GIT_TOKEN_3F9A";
    // SAFETY: set before the first read, and no other code in this test binary reads this var.
    unsafe { std::env::set_var(var, token) };
    let mut s = git_settings_at(url, GitRef::Branch("main".into()), &state.path().join("c"));
    s.token_env = Some(var.into());
    assert_eq!(sync_ok(&mut GitSource::new(s)).revision, c1);
}
