//! The report's record of `oodcert verify`: for every lipschitz, certify or guaranteed run whose
//! folder holds a `verify_summary.csv`, how many certificates were attacked inside their radii,
//! how many fell (against the α budget of smoothing certificates), and whether that verification
//! is of the run now in the folder — the SHA-256 of the certificate file it attacked against the
//! file's current one (a run re-written into the same folder leaves the old verification behind).

use super::discover::{Run, RunKind};
use super::html::{escape as html_escape, link};
use super::latex::{Fmt, escape as tex_escape, num};
use super::markdown::{cell, rel_link, show};
use super::tables::{PROVENANCE, fmt_num};
use crate::error::{Error, Result};
use crate::evidence::{CsvTable, sha256_file, write_csv_atomic};
use crate::verify::SOURCES;
use std::path::{Path, PathBuf};

/// The file `oodcert verify` writes beside the run it checked.
pub const FILE: &str = "verify_summary.csv";

/// Whether a verification is of the run now in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The attacked certificate file is the run's current one (same SHA-256).
    Current,
    /// The run's certificate file changed (or went away) since it was verified.
    Stale,
    /// Written by an `oodcert verify` that did not record the attacked file's SHA-256.
    NotRecorded,
}

impl Status {
    /// The word in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Status::Current => "current",
            Status::Stale => "stale",
            Status::NotRecorded => "not recorded",
        }
    }
}

/// One run's verification, as read from its `verify_summary.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// Index of the run in the discovered run list.
    pub run: usize,
    /// The `verify_summary.csv` it was read from.
    pub path: PathBuf,
    pub certificates: u64,
    pub violations: u64,
    /// Violations tolerated: 0 for deterministic certificates, the α budget for smoothing.
    pub allowed: u64,
    /// Median attack radius / certified radius where an escalated attack changed the decision.
    pub median_ratio: f64,
    /// Certificates whose decision an attack changed beyond the radius (≤ 8×).
    pub changed: u64,
    /// PGD steps and restarts, when recorded.
    pub steps: Option<u64>,
    pub restarts: Option<u64>,
    pub status: Status,
}

impl Verification {
    /// Whether the certificates withstood the attacks.
    pub fn passed(&self) -> bool {
        self.violations <= self.allowed
    }
}

/// Columns of the report's `tables/verify_summary.csv` after [`PROVENANCE`].
pub const COLUMNS: [&str; 9] = [
    "certificates",
    "violations",
    "allowed_violations",
    "passed",
    "median_attack_to_certified_radius",
    "decisions_changed_by_attack",
    "attack_steps",
    "attack_restarts",
    "status",
];

/// The largest count read (far above any run's; sums of counts cannot overflow).
const MAX_COUNT: u64 = 1 << 40;

/// The verifications of the runs that have one, in run order. A malformed `verify_summary.csv`
/// is a `BadFile` error naming it.
pub fn collect(runs: &[Run]) -> Result<Vec<Verification>> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let checkable = matches!(
            run.kind,
            RunKind::Lipschitz | RunKind::Certify | RunKind::Guaranteed
        );
        let path = run.dir.join(FILE);
        if checkable && path.is_file() {
            out.push(read(i, run, &path)?);
        }
    }
    Ok(out)
}

fn read(i: usize, run: &Run, path: &Path) -> Result<Verification> {
    let t = CsvTable::read(path)?;
    if t.rows.len() != 1 {
        return Err(Error::bad_file(
            path,
            format!(
                "expected one summary row, found {}: re-run `oodcert verify --run {}`",
                t.rows.len(),
                run.dir.display()
            ),
        ));
    }
    let count = |name: &str| -> Result<u64> {
        let v = t.cell(0, t.col(name)?);
        match v.parse::<u64>() {
            Ok(n) if n <= MAX_COUNT => Ok(n),
            _ => Err(Error::bad_file(
                path,
                format!("column '{name}': '{v}' is not a count (0 to {MAX_COUNT})"),
            )),
        }
    };
    let optional = |name: &str| -> Result<Option<u64>> {
        if t.has(name) && !t.cell(0, t.col(name)?).is_empty() {
            count(name).map(Some)
        } else {
            Ok(None)
        }
    };
    let recorded = |name: &str| -> Result<Option<&str>> {
        if !t.has(name) {
            return Ok(None);
        }
        let v = t.cell(0, t.col(name)?);
        Ok((!v.is_empty()).then_some(v))
    };
    let status = match (recorded("source")?, recorded("source_sha256")?) {
        (Some(source), Some(sha)) => {
            // Only the run's own certificate files: a name from a CSV never becomes a path
            // outside the run folder.
            if !SOURCES.contains(&source) {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "column 'source': '{source}' is not a certificate file ({})",
                        SOURCES.join(", ")
                    ),
                ));
            }
            // The run's own kind of certificate file, as it is now (a hash in either case).
            let f = run.dir.join(source);
            if run.kind.certificate_csv() == Some(source)
                && f.is_file()
                && sha256_file(&f)?.eq_ignore_ascii_case(sha)
            {
                Status::Current
            } else {
                Status::Stale
            }
        }
        _ => Status::NotRecorded,
    };
    // attack radius / certified radius: positive where an attack changed the decision, NaN where
    // none did.
    let median_ratio = t.num(0, t.col("median_attack_to_certified_radius")?)?;
    if !(median_ratio.is_nan() || (median_ratio.is_finite() && median_ratio > 0.0)) {
        return Err(Error::bad_file(
            path,
            format!(
                "column 'median_attack_to_certified_radius': {median_ratio} is not a ratio of radii"
            ),
        ));
    }
    Ok(Verification {
        run: i,
        path: path.to_path_buf(),
        certificates: count("certificates")?,
        violations: count("violations")?,
        allowed: count("allowed_violations")?,
        median_ratio,
        changed: count("decisions_changed_by_attack")?,
        steps: optional("attack_steps")?,
        restarts: optional("attack_restarts")?,
        status,
    })
}

fn run_of<'r>(runs: &'r [Run], v: &Verification) -> Result<&'r Run> {
    runs.get(v.run)
        .ok_or_else(|| Error::Internal("verification of an unknown run".into()))
}

/// The text cells of one row (after the provenance columns), in [`COLUMNS`] order.
fn cells(v: &Verification) -> [String; 9] {
    let opt = |x: Option<u64>| x.map_or(String::new(), |x| x.to_string());
    [
        v.certificates.to_string(),
        v.violations.to_string(),
        v.allowed.to_string(),
        v.passed().to_string(),
        fmt_num(v.median_ratio),
        v.changed.to_string(),
        opt(v.steps),
        opt(v.restarts),
        v.status.name().to_string(),
    ]
}

/// Writes the table as CSV (provenance columns first), atomically.
pub fn write_csv(vs: &[Verification], runs: &[Run], path: &Path) -> Result<()> {
    write_csv_atomic(path, |w| {
        let csv_err = |e: csv::Error| Error::Internal(format!("CSV {}: {e}", path.display()));
        let header: Vec<&str> = PROVENANCE.iter().chain(&COLUMNS).copied().collect();
        w.write_record(&header).map_err(csv_err)?;
        for v in vs {
            let run = run_of(runs, v)?;
            let mut row = vec![
                run.label.clone(),
                run.dir.display().to_string(),
                run.manifest_sha256.clone(),
            ];
            row.extend(cells(v));
            w.write_record(&row).map_err(csv_err)?;
        }
        Ok(())
    })
}

/// The summary's sentence (plain text): how many certificates the current verifications attacked and how
/// many fell; the failed runs by name; stale and unrecorded verifications counted apart. `None`
/// when no run was verified.
pub fn sentence(vs: &[Verification], runs: &[Run]) -> Result<Option<String>> {
    if vs.is_empty() {
        return Ok(None);
    }
    let counted: Vec<&Verification> = vs.iter().filter(|v| v.status != Status::Stale).collect();
    let sum = |f: fn(&Verification) -> u64| counted.iter().map(|v| f(v)).sum::<u64>();
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut s = if counted.is_empty() {
        "No current verification.".to_string()
    } else {
        let mut s = format!(
            "oodcert verify attacked {} inside their certified radii ({}): {} violated",
            plural(sum(|v| v.certificates), "certificate", "certificates"),
            plural(counted.len() as u64, "run", "runs"),
            sum(|v| v.violations)
        );
        let allowed = sum(|v| v.allowed);
        if allowed > 0 {
            s.push_str(&format!(
                " ({allowed} allowed by the α budget of the randomized-smoothing certificates)"
            ));
        }
        s.push('.');
        s
    };
    let failed: Vec<String> = counted
        .iter()
        .filter(|v| !v.passed())
        .map(|v| {
            Ok(format!(
                "{} ({} of {} violated, {} allowed)",
                run_of(runs, v)?.label,
                v.violations,
                v.certificates,
                v.allowed
            ))
        })
        .collect::<Result<_>>()?;
    if !failed.is_empty() {
        s.push_str(&format!(" FAILED: {}.", failed.join(", ")));
    }
    let n = |st: Status| vs.iter().filter(|v| v.status == st).count();
    if n(Status::Stale) > 0 {
        s.push_str(&format!(
            " Not counted: {} of a certificate file that has changed since (stale: re-run oodcert verify).",
            plural(n(Status::Stale) as u64, "verification", "verifications")
        ));
    }
    if n(Status::NotRecorded) > 0 {
        s.push_str(&format!(
            " Counted, but without a record of the certificate file they attacked (so possibly of an earlier run): {}.",
            plural(n(Status::NotRecorded) as u64, "verification", "verifications")
        ));
    }
    Ok(Some(s))
}

/// Table headings, shared by the Markdown, HTML and LaTeX tables.
const HEAD: [&str; 8] = [
    "run",
    "certificates",
    "violated",
    "allowed",
    "passed",
    "median attack / certified radius",
    "attack (PGD steps × restarts)",
    "status",
];

fn attack_text(v: &Verification) -> String {
    match (v.steps, v.restarts) {
        (Some(s), Some(r)) => format!("{s} × {r}"),
        _ => "not recorded".into(),
    }
}

fn ratio_text(v: &Verification) -> String {
    if v.median_ratio.is_finite() {
        show(&fmt_num(v.median_ratio), Fmt::Num)
    } else {
        "—".into()
    }
}

const EXPLAIN: &str = "oodcert verify attacks each certificate it checks with PGD inside the certified radius, from the certified point, and beyond the radius (up to 8×) to see how far an attack has to go (—: no attack changed the decision within 8×). A deterministic certificate (Lipschitz, bound propagation) admits no violation; a randomized-smoothing one holds with probability ≥ 1 − α, so its violations are counted against an α budget. Status: current when the attacked certificate file is the run's file now (same SHA-256); stale when that file has changed since (not counted); not recorded when the verification predates this record (counted; it may be of an earlier run). Only verifications written into the run's folder are found.";

/// The Markdown section (empty when no run was verified).
pub fn markdown(out: &Path, vs: &[Verification], runs: &[Run]) -> Result<String> {
    if vs.is_empty() {
        return Ok(String::new());
    }
    let mut o = format!(
        "\n## Verification by attack\n\n{EXPLAIN}\n\nFull table: [verify_summary.csv](tables/verify_summary.csv) · LaTeX: [verify_summary.tex](latex/verify_summary.tex)\n\n| {} | manifest |\n|{}---|\n",
        HEAD.join(" | "),
        "---|".repeat(HEAD.len())
    );
    for v in vs {
        let run = run_of(runs, v)?;
        let src = rel_link(out, &v.path)?;
        let linked = |t: String| {
            if t.chars().any(|c| c.is_ascii_digit()) {
                format!("[{t}]({src})")
            } else {
                t
            }
        };
        o.push_str(&format!(
            "| {} | [{}]({src}) | [{}]({src}) | [{}]({src}) | {} | {} | {} | {} | [manifest.json]({}) |\n",
            cell(&run.label),
            v.certificates,
            v.violations,
            v.allowed,
            if v.passed() { "yes" } else { "**no**" },
            linked(ratio_text(v)),
            linked(attack_text(v)),
            v.status.name(),
            rel_link(out, &run.manifest_path())?,
        ));
    }
    Ok(o)
}

/// The `<section>` of `index.html` (empty when no run was verified).
pub fn html(out: &Path, vs: &[Verification], runs: &[Run]) -> Result<String> {
    if vs.is_empty() {
        return Ok(String::new());
    }
    let mut o = format!(
        "<section id=\"{}\">\n<h2>Verification by attack</h2>\n<p>{}</p>\n<p>Full table: {} · LaTeX: {}</p>\n<table>\n<thead><tr>",
        SECTION_ID,
        html_escape(EXPLAIN),
        link("tables/verify_summary.csv", "verify_summary.csv"),
        link("latex/verify_summary.tex", "verify_summary.tex"),
    );
    for (k, h) in HEAD.iter().enumerate() {
        let class = if matches!(k, 0 | 4 | 6 | 7) {
            " class=\"t\""
        } else {
            ""
        };
        o.push_str(&format!("<th{class}>{}</th>", html_escape(h)));
    }
    o.push_str("<th class=\"t\">source</th></tr></thead>\n<tbody>\n");
    for v in vs {
        let run = run_of(runs, v)?;
        let src = rel_link(out, &v.path)?;
        let manifest = rel_link(out, &run.manifest_path())?;
        let linked = |t: String| {
            if t.chars().any(|c| c.is_ascii_digit()) {
                link(&manifest, &t)
            } else {
                html_escape(&t)
            }
        };
        let ratio = linked(ratio_text(v));
        let (verdict, class) = if v.passed() {
            ("yes", "supported")
        } else {
            ("no", "contradicted")
        };
        o.push_str(&format!(
            "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"t {class}\">{verdict}</td><td>{ratio}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td></tr>\n",
            html_escape(&run.label),
            link(&manifest, &v.certificates.to_string()),
            link(&manifest, &v.violations.to_string()),
            link(&manifest, &v.allowed.to_string()),
            linked(attack_text(v)),
            html_escape(v.status.name()),
            link(&src, FILE),
        ));
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
    Ok(o)
}

/// The `id` of the HTML section (for the page's navigation).
pub const SECTION_ID: &str = "verification";

/// [`HEAD`] in LaTeX.
const TEX_HEAD: [&str; 8] = [
    "Run",
    "Certificates",
    "Violated",
    "Allowed",
    "Passed",
    "Median attack / certified radius",
    "Attack (steps $\\times$ restarts)",
    "Status",
];

/// The booktabs `tabular` (one row per verified run), ending with a newline.
pub fn latex(vs: &[Verification], runs: &[Run]) -> Result<String> {
    let mut o = format!(
        "% oodcert report: verify ({} rows); certificates attacked inside their radii by oodcert verify.\n\\begin{{tabular}}{{lrrrlrll}}\n\\toprule\n",
        vs.len()
    );
    o.push_str(&format!("{} \\\\\n\\midrule\n", TEX_HEAD.join(" & ")));
    for v in vs {
        let ratio = if v.median_ratio.is_finite() {
            num(v.median_ratio)
        } else {
            "--".into()
        };
        let attack = match (v.steps, v.restarts) {
            (Some(s), Some(r)) => format!("${s}\\times{r}$"),
            _ => "not recorded".into(),
        };
        o.push_str(&format!(
            "{} & {} & {} & {} & {} & {ratio} & {attack} & {} \\\\\n",
            tex_escape(&run_of(runs, v)?.label),
            v.certificates,
            v.violations,
            v.allowed,
            if v.passed() { "yes" } else { "\\textbf{no}" },
            v.status.name(),
        ));
    }
    o.push_str("\\bottomrule\n\\end{tabular}\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::SUMMARY_COLUMNS;

    /// A run folder of `kind` holding `file` (its certificate file) and a manifest.
    fn run(root: &Path, name: &str, kind: RunKind, file: &str) -> Run {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), "{}").unwrap();
        std::fs::write(dir.join(file), "a,b\n1,2\n").unwrap();
        Run::load(&dir, kind, name.into()).unwrap()
    }

    /// `verify_summary.csv` for `run` with the given counts, recording `sha` (None: the old
    /// format without the provenance columns).
    fn verified(run: &Run, counts: [u64; 3], source: &str, sha: Option<&str>) {
        let [n, bad, allowed] = counts;
        let text = match sha {
            Some(sha) => format!(
                "{}\nlipschitz,true,{n},{bad},{allowed},{},2,{n},{source},{sha},40,5,0\n",
                SUMMARY_COLUMNS.join(","),
                bad <= allowed
            ),
            None => format!(
                "{}\nlipschitz,true,{n},{bad},{allowed},{},2,{n}\n",
                SUMMARY_COLUMNS[..8].join(","),
                bad <= allowed
            ),
        };
        std::fs::write(run.dir.join(FILE), text).unwrap();
    }

    fn sha(run: &Run, file: &str) -> String {
        sha256_file(run.dir.join(file)).unwrap()
    }

    /// A verification counts when it recorded the run's current certificate file; one of an
    /// earlier run in the folder is stale and left out of the sentence; unverified runs and runs
    /// of other kinds have no row.
    #[test]
    fn statuses_follow_the_attacked_files_sha256() {
        let d = tempfile::tempdir().unwrap();
        let current = run(d.path(), "current", RunKind::Lipschitz, "lipschitz.csv");
        verified(
            &current,
            [10, 0, 0],
            "lipschitz.csv",
            Some(&sha(&current, "lipschitz.csv")),
        );
        let stale = run(d.path(), "stale", RunKind::Certify, "certify.csv");
        verified(
            &stale,
            [7, 0, 1],
            "certify.csv",
            Some(&sha(&stale, "certify.csv")),
        );
        std::fs::write(stale.dir.join("certify.csv"), "a,b\n1,3\n").unwrap();
        let old = run(d.path(), "old", RunKind::Guaranteed, "bounds.csv");
        verified(&old, [4, 0, 0], "bounds.csv", None);
        let unverified = run(d.path(), "unverified", RunKind::Lipschitz, "lipschitz.csv");
        let train = run(d.path(), "train", RunKind::Train, "train_log.csv");
        verified(&train, [9, 9, 0], "lipschitz.csv", None);
        // A certify run whose folder also holds a verified lipschitz.csv: not its certificates.
        let other = run(d.path(), "other", RunKind::Certify, "certify.csv");
        std::fs::write(other.dir.join("lipschitz.csv"), "x\n1\n").unwrap();
        verified(
            &other,
            [6, 0, 0],
            "lipschitz.csv",
            Some(&sha(&other, "lipschitz.csv")),
        );
        let runs = [current, stale, old, unverified, train, other];
        let vs = collect(&runs).unwrap();
        let got: Vec<(usize, Status)> = vs.iter().map(|v| (v.run, v.status)).collect();
        assert_eq!(
            got,
            [
                (0, Status::Current),
                (1, Status::Stale),
                (2, Status::NotRecorded),
                (5, Status::Stale)
            ]
        );
        assert_eq!((vs[0].steps, vs[0].restarts), (Some(40), Some(5)));
        assert_eq!((vs[2].steps, vs[2].restarts), (None, None));
        let s = sentence(&vs, &runs).unwrap().unwrap();
        assert_eq!(
            s,
            "oodcert verify attacked 14 certificates inside their certified radii (2 runs): 0 violated. \
             Not counted: 2 verifications of a certificate file that has changed since (stale: re-run oodcert verify). \
             Counted, but without a record of the certificate file they attacked (so possibly of an earlier run): 1 verification."
        );
        assert_eq!(sentence(&[], &runs).unwrap(), None);
        // The hash in either case; a recorded file that went away: stale, and nothing counted.
        let own = sha(&runs[0], "lipschitz.csv");
        let text = std::fs::read_to_string(runs[0].dir.join(FILE)).unwrap();
        std::fs::write(
            runs[0].dir.join(FILE),
            text.replace(&own, &own.to_uppercase()),
        )
        .unwrap();
        assert_eq!(collect(&runs).unwrap()[0].status, Status::Current);
        std::fs::remove_file(runs[0].dir.join("lipschitz.csv")).unwrap();
        let vs = collect(&runs[..2]).unwrap();
        assert_eq!(vs[0].status, Status::Stale);
        assert!(
            sentence(&vs, &runs)
                .unwrap()
                .unwrap()
                .starts_with("No current verification. Not counted: 2 verifications")
        );
    }

    /// Violations above the allowance name the run in the sentence and mark the row in every
    /// format.
    #[test]
    fn a_failed_verification_is_named() {
        let d = tempfile::tempdir().unwrap();
        let a = run(d.path(), "smooth_&|<b>", RunKind::Certify, "certify.csv");
        verified(&a, [20, 3, 2], "certify.csv", Some(&sha(&a, "certify.csv")));
        let b = run(d.path(), "lip", RunKind::Lipschitz, "lipschitz.csv");
        verified(
            &b,
            [5, 0, 0],
            "lipschitz.csv",
            Some(&sha(&b, "lipschitz.csv")),
        );
        let runs = [a, b];
        let vs = collect(&runs).unwrap();
        assert_eq!(
            vs.iter().map(Verification::passed).collect::<Vec<_>>(),
            [false, true]
        );
        let s = sentence(&vs, &runs).unwrap().unwrap();
        assert!(s.contains(": 3 violated (2 allowed by the α budget"), "{s}");
        assert!(
            s.ends_with(" FAILED: smooth_&|<b> (3 of 20 violated, 2 allowed)."),
            "{s}"
        );
        // The label escaped in every format.
        let out = d.path();
        let h = html(out, &vs, &runs).unwrap();
        assert!(h.contains("<td class=\"t contradicted\">no</td>"), "{h}");
        assert!(
            h.contains("<td class=\"t\">smooth_&amp;|&lt;b&gt;</td>"),
            "{h}"
        );
        let md = markdown(out, &vs, &runs).unwrap();
        assert!(md.contains("| smooth_&\\|&lt;b> | "), "{md}");
        assert!(md.contains("| **no** |"), "{md}");
        let tex = latex(&vs, &runs).unwrap();
        assert!(tex.contains("\\textbf{no}"), "{tex}");
        assert!(
            tex.contains("smooth\\_\\&\\textbar{}\\textless{}b\\textgreater{} & 20"),
            "{tex}"
        );
    }

    /// A summary with other than one row, a source that is not a certificate file (never a path
    /// outside the run), a count that is not one (or absurdly large: sums cannot overflow), or a
    /// radius ratio that is not positive or NaN: an error naming the file.
    #[test]
    fn malformed_summaries_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let r = run(d.path(), "lip", RunKind::Lipschitz, "lipschitz.csv");
        let runs = [r];
        let path = runs[0].dir.join(FILE);
        let head = SUMMARY_COLUMNS.join(",");
        let row = |certs: &str, source: &str| {
            format!("lipschitz,true,{certs},0,0,true,2,1,{source},00,40,5,0\n")
        };
        let ratio = |r: &str| format!("lipschitz,true,3,0,0,true,{r},1,lipschitz.csv,00,40,5,0\n");
        for (text, needle) in [
            (format!("{head}\n"), "expected one summary row, found 0"),
            (
                format!(
                    "{head}\n{}{}",
                    row("3", "lipschitz.csv"),
                    row("3", "lipschitz.csv")
                ),
                "expected one summary row, found 2",
            ),
            (
                format!("{head}\n{}", row("3", "../../etc/passwd")),
                "is not a certificate file",
            ),
            (
                format!("{head}\n{}", row("1.5", "lipschitz.csv")),
                "is not a count",
            ),
            (
                format!("{head}\n{}", row("-1", "lipschitz.csv")),
                "is not a count",
            ),
            (
                format!("{head}\n{}", row("x", "lipschitz.csv")),
                "is not a count",
            ),
            (
                format!("{head}\n{}", row("20000000000000000000", "lipschitz.csv")),
                "is not a count",
            ),
            (
                format!("{head}\n{}", row("2000000000000", "lipschitz.csv")),
                "is not a count (0 to",
            ),
            (
                format!("{head}\n{}", ratio("-2")),
                "is not a ratio of radii",
            ),
            (
                format!("{head}\n{}", ratio("inf")),
                "is not a ratio of radii",
            ),
            (format!("{head}\n{}", ratio("")), "is not a number"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = collect(&runs).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(FILE), "{needle}: {e}");
        }
    }
}
