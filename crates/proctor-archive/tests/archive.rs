//! The bundle rules, checked on archives built the way a hostile client would build them.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use proctor_archive::{
    check, pack_directory, pack_paths, pack_tree, unpack, ArchiveError, Layout, Limits,
};
use tar::{Builder, EntryType, Header};

fn tar_gz(build: impl FnOnce(&mut Builder<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
    let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    build(&mut builder);
    builder.into_inner().unwrap().finish().unwrap()
}

/// Writes a raw name into the header, as a hostile archive would (the tar crate refuses `..` when asked to).
fn raw_entry(builder: &mut Builder<GzEncoder<Vec<u8>>>, name: &str, kind: EntryType) {
    let mut header = Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
    builder.append(&header, &b"hi"[..]).unwrap();
}

#[test]
fn phase_directories_and_plain_files_pass_and_unpack_where_named() {
    let archive = tar_gz(|builder| {
        raw_entry(builder, "./test/data.txt", EntryType::Regular);
        raw_entry(builder, "setup/a/b.txt", EntryType::Regular);
    });
    check(&archive, Layout::UnderPhases, Limits::ARTIFACTS).unwrap();
    check(&archive, Layout::Any, Limits::ARTIFACTS).unwrap();
    let destination = tempfile::tempdir().unwrap();
    unpack(
        archive.as_slice(),
        destination.path(),
        Layout::UnderPhases,
        Limits::ARTIFACTS,
    )
    .unwrap();
    assert_eq!(
        fs::read(destination.path().join("test/data.txt")).unwrap(),
        b"hi"
    );
    assert_eq!(
        fs::read(destination.path().join("setup/a/b.txt")).unwrap(),
        b"hi"
    );
}

#[test]
fn escaping_paths_links_devices_and_files_outside_phases_are_refused_by_name() {
    for (name, kind, layout, expected) in [
        ("test/../../x", EntryType::Regular, Layout::Any, "`..`"),
        ("/etc/passwd", EntryType::Regular, Layout::Any, "absolute"),
        (
            "test/link",
            EntryType::Symlink,
            Layout::Any,
            "symbolic link",
        ),
        ("test/hard", EntryType::Link, Layout::Any, "hard link"),
        (
            "test/device",
            EntryType::Char,
            Layout::Any,
            "character device",
        ),
        (
            "notaphase/x",
            EntryType::Regular,
            Layout::UnderPhases,
            "phase",
        ),
        (
            "test",
            EntryType::Regular,
            Layout::UnderPhases,
            "inside the phase",
        ),
    ] {
        let archive = tar_gz(|builder| raw_entry(builder, name, kind));
        let checked = check(&archive, layout, Limits::ARTIFACTS).unwrap_err();
        let destination = tempfile::tempdir().unwrap();
        let unpacked = unpack(
            archive.as_slice(),
            destination.path(),
            layout,
            Limits::ARTIFACTS,
        )
        .unwrap_err();
        for error in [checked, unpacked] {
            let message = error.to_string();
            assert!(
                matches!(&error, ArchiveError::Refused { entry, .. } if entry == name)
                    && message.contains(expected),
                "{name}: {message}"
            );
        }
        assert!(!destination.path().parent().unwrap().join("x").exists());
    }
}

#[test]
fn garbage_and_truncated_bundles_are_errors_not_panics() {
    let error = check(b"not gzip at all", Layout::Any, Limits::ARTIFACTS).unwrap_err();
    assert!(matches!(error, ArchiveError::Unreadable(_)), "{error}");
    let whole = tar_gz(|builder| raw_entry(builder, "test/a", EntryType::Regular));
    let truncated = &whole[..whole.len() / 2];
    assert!(check(truncated, Layout::Any, Limits::ARTIFACTS).is_err());
    let destination = tempfile::tempdir().unwrap();
    assert!(unpack(
        &b"garbage"[..],
        destination.path(),
        Layout::Any,
        Limits::ARTIFACTS
    )
    .is_err());
}

#[test]
fn a_packed_directory_round_trips_without_its_links_and_respects_the_cap() {
    let source = tempfile::tempdir().unwrap();
    assert_eq!(
        pack_directory(&source.path().join("missing"), 1024).unwrap(),
        None
    );
    assert_eq!(pack_directory(source.path(), 1024).unwrap(), None);
    fs::create_dir_all(source.path().join("logs/deep")).unwrap();
    fs::write(source.path().join("report.txt"), "all good").unwrap();
    fs::write(source.path().join("logs/deep/trace.log"), "trace").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", source.path().join("link")).unwrap();

    let packed = pack_directory(source.path(), 1 << 20).unwrap().unwrap();
    assert_eq!(packed.skipped, [PathBuf::from("link")]);
    check(&packed.bytes, Layout::Any, Limits::ARTIFACTS).unwrap();
    let destination = tempfile::tempdir().unwrap();
    unpack(
        packed.bytes.as_slice(),
        destination.path(),
        Layout::Any,
        Limits::ARTIFACTS,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(destination.path().join("report.txt")).unwrap(),
        "all good"
    );
    assert_eq!(
        fs::read_to_string(destination.path().join("logs/deep/trace.log")).unwrap(),
        "trace"
    );
    assert!(!destination.path().join("link").exists());

    let error = pack_directory(source.path(), 10).unwrap_err();
    assert!(
        matches!(error, ArchiveError::OverCap { cap: 10 }),
        "{error}"
    );
}

#[test]
fn a_tree_packs_under_a_phase_without_what_it_leaves_out() {
    let source = tempfile::tempdir().unwrap();
    fs::create_dir_all(source.path().join(".git/objects")).unwrap();
    fs::create_dir_all(source.path().join("tests/.git")).unwrap();
    fs::write(source.path().join(".git/objects/x"), "object").unwrap();
    fs::write(source.path().join("tests/test_a.py"), "a").unwrap();
    let packed = pack_tree(source.path(), Path::new("test/tree"), &[".git"], 1 << 20)
        .unwrap()
        .unwrap();
    check(&packed.bytes, Layout::UnderPhases, Limits::ATTACHMENTS).unwrap();
    let destination = tempfile::tempdir().unwrap();
    unpack(
        packed.bytes.as_slice(),
        destination.path(),
        Layout::UnderPhases,
        Limits::ATTACHMENTS,
    )
    .unwrap();
    let tree = destination.path().join("test/tree");
    assert_eq!(
        fs::read_to_string(tree.join("tests/test_a.py")).unwrap(),
        "a"
    );
    assert!(
        !tree.join(".git").exists(),
        "the top-level .git is left out"
    );
    assert!(
        tree.join("tests/.git").is_dir(),
        "only the top level is left out"
    );
}

#[test]
fn named_paths_pack_files_and_whole_directories_under_their_names() {
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("input.txt"), "input").unwrap();
    fs::create_dir(source.path().join("data")).unwrap();
    fs::write(source.path().join("data/one.csv"), "1").unwrap();
    let bundle = pack_paths(&[
        (source.path().join("input.txt"), "test/renamed.txt".into()),
        (source.path().join("data"), "test/data".into()),
    ])
    .unwrap();
    check(&bundle, Layout::UnderPhases, Limits::ARTIFACTS).unwrap();
    let destination = tempfile::tempdir().unwrap();
    unpack(
        bundle.as_slice(),
        destination.path(),
        Layout::UnderPhases,
        Limits::ARTIFACTS,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(destination.path().join("test/renamed.txt")).unwrap(),
        "input"
    );
    assert_eq!(
        fs::read_to_string(destination.path().join("test/data/one.csv")).unwrap(),
        "1"
    );

    let missing = pack_paths(&[(source.path().join("nope"), "test/nope".into())]).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

/// Issue 11, item 3: a bomb (one file of zeros, a few KiB packed, many MiB unpacked) and a bundle of too many
/// entries are refused by check and unpack, naming the cap; unpack writes nothing of the entry that crosses it.
#[test]
fn bundles_that_expand_past_their_limits_are_refused_naming_the_cap() {
    let limits = Limits {
        expanded_bytes: 1 << 20,
        entries: 10,
    };
    let bomb = proctor_testkit::bundle_of_zeros("zeros.bin", 8 << 20);
    assert!(bomb.len() < 64 << 10, "{} bytes packed", bomb.len());
    let error = check(&bomb, Layout::Any, limits).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the bundle expands past the cap of 1048576 bytes"
    );
    let destination = tempfile::tempdir().unwrap();
    let error = unpack(bomb.as_slice(), destination.path(), Layout::Any, limits).unwrap_err();
    assert!(matches!(error, ArchiveError::OverLimit { .. }), "{error}");
    assert!(!destination.path().join("zeros.bin").exists());
    check(&bomb, Layout::Any, Limits::ARTIFACTS).unwrap();

    let many = tar_gz(|builder| {
        for index in 0..11 {
            let mut header = Header::new_gnu();
            header.set_size(1);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("f{index}"), &b"x"[..])
                .unwrap();
        }
    });
    let error = check(&many, Layout::Any, limits).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the bundle holds more entries past the cap of 10 entries"
    );
}

/// The defaults hold without anything being unpacked: an entry whose header claims 5 GiB is refused from its header,
/// before a byte of its (absent) content is read.
#[test]
fn the_default_caps_are_checked_from_the_headers() {
    let bundle = proctor_testkit::bundle_claiming("huge.bin", 5 << 30);
    let error = check(&bundle, Layout::Any, Limits::ARTIFACTS).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the bundle expands past the cap of 4294967296 bytes"
    );
    let error = check(&bundle, Layout::Any, Limits::ATTACHMENTS).unwrap_err();
    assert!(error.to_string().contains("1073741824 bytes"), "{error}");
}
