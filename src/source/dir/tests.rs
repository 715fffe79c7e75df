use super::*;

fn defaults() -> SpecDefaults {
    SpecDefaults {
        base_domain: "example.com".into(),
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
