//! `index.html`: the report as one self-contained HTML5 page (UTF-8, no scripts, no external
//! CSS, fonts or images) in an XHTML-compatible serialisation, so an XML parser reads it too.
//! Sections mirror `report.md` (summary: what the verifications found, verdicts and the headline
//! figure; conventions, runs, the verification table, one section per run kind with its table and
//! its figures, inlined SVG); every number links to its run's `manifest.json` and every row to
//! the CSV it was read from. Every string from a CSV or manifest is escaped.

use super::discover::{Run, RunKind};
use super::latex::{Fmt, spec};
use super::markdown::{conventions, heading, rel_link, show};
use super::plots::PlotFile;
use super::summary::Summary;
use super::tables::SummaryTable;
use crate::error::{Error, Result};
use crate::evidence::Manifest;
use std::path::Path;

/// The page's style sheet (no `<`, `>` or `&`, so it is plain XML text).
const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:0.2em 0.5em;text-align:right;vertical-align:top}\
th.t,td.t{text-align:left}\
code{font-size:0.9em;overflow-wrap:anywhere}\
figure{margin:1em 0}\
figure svg,figure img{max-width:100%;height:auto;border:1px solid #eee}\
header p{margin:0.2em 0}\
td.n{white-space:nowrap}\
td.supported{color:#1a7f37}\
td.contradicted{color:#b42318}";

/// SVG elements an inlined figure may contain (what plotters writes); anything else is shown
/// through `<img>` instead, where a browser runs no script.
const SVG_ELEMENTS: [&str; 9] = [
    "svg", "g", "rect", "line", "polyline", "polygon", "circle", "path", "text",
];

/// Escapes `&`, `<`, `>`, `"` and `'` (text and attribute values alike).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A shell-like rendering of a command line: arguments with spaces or quotes are single-quoted.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The SVG at `path` for inlining: its `<svg …>…</svg>` text, or `None` when it holds an element
/// outside [`SVG_ELEMENTS`] (or a processing instruction, comment or entity declaration).
pub fn inline_svg(path: &Path) -> Result<Option<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let Some(start) = text.find("<svg") else {
        return Ok(None);
    };
    let body = text[start..].trim_end();
    for (i, _) in body.match_indices('<') {
        let name: String = body[i + 1..]
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !SVG_ELEMENTS.contains(&name.as_str()) {
            return Ok(None);
        }
    }
    if !body.ends_with("</svg>") {
        return Ok(None);
    }
    Ok(Some(body.to_string()))
}

/// `<a href="…">text</a>` with both parts escaped.
pub(super) fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
}

fn section_id(kind: RunKind) -> String {
    format!("kind-{}", kind.name())
}

/// The text of `index.html` in `out`, which already holds `tables/`, `latex/` and `plots/`;
/// `made_by` is the report's own provenance (version, git state, command line).
pub fn render(
    out: &Path,
    runs: &[Run],
    tables: &[SummaryTable],
    plots: &[PlotFile],
    made_by: &Manifest,
    summary: &Summary,
    claims_paths: &[std::path::PathBuf],
) -> Result<String> {
    let mut o = String::from(
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>oodcert report</title>\n",
    );
    o.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    o.push_str(&header(made_by, runs.len()));
    o.push_str(&super::summary::html(out, runs, summary, claims_paths)?);
    o.push_str("<nav><p>");
    let mut nav = vec![link("#conventions", "Conventions"), link("#runs", "Runs")];
    let verified = &summary.verifications;
    if !verified.is_empty() {
        nav.push(link(
            &format!("#{}", super::verification::SECTION_ID),
            "Verification by attack",
        ));
    }
    for t in tables {
        nav.push(link(&format!("#{}", section_id(t.kind)), heading(t.kind)));
    }
    o.push_str(&nav.join(" · "));
    o.push_str("</p></nav>\n");
    o.push_str("<section id=\"conventions\">\n<h2>Conventions</h2>\n<ul>\n");
    for c in conventions(runs) {
        o.push_str(&format!("<li>{}</li>\n", escape(&c)));
    }
    o.push_str("</ul>\n</section>\n");
    o.push_str(&runs_table(out, runs)?);
    o.push_str(&super::verification::html(out, verified, runs)?);
    for t in tables {
        o.push_str(&kind_section(out, runs, t, plots)?);
    }
    o.push_str("</body>\n</html>\n");
    Ok(o)
}

fn header(m: &Manifest, n_runs: usize) -> String {
    let dirty = if m.git_dirty {
        " (uncommitted changes)"
    } else {
        ""
    };
    let cwd = m
        .cwd
        .as_deref()
        .map_or(String::new(), |c| format!(" in <code>{}</code>", escape(c)));
    format!(
        "<header>\n<h1>oodcert report</h1>\n<p>oodcert {} · git revision <code>{}</code>{dirty}</p>\n<p>Made by <code>{}</code>{cwd}</p>\n<p>{n_runs} runs. Every number links to the <code>manifest.json</code> of the run it came from; the <em>source</em> column links the CSV it was read from. Full tables: <code>tables/</code> (CSV), <code>latex/</code> (booktabs); figures also as SVG and PNG under <code>plots/</code>.</p>\n</header>\n",
        escape(&m.oodcert_version),
        escape(&m.git_revision),
        escape(&shell_words(&m.argv)),
    )
}

fn runs_table(out: &Path, runs: &[Run]) -> Result<String> {
    let mut o = String::from(
        "<section id=\"runs\">\n<h2>Runs</h2>\n<table>\n<thead><tr><th class=\"t\">run</th><th class=\"t\">kind</th><th class=\"t\">folder</th><th class=\"t\">manifest</th><th class=\"t\">manifest SHA-256</th><th class=\"t\">git revision</th><th class=\"t\">dirty</th><th class=\"t\">oodcert</th></tr></thead>\n<tbody>\n",
    );
    let nr = "not recorded";
    for r in runs {
        o.push_str(&format!(
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\"><code>{}</code></td><td class=\"t\">{}</td><td class=\"t\"><code>{}</code></td><td class=\"t\"><code>{}</code></td><td class=\"t\">{}</td><td class=\"t\">{}</td></tr>\n",
            escape(&r.label),
            r.kind.name(),
            escape(&r.dir.display().to_string()),
            link(&rel_link(out, &r.manifest_path())?, "manifest.json"),
            escape(&r.manifest_sha256),
            escape(r.git_revision.as_deref().unwrap_or(nr)),
            r.git_dirty.map_or(nr.to_string(), |d| d.to_string()),
            escape(r.oodcert_version.as_deref().unwrap_or(nr)),
        ));
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
    Ok(o)
}

fn kind_section(out: &Path, runs: &[Run], t: &SummaryTable, plots: &[PlotFile]) -> Result<String> {
    let name = t.kind.name();
    let mut o = format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n<p>Full table: {} · LaTeX: {}</p>\n<table>\n<thead><tr>",
        section_id(t.kind),
        escape(heading(t.kind)),
        link(
            &format!("tables/{name}_summary.csv"),
            &format!("{name}_summary.csv")
        ),
        link(
            &format!("latex/{name}_summary.tex"),
            &format!("{name}_summary.tex")
        ),
    );
    let (cols, _) = spec(t.kind);
    let idx: Vec<usize> = cols.iter().map(|c| t.col(c.0)).collect::<Result<_>>()?;
    for c in &cols {
        let class = if c.2 == Fmt::Text { " class=\"t\"" } else { "" };
        o.push_str(&format!("<th{class}>{}</th>", escape(c.0)));
    }
    o.push_str("<th class=\"t\">source</th></tr></thead>\n<tbody>\n");
    for row in &t.rows {
        let run = runs
            .get(row.run)
            .ok_or_else(|| Error::Internal("summary row of an unknown run".into()))?;
        let manifest = rel_link(out, &run.manifest_path())?;
        let src = rel_link(out, &row.source)?;
        o.push_str("<tr>");
        for (c, &i) in cols.iter().zip(&idx) {
            let raw = row.cells.get(i).map_or("", String::as_str);
            let numeric = c.2 != Fmt::Text && raw.parse::<f64>().is_ok();
            if numeric {
                o.push_str(&format!("<td>{}</td>", link(&manifest, &show(raw, c.2))));
            } else {
                o.push_str(&format!("<td class=\"t\">{}</td>", escape(raw)));
            }
        }
        let file = row
            .source
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned());
        o.push_str(&format!(
            "<td class=\"t\">{}</td></tr>\n",
            link(&src, &file)
        ));
    }
    o.push_str("</tbody>\n</table>\n");
    for p in plots
        .iter()
        .filter(|p| p.runs.first().and_then(|&i| runs.get(i)).map(|r| r.kind) == Some(t.kind))
    {
        o.push_str(&figure(out, runs, p)?);
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A `<figure>` with the inlined SVG (or an `<img>`), its title and links to its sources.
pub(super) fn figure(out: &Path, runs: &[Run], p: &PlotFile) -> Result<String> {
    let svg = format!("{}.svg", p.stem);
    let body = match inline_svg(&out.join(&svg))? {
        Some(s) => s,
        None => format!(
            "<img src=\"{}\" alt=\"{}\"/>",
            escape(&svg),
            escape(&p.title)
        ),
    };
    let mut src = Vec::new();
    for (label, file, s) in p.labelled_sources(runs) {
        src.push(link(&rel_link(out, s)?, &format!("{label} {file}")));
    }
    Ok(format!(
        "<figure>\n{body}\n<figcaption>{} · {} · {} · from {}</figcaption>\n</figure>\n",
        escape(&p.title),
        link(&svg, "SVG"),
        link(&format!("{}.png", p.stem), "PNG"),
        src.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes_commands() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let argv: Vec<String> = ["oodcert", "report", "--out", "a b", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(shell_words(&argv), "oodcert report --out 'a b' 'it'\\''s'");
    }

    #[test]
    fn inlines_plotters_svg_but_not_scripts() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("ok.svg");
        std::fs::write(
            &ok,
            "<svg width=\"1\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect x=\"0\"/>\n<text>a &lt;b&gt;</text>\n</svg>\n",
        )
        .unwrap();
        assert!(inline_svg(&ok).unwrap().unwrap().starts_with("<svg width"));
        for bad in [
            "<svg><script>alert(1)</script></svg>",
            "<svg><foreignObject/></svg>",
            "<svg><!-- c --></svg>",
            "<svg><rect/>",
        ] {
            std::fs::write(&ok, bad).unwrap();
            assert_eq!(inline_svg(&ok).unwrap(), None, "{bad}");
        }
    }
}
