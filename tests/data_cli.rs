//! The `oodcert data` command line: exit codes and one-line errors.

use std::process::Command;

fn oodcert() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oodcert"));
    c.env("OODCERT_NO_FETCH", "1");
    c
}

#[test]
fn corrupted_path_file_exits_2_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad-images-idx3-ubyte");
    std::fs::write(&p, [0u8, 0, 8, 3, 0, 0, 0, 9]).unwrap();
    let out = oodcert()
        .args(["data", "info"])
        .arg(format!("path:{}", p.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "stderr: {err}");
    assert!(
        err.contains(&p.display().to_string()) && err.contains("truncated"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn info_prints_stats_and_list_shows_every_name() {
    let out = oodcert()
        .args(["data", "info", "digits8:train"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("n\t901") && s.contains("shape\t1x8x8") && s.contains("classes\t10"),
        "{s}"
    );
    let d = tempfile::tempdir().unwrap();
    let out = oodcert()
        .args(["data", "list", "--dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = String::from_utf8_lossy(&out.stdout);
    for n in [
        "mnist",
        "fashion-mnist",
        "animal-mnist",
        "textures",
        "lfw",
        "digits8",
        "noise-gauss",
        "noise-uniform",
    ] {
        assert!(
            s.lines().any(|l| l.starts_with(&format!("{n}\t"))),
            "{n} missing from list"
        );
    }
    assert!(
        s.lines()
            .any(|l| l.starts_with("mnist\t") && l.contains("\tno\t"))
    );
}

#[test]
fn unknown_dataset_and_missing_data_exit_2() {
    let out = oodcert().args(["data", "info", "svhn"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("known:"));
    let d = tempfile::tempdir().unwrap();
    let out = oodcert()
        .args(["data", "info", "animal-mnist", "--dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("oodcert data fetch"));
    let out = oodcert()
        .args(["data", "fetch", "--only", "cifar10", "--dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
