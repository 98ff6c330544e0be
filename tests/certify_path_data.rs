//! `oodcert certify --data path:FILE` without `--id-val`: a `path:` dataset has no train split to
//! calibrate on, so it is a clear error naming `--id-val` (exit 2), not "reading train: No such
//! file"; with `--id-val` the same run works.

mod common;
use common::{oodcert, s, save_mlp};
use oodcert::data::npy::encode_npy;

#[test]
fn path_data_without_id_val_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let model = save_mlp(d.path(), [1, 8, 8], &[16], 3);
    let px: Vec<u8> = (0..12 * 64).map(|i| (i * 37 % 256) as u8).collect();
    let file = d.path().join("imgs.npy");
    std::fs::write(&file, encode_npy("|u1", &[12, 8, 8], false, &px)).unwrap();
    let data = format!("path:{}", s(&file));
    let out = d.path().join("out");
    let mut args = vec![
        "certify",
        "--model",
        s(&model),
        "--data",
        &data,
        "--sigma",
        "0.25",
        "--n0",
        "10",
        "--n",
        "50",
        "--alpha",
        "0.01",
        "--limit",
        "3",
        "--cal-n",
        "12",
        "--no-timing",
        "--out",
        s(&out),
    ];
    let o = oodcert(&args, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--id-val") && !err.contains("No such file"),
        "{err}"
    );
    assert!(!out.join("certify.csv").exists());
    args.extend(["--id-val", &data]);
    common::ok(&oodcert(&args, &[]));
    assert!(out.join("certify.csv").exists());
}
