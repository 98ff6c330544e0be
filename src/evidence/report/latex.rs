//! LaTeX tables (booktabs `tabular`, ready to `\input`): one row per summary-table row, plain
//! number formatting (no siunitx), escaped text, and the best value per column in bold within
//! each group (e.g. each OOD set).

use super::discover::RunKind;
use super::tables::SummaryTable;
use crate::error::Result;

/// How a column's cells are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// Escaped text.
    Text,
    /// An integer count.
    Int,
    /// A number with 4 significant digits (scientific outside [1e-3, 1e5)).
    Num,
    /// A rate in [0, 1] printed as a percentage with 2 decimals.
    Pct,
}

/// Which value of a column is best (printed in bold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Best {
    /// No bold.
    None,
    /// Smallest is best.
    Min,
    /// Largest is best.
    Max,
}

/// One printed column: summary column, LaTeX header, format and direction.
pub type ColSpec = (&'static str, &'static str, Fmt, Best);

/// The printed columns of a kind's table, and the column whose equal values form a bold group.
pub fn spec(kind: RunKind) -> (Vec<ColSpec>, Option<&'static str>) {
    use Best::*;
    use Fmt::*;
    match kind {
        RunKind::Train => (
            vec![
                ("run", "Run", Text, None),
                ("step", "Steps", Int, None),
                ("loss", "Loss", Num, None),
                ("ce", "CE", Num, None),
                ("acc", "Batch acc. (\\%)", Pct, None),
                ("grad_norm_in", "$\\|\\nabla_x S\\|$ ID", Num, None),
                ("grad_norm_aux", "$\\|\\nabla_x S\\|$ aux", Num, None),
            ],
            Option::None,
        ),
        RunKind::Eval => (
            vec![
                ("run", "Run", Text, None),
                ("ood", "OOD set", Text, None),
                ("fpr95", "FPR95 (\\%)", Pct, Min),
                ("auroc", "AUROC (\\%)", Pct, Max),
                ("aupr_in", "AUPR-In (\\%)", Pct, Max),
                ("aupr_out", "AUPR-Out (\\%)", Pct, Max),
                ("id_accuracy", "ID acc. (\\%)", Pct, Max),
            ],
            Some("ood"),
        ),
        RunKind::Certify => (
            vec![
                ("run", "Run", Text, None),
                ("certificate", "Certificate", Text, None),
                ("sigma", "$\\sigma$", Num, None),
                ("certified_id_rate_r0", "Cert. ID (\\%)", Pct, Max),
                ("certified_ood_rate_r0", "Cert. OOD (\\%)", Pct, Max),
                ("guaranteed_fpr95_r0", "GFPR95 (\\%)", Pct, Min),
                ("guaranteed_auroc_r0", "GAUROC (\\%)", Pct, Max),
                ("radius_half_id", "$r_{1/2}$ ID", Num, Max),
                ("radius_half_ood", "$r_{1/2}$ OOD", Num, Max),
            ],
            Some("certificate"),
        ),
        RunKind::Guaranteed => (
            vec![
                ("run", "Run", Text, None),
                ("norm", "Norm", Text, None),
                ("eps", "$\\varepsilon$", Num, None),
                ("ood", "OOD set", Text, None),
                ("variant", "ID scored by", Text, None),
                ("auroc", "GAUROC (\\%)", Pct, None),
                ("fpr95", "GFPR95 (\\%)", Pct, None),
            ],
            Option::None,
        ),
        RunKind::Lipschitz => (
            vec![
                ("run", "Run", Text, None),
                ("ball", "Ball", Text, None),
                ("eps", "$\\varepsilon$", Num, None),
                ("quantity", "Quantity", Text, None),
                ("n", "$n$", Int, None),
                ("mean", "Mean", Num, None),
                ("median", "Median", Num, None),
            ],
            Option::None,
        ),
    }
}

/// Escapes LaTeX special characters (and maps the few non-ASCII symbols the runs use).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => o.push_str("\\textbackslash{}"),
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                o.push('\\');
                o.push(ch);
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            '|' => o.push_str("\\textbar{}"),
            '<' => o.push_str("\\textless{}"),
            '>' => o.push_str("\\textgreater{}"),
            '∩' => o.push_str("$\\cap$"),
            '∞' => o.push_str("$\\infty$"),
            '‖' => o.push_str("$\\|$"),
            '∇' => o.push_str("$\\nabla$"),
            c if c.is_ascii() => o.push(c),
            _ => o.push('?'),
        }
    }
    o
}

/// A number with 4 significant digits; scientific (`$m\times10^{e}$`) outside [1e-3, 1e5).
pub fn num(x: f64) -> String {
    if x.is_nan() {
        return "--".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "$\\infty$" } else { "$-\\infty$" }.into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if (1e-3..1e5).contains(&a) {
        let d = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.d$}")
    } else {
        let s = format!("{x:.3e}");
        match s.split_once('e') {
            Some((m, e)) => format!("${m}\\times10^{{{e}}}$"),
            Option::None => s,
        }
    }
}

fn cell_text(raw: &str, fmt: Fmt) -> String {
    if raw.is_empty() {
        return if fmt == Fmt::Text {
            String::new()
        } else {
            "--".into()
        };
    }
    match (fmt, raw.parse::<f64>().ok()) {
        (Fmt::Text, _) | (_, Option::None) => escape(raw),
        (Fmt::Int, Some(x)) if x.is_finite() && x.fract() == 0.0 => format!("{x:.0}"),
        (Fmt::Pct, Some(x)) if x.is_finite() => format!("{:.2}", 100.0 * x),
        (_, Some(x)) => num(x),
    }
}

/// The `tabular` for `table` (one LaTeX row per summary row), ending with a newline.
pub fn render(table: &SummaryTable) -> Result<String> {
    let (cols, group) = spec(table.kind);
    let idx: Vec<usize> = cols.iter().map(|c| table.col(c.0)).collect::<Result<_>>()?;
    let gidx = group.map(|g| table.col(g)).transpose()?;
    let n = table.rows.len();
    let mut text: Vec<Vec<String>> = (0..n)
        .map(|r| {
            cols.iter()
                .zip(&idx)
                .map(|(c, &i)| cell_text(&table.rows[r].cells[i], c.2))
                .collect()
        })
        .collect();
    // Bold the best printed value of each column within each group of rows.
    for (k, (c, &i)) in cols.iter().zip(&idx).enumerate() {
        if c.3 == Best::None {
            continue;
        }
        let key = |r: usize| gidx.map(|g| table.rows[r].cells[g].clone());
        let mut groups: Vec<Option<String>> = (0..n).map(key).collect();
        groups.dedup();
        groups.sort();
        groups.dedup();
        for g in groups {
            let members: Vec<usize> = (0..n).filter(|&r| key(r) == g).collect();
            let vals: Vec<(usize, f64)> = members
                .iter()
                .filter_map(|&r| {
                    let v = table.rows[r].cells[i].parse::<f64>().ok()?;
                    v.is_finite().then_some((r, v))
                })
                .collect();
            if members.len() < 2 || vals.is_empty() {
                continue;
            }
            let best = vals.iter().map(|v| v.1).fold(
                if c.3 == Best::Min {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                },
                |m, v| {
                    if c.3 == Best::Min { m.min(v) } else { m.max(v) }
                },
            );
            let best_text = cell_text(&crate::evidence::report::tables::fmt_num(best), c.2);
            for (r, _) in vals {
                if text[r][k] == best_text {
                    text[r][k] = format!("\\textbf{{{}}}", text[r][k]);
                }
            }
        }
    }
    let align: String = cols
        .iter()
        .map(|c| if c.2 == Fmt::Text { 'l' } else { 'r' })
        .collect();
    let mut o = String::new();
    let bold = if cols.iter().all(|c| c.3 == Best::None) {
        String::new()
    } else {
        let within = group.map_or(String::new(), |g| format!(" within each {}", escape(g)));
        format!("; best per column in bold{within}")
    };
    o.push_str(&format!(
        "% oodcert report: {} runs ({} rows); rates in percent{bold}.\n",
        table.kind.name(),
        n,
    ));
    o.push_str(&format!("\\begin{{tabular}}{{{align}}}\n\\toprule\n"));
    let head: Vec<&str> = cols.iter().map(|c| c.1).collect();
    o.push_str(&format!("{} \\\\\n\\midrule\n", head.join(" & ")));
    for row in &text {
        o.push_str(&format!("{} \\\\\n", row.join(" & ")));
    }
    o.push_str("\\bottomrule\n\\end{tabular}\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(escape("a_b|c>d%"), "a\\_b\\textbar{}c\\textgreater{}d\\%");
        assert_eq!(num(0.012345), "0.01235");
        assert_eq!(num(123.456), "123.5");
        assert_eq!(num(2.5e-5), "$2.500\\times10^{-5}$");
        assert_eq!(num(f64::NAN), "--");
        assert_eq!(cell_text("0.0388", Fmt::Pct), "3.88");
        assert_eq!(cell_text("", Fmt::Num), "--");
    }

    #[test]
    fn bolds_the_best_value_within_each_group() {
        use super::super::tables::{EVAL_COLUMNS, PROVENANCE, SummaryRow};
        let header: Vec<String> = PROVENANCE
            .iter()
            .chain(&EVAL_COLUMNS)
            .map(|s| s.to_string())
            .collect();
        let row = |run: &str, ood: &str, fpr: &str, auroc: &str| SummaryRow {
            run: 0,
            source: "m.csv".into(),
            cells: [
                run, "p", "h", ood, fpr, auroc, "0.85", "0.8", "0.1", "0.95", "10", "10", "energy",
                "first", "0.95",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let t = SummaryTable {
            kind: RunKind::Eval,
            header,
            rows: vec![
                row("a", "x", "0.10", "0.90"),
                row("b", "x", "0.20", "0.95"),
                row("a", "y", "0.50", "0.60"),
                row("b", "y", "0.40", "0.70"),
            ],
        };
        let tex = render(&t).unwrap();
        let rows: Vec<&str> = tex
            .lines()
            .filter(|l| l.ends_with("\\\\") && !l.starts_with("Run"))
            .collect();
        assert_eq!(rows.len(), 4);
        assert!(
            rows[0].contains("\\textbf{10.00}") && !rows[0].contains("\\textbf{90.00}"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].contains("\\textbf{95.00}") && !rows[1].contains("\\textbf{20.00}"),
            "{}",
            rows[1]
        );
        assert!(
            rows[3].contains("\\textbf{40.00}") && rows[3].contains("\\textbf{70.00}"),
            "{}",
            rows[3]
        );
        // ID accuracy ties within each group: both bold.
        assert!(
            rows.iter().all(|r| r.contains("\\textbf{95.00} \\\\")),
            "{tex}"
        );
    }
}
