use std::time::{Duration, SystemTime};

use super::*;

fn defaults() -> SpecDefaults {
    SpecDefaults {
        base_domain: "example.com".into(),
        policy: Default::default(),
    }
}

#[test]
fn only_toml_files_that_are_not_hidden_or_temporary() {
    assert!(is_store_file("shop.toml"));
    for name in [
        ".shop.toml",
        "shop.toml~",
        "#shop.toml#",
        "shop.toml.swp",
        "shop.yaml",
        ".toml",
        "4913",
    ] {
        assert!(!is_store_file(name), "{name}");
    }
}

#[test]
fn missing_directory_is_an_error_not_an_empty_snapshot() {
    let err = read(Path::new("/nonexistent/stores.d"), &defaults()).expect_err("must fail");
    assert_eq!(err.kind(), "directory_unreadable");
}

#[test]
fn invalid_files_keep_their_store_name_and_revision_tracks_content() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("good.toml"), "engine = \"woocommerce\"\n")?;
    std::fs::write(dir.path().join("bad.toml"), "engine = 5\n")?;
    std::fs::write(dir.path().join("Bad Name.toml"), "engine = \"medusa\"\n")?;
    std::fs::write(dir.path().join(".hidden.toml"), "garbage")?;
    let snap = read(dir.path(), &defaults()).expect("readable");
    assert_eq!(snap.stores.len(), 2);
    assert!(snap.stores.iter().any(|(n, r)| n.as_str() == "good" && r.is_ok()));
    assert!(snap.stores.iter().any(|(n, r)| n.as_str() == "bad" && r.is_err()));
    assert_eq!(snap.unnamed.len(), 1);
    let before = snap.revision.clone();
    std::fs::write(dir.path().join("good.toml"), "engine = \"medusa\"\n")?;
    assert_ne!(read(dir.path(), &defaults()).expect("readable").revision, before);
    Ok(())
}

#[test]
fn duplicate_hosts_invalidate_the_later_store() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("a.toml"),
        "engine = \"woocommerce\"\nhost = \"shop.example.com\"\n",
    )?;
    std::fs::write(
        dir.path().join("b.toml"),
        "engine = \"woocommerce\"\nhost = \"shop.example.com\"\n",
    )?;
    let snap = read(dir.path(), &defaults()).expect("readable");
    let b = snap
        .stores
        .iter()
        .find(|(n, _)| n.as_str() == "b")
        .map(|(_, r)| r);
    let err = b.and_then(|r| r.as_ref().err()).expect("b is invalid");
    assert_eq!(err.diagnostics[0].line, 2);
    assert!(err.diagnostics[0].message.contains("already used by"));
    Ok(())
}

#[cfg(unix)]
#[test]
fn symlink_out_of_the_directory_is_refused() -> std::io::Result<()> {
    let outside = tempfile::tempdir()?;
    let target = outside.path().join("secret.toml");
    std::fs::write(&target, "engine = \"woocommerce\"\n")?;
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink(&target, dir.path().join("evil.toml"))?;
    let snap = read(dir.path(), &defaults()).expect("readable");
    let r = snap.stores.values().next().expect("one store");
    assert!(
        r.as_ref()
            .is_err_and(|e| e.diagnostics[0].message.contains("outside"))
    );
    Ok(())
}

// --- the cache ---------------------------------------------------------------------------

const WOO: &str = "engine = \"woocommerce\"\n";
const MEDUSA: &str = "engine = \"medusa\"\n";
/// As long as [`WOO`], with other content.
const WOO_SAME_SIZE: &str = "engine = \"woocommercf\"\n";

/// A source whose entries are never racy, so the trusted-identity path is taken at once (the
/// files in these tests are only seconds old). Safe here: no test edits a file within one
/// timestamp tick of reading it and then expects the identity to show it, except the one that
/// forges that case on purpose.
fn trusting(dir: &Path) -> DirSource {
    let mut source = DirSource::new(dir.to_path_buf());
    source.racy_window = Duration::ZERO;
    source
}

fn nothing() -> Changes {
    Changes::default()
}

fn named(names: &[&str]) -> Changes {
    Changes {
        names: names.iter().map(std::ffi::OsString::from).collect(),
        everything: false,
    }
}

fn spec_of(snap: &Snapshot, name: &str) -> Arc<StoreSpec> {
    let (_, r) = snap
        .stores
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .unwrap_or_else(|| panic!("no store {name}"));
    match r {
        Ok(spec) => Arc::clone(spec),
        Err(e) => panic!("{name} is invalid: {e:?}"),
    }
}

fn read_ok(source: &mut DirSource, changes: &Changes) -> Arc<Snapshot> {
    source
        .read(&defaults(), changes)
        .unwrap_or_else(|e| panic!("read failed: {e}"))
}

fn cold(dir: &Path) -> Snapshot {
    read(dir, &defaults()).expect("cold read")
}

#[test]
fn an_unchanged_file_costs_one_stat_and_keeps_its_spec() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("s{i}.toml")), WOO)?;
    }
    let mut source = trusting(dir.path());
    let first = read_ok(&mut source, &Changes::everything());
    assert_eq!(source.last_read_stats().parses, 20);

    let again = read_ok(&mut source, &Changes::everything());
    let stats = source.last_read_stats();
    assert_eq!(
        stats,
        ReadStats {
            listed: true,
            stats: 20,
            reads: 0,
            parses: 0
        }
    );
    assert!(
        Arc::ptr_eq(&first, &again),
        "an unchanged directory gives the same snapshot"
    );

    // No events and no full re-stat due: nothing is looked at at all.
    let idle = read_ok(&mut source, &nothing());
    assert_eq!(source.last_read_stats(), ReadStats::default());
    assert!(Arc::ptr_eq(&first, &idle));
    assert_eq!(*idle, cold(dir.path()));
    Ok(())
}

#[test]
fn a_touched_file_is_read_but_keeps_its_spec() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, WOO)?;
    std::fs::write(dir.path().join("other.toml"), MEDUSA)?;
    let mut source = trusting(dir.path());
    let first = read_ok(&mut source, &Changes::everything());

    let file = std::fs::File::options().write(true).open(&path)?;
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))?;
    let after = read_ok(&mut source, &named(&["shop.toml"]));
    assert_eq!(
        source.last_read_stats().reads,
        1,
        "the new identity makes it read"
    );
    assert_eq!(
        source.last_read_stats().parses,
        0,
        "the same content is not parsed"
    );
    assert!(
        Arc::ptr_eq(&first, &after),
        "the same content gives the same snapshot"
    );

    // An edit of another size is parsed, and only that file.
    std::fs::write(&path, MEDUSA)?;
    let edited = read_ok(&mut source, &named(&["shop.toml"]));
    assert_eq!(source.last_read_stats().parses, 1);
    assert!(!Arc::ptr_eq(&first, &edited));
    assert!(Arc::ptr_eq(&spec_of(&first, "other"), &spec_of(&edited, "other")));
    assert_eq!(*edited, cold(dir.path()));
    Ok(())
}

#[test]
fn a_racy_entry_is_compared_by_content_even_when_its_identity_is_unchanged() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, WOO)?;
    let mut source = DirSource::new(dir.path().to_path_buf());
    read_ok(&mut source, &Changes::everything());
    let shop = std::ffi::OsString::from("shop.toml");
    assert!(source.files[&shop].racy, "a file written just now is racy");

    // A same-size edit within one timestamp tick: the identity the cache holds is exactly what
    // lstat says now. (Forged, since this kernel may give the edit a finer timestamp.)
    std::fs::write(&path, WOO_SAME_SIZE)?;
    let now = FileIdent::of(&std::fs::symlink_metadata(&path)?);
    source.files.get_mut(&shop).expect("cached").seen = Seen::File(now);
    let snap = read_ok(&mut source, &nothing());
    assert_eq!(
        source.last_read_stats().reads,
        1,
        "racy entries are read on every read"
    );
    assert_eq!(*snap, cold(dir.path()));
    assert!(
        snap.stores.values().next().is_some_and(|r| r.is_err()),
        "the new content is invalid"
    );

    // The same forgery on an entry trusted by identity is not seen: the racy flag is what finds it.
    std::fs::write(&path, WOO)?;
    let mut trusting = trusting(dir.path());
    read_ok(&mut trusting, &Changes::everything());
    std::fs::write(&path, WOO_SAME_SIZE)?;
    let now = FileIdent::of(&std::fs::symlink_metadata(&path)?);
    trusting.files.get_mut(&shop).expect("cached").seen = Seen::File(now);
    let stale = read_ok(&mut trusting, &named(&["shop.toml"]));
    assert_ne!(*stale, cold(dir.path()));
    Ok(())
}

#[test]
fn racy_is_decided_against_the_read_start() {
    let id = |t: i128| FileIdent {
        regular: true,
        dev: 1,
        ino: 2,
        mode: 0o100644,
        size: 3,
        mtime_ns: t,
        ctime_ns: t,
    };
    let s = 1_000_000_000_000_i128;
    let w = RACY_WINDOW;
    assert!(id(s).racy(s, w), "changed as the read started");
    assert!(id(s - 1_000_000_000).racy(s, w), "a second before");
    assert!(
        !id(s - w.as_nanos() as i128 - 1).racy(s, w),
        "older than the window"
    );
    assert!(id(s + 5_000_000_000).racy(s, w), "in the future (a clock step)");
    // ctime counts even when mtime was set back (cp -p, touch -d).
    let restored = FileIdent { mtime_ns: 0, ..id(s) };
    assert!(restored.racy(s, w));
}

#[test]
fn narrowed_reads_look_at_named_files_and_always_at_symlinks() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    for name in ["a", "b", "shop"] {
        std::fs::write(dir.path().join(format!("{name}.toml")), WOO)?;
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink("shop.toml", dir.path().join("alias.toml"))?;
    let mut source = trusting(dir.path());
    read_ok(&mut source, &Changes::everything());

    std::fs::write(dir.path().join("a.toml"), MEDUSA)?;
    std::fs::write(dir.path().join("b.toml"), MEDUSA)?;
    std::fs::write(dir.path().join("shop.toml"), MEDUSA)?;
    let snap = read_ok(&mut source, &named(&["a.toml"]));
    let stats = source.last_read_stats();
    assert!(!stats.listed);
    let engine = |s: &Snapshot, n: &str| spec_of(s, n).engine.as_str();
    assert_eq!(engine(&snap, "a"), "medusa", "named: seen");
    assert_eq!(engine(&snap, "b"), "woocommerce", "not named: not looked at");
    #[cfg(unix)]
    {
        assert_eq!(stats.stats, 2, "a.toml and the symlink");
        assert_eq!(
            engine(&snap, "alias"),
            "medusa",
            "a symlink is followed every read"
        );
    }
    // The full re-stat (the safety net) finds the rest.
    let full = read_ok(&mut source, &Changes::everything());
    assert_eq!(*full, cold(dir.path()));
    Ok(())
}

#[test]
fn names_from_events_cannot_leave_the_directory() -> std::io::Result<()> {
    let outside = tempfile::tempdir()?;
    std::fs::write(outside.path().join("x.toml"), WOO)?;
    let dir = tempfile::tempdir()?;
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub)?;
    let mut source = trusting(&sub);
    read_ok(&mut source, &Changes::everything());
    let escape = format!("../../{}/x.toml", outside.path().display());
    let snap = read_ok(&mut source, &named(&[&escape, "/etc/passwd.toml"]));
    assert!(snap.stores.is_empty());
    assert_eq!(source.last_read_stats().stats, 0);
    Ok(())
}

#[test]
fn new_defaults_parse_everything_again() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("shop.toml"), WOO)?;
    let mut source = trusting(dir.path());
    let first = read_ok(&mut source, &nothing());
    let other = SpecDefaults {
        base_domain: "example.org".into(),
        policy: Default::default(),
    };
    let snap = source.read(&other, &nothing()).expect("read");
    assert_eq!(source.last_read_stats().parses, 1);
    assert_eq!(spec_of(&snap, "shop").host, "shop.example.org");
    assert_ne!(spec_of(&first, "shop").host, spec_of(&snap, "shop").host);
    Ok(())
}

#[test]
fn after_an_error_the_next_read_is_a_full_one() -> std::io::Result<()> {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("stores.d");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("shop.toml"), WOO)?;
    let mut source = trusting(&dir);
    let first = read_ok(&mut source, &nothing());
    std::fs::remove_dir_all(&dir)?;
    let err = source
        .read(&defaults(), &Changes::everything())
        .expect_err("gone");
    assert_eq!(err.kind(), "directory_unreadable");

    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("shop.toml"), WOO)?;
    std::fs::write(dir.join("blog.toml"), MEDUSA)?;
    // No events named anything, yet the read lists the directory again.
    let snap = read_ok(&mut source, &nothing());
    assert!(source.last_read_stats().listed);
    assert_eq!(*snap, cold(&dir));
    assert_ne!(snap.revision, first.revision);
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_file_replaced_by_a_symlink_and_a_fifo_are_seen() -> std::io::Result<()> {
    let outside = tempfile::tempdir()?;
    std::fs::write(outside.path().join("secret.toml"), MEDUSA)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("shop.toml"), WOO)?;
    std::fs::write(dir.path().join("blog.toml"), MEDUSA)?;
    let mut source = trusting(dir.path());
    read_ok(&mut source, &Changes::everything());

    let shop = dir.path().join("shop.toml");
    std::fs::remove_file(&shop)?;
    std::os::unix::fs::symlink(outside.path().join("secret.toml"), &shop)?;
    let snap = read_ok(&mut source, &named(&["shop.toml"]));
    assert_eq!(*snap, cold(dir.path()));
    let err = snap
        .stores
        .values()
        .find_map(|r| r.as_ref().err())
        .expect("refused");
    assert!(err.diagnostics[0].message.contains("outside"), "{err:?}");

    // Retargeted inside the directory: now a valid alias of blog.toml.
    std::fs::remove_file(&shop)?;
    std::os::unix::fs::symlink("blog.toml", &shop)?;
    let snap = read_ok(&mut source, &nothing());
    assert_eq!(*snap, cold(dir.path()));
    assert!(snap.stores.values().all(Result::is_ok));

    std::fs::remove_file(&shop)?;
    let made = std::process::Command::new("mkfifo").arg(&shop).status()?;
    assert!(made.success());
    let snap = read_ok(&mut source, &named(&["shop.toml"]));
    assert_eq!(*snap, cold(dir.path()));
    let err = snap
        .stores
        .values()
        .find_map(|r| r.as_ref().err())
        .expect("refused");
    assert!(
        err.diagnostics[0].message.contains("not a regular file"),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn the_revision_is_a_function_of_names_and_contents() -> std::io::Result<()> {
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    for d in [&a, &b] {
        std::fs::write(d.path().join("shop.toml"), WOO)?;
        std::fs::write(d.path().join("bad.toml"), "engine = 5\n")?;
    }
    let rev_a = read_ok(&mut trusting(a.path()), &nothing()).revision.clone();
    assert_eq!(rev_a, cold(b.path()).revision, "same files, same revision");
    std::fs::rename(b.path().join("shop.toml"), b.path().join("blog.toml"))?;
    assert_ne!(rev_a, cold(b.path()).revision, "a rename is another revision");
    Ok(())
}
