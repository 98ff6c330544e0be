//! Every reader on small files written here (exact round trips), and corrupted files of every
//! format: each must be a `BadFile` naming the file, never a panic.

use oodcert::Error;
use oodcert::data::named::{FetchPolicy, load_with};
use oodcert::data::{cifar, csv_pixels, idx, npy, numpy_pickle, png_images};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Asserts a `BadFile` naming `path` whose message contains `needle`.
fn assert_bad_file(r: oodcert::Result<impl std::fmt::Debug>, path: &Path, needle: &str) {
    match r {
        Err(Error::BadFile { path: p, msg }) => {
            assert_eq!(p, path, "error names the wrong file: {msg}");
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
        }
        other => panic!(
            "expected BadFile({needle}) for {}, got {other:?}",
            path.display()
        ),
    }
}

fn load_path(p: &Path) -> oodcert::Result<oodcert::data::Dataset> {
    load_with(
        &format!("path:{}", p.display()),
        Path::new("/nonexistent"),
        FetchPolicy::Never,
    )
}

fn to_u8(v: &[f32]) -> Vec<u8> {
    v.iter().map(|x| (x * 255.0).round() as u8).collect()
}

#[test]
fn idx_round_trip_raw_and_gzip_with_sibling_labels() {
    let d = tempfile::tempdir().unwrap();
    let px: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 9) as u8).collect();
    let img = idx::encode_idx(&[2, 3, 4], &px);
    let lab = idx::encode_idx(&[2], &[7, 1]);
    let ip = write(d.path(), "train-images-idx3-ubyte.gz", &gz(&img));
    write(d.path(), "train-labels-idx1-ubyte.gz", &gz(&lab));
    let ds = load_path(&ip).unwrap();
    assert_eq!(ds.shape, [1, 3, 4]);
    assert_eq!(ds.labels, vec![7, 1]);
    assert_eq!(to_u8(&ds.images), px);
    assert_eq!(ds.images[1], 9.0 / 255.0);
    // raw, no label file → unlabelled
    let rp = write(d.path(), "x.idx", &img);
    let ds = load_path(&rp).unwrap();
    assert_eq!(ds.labels, vec![-1, -1]);
    // dataset hash = SHA-256 of the file bytes
    assert_eq!(ds.sha256, oodcert::data::bytes::sha256_hex(&img));
}

#[test]
fn idx_defects() {
    let d = tempfile::tempdir().unwrap();
    let img = idx::encode_idx(&[2, 3, 4], &[5u8; 24]);
    let p = write(d.path(), "trunc-ubyte", &img[..img.len() - 1]);
    assert_bad_file(load_path(&p), &p, "truncated");
    let mut long = img.clone();
    long.extend_from_slice(&[0, 0]);
    let p = write(d.path(), "long-ubyte", &long);
    assert_bad_file(load_path(&p), &p, "oversized");
    let mut magic = img.clone();
    magic[0] = 7;
    let p = write(d.path(), "magic-ubyte", &magic);
    assert_bad_file(load_path(&p), &p, "magic");
    let p = write(d.path(), "dims.idx", &idx::encode_idx(&[24], &[5u8; 24]));
    assert_bad_file(load_path(&p), &p, "3 non-zero dimensions");
    let p = write(d.path(), "empty-ubyte", &[]);
    assert_bad_file(load_path(&p), &p, "empty");
    let p = write(d.path(), "hdr-ubyte", &img[..9]);
    assert_bad_file(idx::read_idx(&p), &p, "header truncated");
    let p = write(d.path(), "badgz-ubyte.gz", &[0x1f, 0x8b, 1, 2, 3]);
    assert_bad_file(idx::read_idx(&p), &p, "gzip");
    // labels file with the wrong count
    write(d.path(), "a-images-idx3-ubyte", &img);
    let lp = write(
        d.path(),
        "a-labels-idx1-ubyte",
        &idx::encode_idx(&[3], &[1, 2, 3]),
    );
    assert_bad_file(
        load_path(&d.path().join("a-images-idx3-ubyte")),
        &lp,
        "3 labels for 2 images",
    );
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn npy_round_trips_every_dtype_and_layout() {
    let d = tempfile::tempdir().unwrap();
    // u8 (n,h,w) with sibling i8 labels
    let px: Vec<u8> = (0..2 * 2 * 3).map(|i| (i * 20) as u8).collect();
    let p = write(
        d.path(),
        "imgs.npy",
        &npy::encode_npy("|u1", &[2, 2, 3], false, &px),
    );
    let lab: Vec<u8> = [4i64, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    write(
        d.path(),
        "imgs_labels.npy",
        &npy::encode_npy("<i8", &[2], false, &lab),
    );
    let ds = load_path(&p).unwrap();
    assert_eq!((ds.shape, ds.labels.clone()), ([1, 2, 3], vec![4, 9]));
    assert_eq!(to_u8(&ds.images), px);
    // f32 (n,c,h,w) exact
    let v: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32 / 23.0).collect();
    let p = write(
        d.path(),
        "f.npy",
        &npy::encode_npy("<f4", &[2, 3, 2, 2], false, &f32_bytes(&v)),
    );
    let ds = load_path(&p).unwrap();
    assert_eq!(ds.shape, [3, 2, 2]);
    assert_eq!(ds.images, v);
    // f64 (n,h,w,1)
    let v64: Vec<f64> = (0..6).map(|i| i as f64 / 5.0).collect();
    let p = write(
        d.path(),
        "g.npy",
        &npy::encode_npy("<f8", &[1, 2, 3, 1], false, &f64_bytes(&v64)),
    );
    let ds = load_path(&p).unwrap();
    assert_eq!(ds.shape, [1, 2, 3]);
    assert_eq!(ds.images, v64.iter().map(|&x| x as f32).collect::<Vec<_>>());
    // versions 1, 2, 3 written by numpy itself
    for v in 1..=3 {
        let a = npy::read_npy(&fixture(&format!("npy_v{v}.npy"))).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        let npy::NpyData::F32(vals) = a.data else {
            panic!("dtype")
        };
        let want: Vec<f32> = (0..24).map(|i| i as f32 / 23.0).collect();
        assert_eq!(vals, want, "v{v}");
    }
}

#[test]
fn npy_defects() {
    let d = tempfile::tempdir().unwrap();
    let ok = npy::encode_npy("<f4", &[1, 2, 2], false, &f32_bytes(&[0.1, 0.2, 0.3, 0.4]));
    let p = write(
        d.path(),
        "fortran.npy",
        &npy::encode_npy("<f4", &[1, 2, 2], true, &f32_bytes(&[0.0; 4])),
    );
    assert_bad_file(load_path(&p), &p, "fortran_order");
    let p = write(
        d.path(),
        "nan32.npy",
        &npy::encode_npy(
            "<f4",
            &[1, 2, 2],
            false,
            &f32_bytes(&[0.1, f32::NAN, 0.3, 0.4]),
        ),
    );
    assert_bad_file(load_path(&p), &p, "NaN");
    let p = write(
        d.path(),
        "inf64.npy",
        &npy::encode_npy("<f8", &[1, 1, 2], false, &f64_bytes(&[0.5, f64::INFINITY])),
    );
    assert_bad_file(load_path(&p), &p, "inf");
    let p = write(
        d.path(),
        "range.npy",
        &npy::encode_npy("<f8", &[1, 1, 2], false, &f64_bytes(&[0.5, 255.0])),
    );
    assert_bad_file(load_path(&p), &p, "already be in [0,1]");
    let p = write(d.path(), "trunc.npy", &ok[..ok.len() - 3]);
    assert_bad_file(load_path(&p), &p, "truncated");
    let mut bad_hdr = ok.clone();
    let pos = bad_hdr.iter().position(|&b| b == b'{').unwrap();
    bad_hdr[pos] = b'[';
    let p = write(d.path(), "hdr.npy", &bad_hdr);
    assert_bad_file(load_path(&p), &p, "bad NPY header");
    let p = write(
        d.path(),
        "dims.npy",
        &npy::encode_npy("<f4", &[4], false, &f32_bytes(&[0.1; 4])),
    );
    assert_bad_file(load_path(&p), &p, "shape [4]");
    let p = write(
        d.path(),
        "c5.npy",
        &npy::encode_npy("|u1", &[1, 2, 2, 5], false, &[0; 20]),
    );
    assert_bad_file(load_path(&p), &p, "shape [1, 2, 2, 5]");
    let p = write(
        d.path(),
        "be.npy",
        &npy::encode_npy(">f4", &[1, 1, 1], false, &[0; 4]),
    );
    assert_bad_file(load_path(&p), &p, "not supported");
    let p = write(d.path(), "ver.npy", &{
        let mut b = ok.clone();
        b[6] = 9;
        b
    });
    assert_bad_file(npy::read_npy(&p), &p, "version 9");
    let p = write(d.path(), "empty.npy", &[]);
    assert_bad_file(load_path(&p), &p, "empty");
}

#[test]
fn numpy_pickles_from_python() {
    for proto in ["p2", "p4"] {
        let p = fixture(&format!("pickle_{proto}_u8.pkl"));
        let a = numpy_pickle::parse_numpy_pickle(&p, &std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4], "{proto}");
        let want: Vec<u8> = (0..24u32).map(|i| (i * 11 % 256) as u8).collect();
        assert_eq!(a.as_u8(&p).unwrap(), want.as_slice(), "{proto}");
    }
    let p = fixture("pickle_p4_i8.pkl");
    let a = numpy_pickle::parse_numpy_pickle(&p, &std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(a.as_i64(&p).unwrap(), vec![3, -1, 7]);
    // every truncation of a real pickle is an error, never a panic
    let bytes = std::fs::read(fixture("pickle_p2_u8.pkl")).unwrap();
    for cut in 0..bytes.len() {
        assert!(numpy_pickle::parse_numpy_pickle(&p, &bytes[..cut]).is_err());
    }
}

fn png_file(
    d: &Path,
    name: &str,
    w: u32,
    h: u32,
    c: png::ColorType,
    depth: png::BitDepth,
    s: &[u8],
) -> PathBuf {
    write(d, name, &png_images::encode_png(w, h, c, depth, s).unwrap())
}

#[test]
fn png_every_colour_type_and_depth() {
    use png::{BitDepth::*, ColorType::*};
    let d = tempfile::tempdir().unwrap();
    // grey 8-bit 2x3
    let g: Vec<u8> = vec![0, 51, 102, 153, 204, 255];
    let ds = load_path(&png_file(d.path(), "g.png", 3, 2, Grayscale, Eight, &g)).unwrap();
    assert_eq!((ds.shape, to_u8(&ds.images)), ([1, 2, 3], g.clone()));
    // grey+alpha: alpha dropped
    let ga: Vec<u8> = g.iter().flat_map(|&v| [v, 7]).collect();
    let ds = load_path(&png_file(
        d.path(),
        "ga.png",
        3,
        2,
        GrayscaleAlpha,
        Eight,
        &ga,
    ))
    .unwrap();
    assert_eq!(to_u8(&ds.images), g);
    // RGB → CHW planes
    let rgb: Vec<u8> = vec![10, 20, 30, 40, 50, 60];
    let ds = load_path(&png_file(d.path(), "rgb.png", 2, 1, Rgb, Eight, &rgb)).unwrap();
    assert_eq!(
        (ds.shape, to_u8(&ds.images)),
        ([3, 1, 2], vec![10, 40, 20, 50, 30, 60])
    );
    // RGBA
    let rgba: Vec<u8> = vec![10, 20, 30, 99, 40, 50, 60, 99];
    let ds = load_path(&png_file(d.path(), "rgba.png", 2, 1, Rgba, Eight, &rgba)).unwrap();
    assert_eq!(to_u8(&ds.images), vec![10, 40, 20, 50, 30, 60]);
    // 16-bit grey: /65535 exactly
    let g16: Vec<u8> = [0u16, 1, 65535]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let ds = load_path(&png_file(
        d.path(),
        "g16.png",
        3,
        1,
        Grayscale,
        Sixteen,
        &g16,
    ))
    .unwrap();
    assert_eq!(ds.images, vec![0.0, 1.0 / 65535.0, 1.0]);
    // 16-bit RGBA
    let c16: Vec<u8> = [65535u16, 0, 32768, 1]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let ds = load_path(&png_file(d.path(), "c16.png", 1, 1, Rgba, Sixteen, &c16)).unwrap();
    assert_eq!(ds.images, vec![1.0, 0.0, 32768.0 / 65535.0]);
}

#[test]
fn png_folders_and_defects() {
    use png::{BitDepth::Eight, ColorType::Grayscale};
    let d = tempfile::tempdir().unwrap();
    for (cls, vals) in [("cat", [1u8, 2]), ("dog", [3, 4])] {
        let sub = d.path().join("classes").join(cls);
        std::fs::create_dir_all(&sub).unwrap();
        for (i, v) in vals.iter().enumerate() {
            png_file(&sub, &format!("{i}.png"), 1, 1, Grayscale, Eight, &[*v]);
        }
    }
    let ds = load_path(&d.path().join("classes")).unwrap();
    assert_eq!(ds.labels, vec![0, 0, 1, 1]);
    assert_eq!(to_u8(&ds.images), vec![1, 2, 3, 4]);
    // flat folder: unlabelled
    let flat = d.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    png_file(&flat, "a.png", 2, 1, Grayscale, Eight, &[9, 8]);
    png_file(&flat, "b.png", 2, 1, Grayscale, Eight, &[7, 6]);
    let ds = load_path(&flat).unwrap();
    assert_eq!((ds.len(), ds.labels[0]), (2, -1));
    // size mismatch inside a folder
    let c = png_file(&flat, "c.png", 1, 1, Grayscale, Eight, &[5]);
    assert_bad_file(load_path(&flat), &c, "earlier images");
    // corrupt PNG (valid signature, garbage after) and an empty one
    let good = png_images::encode_png(2, 2, Grayscale, Eight, &[1, 2, 3, 4]).unwrap();
    let p = write(d.path(), "bad.png", &good[..good.len() / 2]);
    assert_bad_file(load_path(&p), &p, "not a valid PNG");
    let p = write(d.path(), "empty.png", &[]);
    assert_bad_file(png_images::read_png(&p), &p, "empty");
    let empty_dir = d.path().join("none");
    std::fs::create_dir_all(&empty_dir).unwrap();
    assert_bad_file(load_path(&empty_dir), &empty_dir, "no .png");
}

#[test]
fn cifar10_and_100_round_trip_and_wrong_length() {
    let d = tempfile::tempdir().unwrap();
    let mut c10 = Vec::new();
    for (label, v) in [(3u8, 10u8), (9, 200)] {
        c10.push(label);
        c10.extend((0..3072).map(|i| v.wrapping_add((i % 7) as u8)));
    }
    let p = write(d.path(), "data_batch_1.bin", &c10);
    let ds = load_path(&p).unwrap();
    assert_eq!((ds.shape, ds.labels.clone()), ([3, 32, 32], vec![3, 9]));
    assert_eq!(to_u8(&ds.images[..3072]), c10[1..3073].to_vec());
    let mut c100 = Vec::new();
    for (coarse, fine) in [(19u8, 99u8), (0, 42)] {
        c100.extend([coarse, fine]);
        c100.extend(std::iter::repeat_n(77u8, 3072));
    }
    let p = write(d.path(), "test.bin", &c100);
    let ds = load_path(&p).unwrap();
    assert_eq!(ds.labels, vec![99, 42]);
    let p = write(d.path(), "short.bin", &c10[..c10.len() - 5]);
    assert_bad_file(load_path(&p), &p, "not a whole number of CIFAR records");
    let mut badlab = c10.clone();
    badlab[0] = 10;
    let p = write(d.path(), "cifar10_bad.bin", &badlab);
    assert_bad_file(cifar::read_cifar(&p), &p, "label 10");
    let p = write(d.path(), "e.bin", &[]);
    assert_bad_file(load_path(&p), &p, "empty");
}

#[test]
fn csv_u8_float_header_and_defects() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "u8.csv",
        b"p0,p1,p2,p3,label\n0,51,102,255,3\n255,0,0,1,7\n",
    );
    let ds = load_path(&p).unwrap();
    assert_eq!((ds.shape, ds.labels.clone()), ([1, 2, 2], vec![3, 7]));
    assert_eq!(to_u8(&ds.images), vec![0, 51, 102, 255, 255, 0, 0, 1]);
    let p = write(d.path(), "f.csv.gz", &gz(b"0.0,0.25,0.5,1,-1\n"));
    let ds = load_path(&p).unwrap();
    assert_eq!(
        (ds.images.clone(), ds.labels.clone()),
        (vec![0.0, 0.25, 0.5, 1.0], vec![-1])
    );
    let (im, _) =
        csv_pixels::parse_csv_pixels(Path::new("x.csv"), b"1,2,3,4,5,6,7,8,9,10,11,12,0\n")
            .unwrap();
    assert_eq!(im.shape, [3, 2, 2]);
    let p = write(d.path(), "short.csv", b"0,1,2,3,1\n0,1,2,1\n");
    assert_bad_file(load_path(&p), &p, "line 2: 4 fields");
    let p = write(d.path(), "nan.csv", b"0,x,2,3,1\n");
    assert_bad_file(load_path(&p), &p, "not an integer 0-255");
    let p = write(d.path(), "fnan.csv", b"0.5,nan,0.1,0.2,1\n");
    assert_bad_file(load_path(&p), &p, "not finite");
    let p = write(d.path(), "big.csv", b"0,1,2,256,1\n");
    assert_bad_file(load_path(&p), &p, "not an integer 0-255");
    let p = write(d.path(), "frange.csv", b"0.5,1.5,0.1,0.2,1\n");
    assert_bad_file(load_path(&p), &p, "outside [0,1]");
    let p = write(d.path(), "lab.csv", b"0,1,2,3,x\n");
    assert_bad_file(load_path(&p), &p, "label");
    let p = write(d.path(), "cols.csv", b"0,1,2,3,4,1\n");
    assert_bad_file(load_path(&p), &p, "5 pixel columns");
    let p = write(d.path(), "empty.csv", b"");
    assert_bad_file(load_path(&p), &p, "empty");
    let p = write(d.path(), "hdr.csv", b"a,b,c,d,label\n");
    assert_bad_file(load_path(&p), &p, "no data rows");
}

#[test]
fn unknown_format_and_missing_file() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "x.txt", b"hello");
    assert_bad_file(load_path(&p), &p, "unrecognised format");
    let missing = d.path().join("nope.npy");
    assert!(matches!(load_path(&missing), Err(Error::Io { .. })));
}
