//! `oodcert report` over small synthetic run folders of every kind: files exist, numbers match
//! their sources, SVGs are XML, PNGs decode and are not blank, LaTeX is structurally valid (and
//! compiles with pdflatex when installed), Markdown links resolve, output is deterministic, and
//! bad input exits 2 with one line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn manifest(dir: &Path, command: &str, extra: serde_json::Value) {
    let mut m = serde_json::json!({
        "oodcert_version": "0.1.0",
        "git_revision": "0123456789abcdef0123456789abcdef01234567",
        "git_dirty": command == "eval",
        "command": command,
        "config": {},
    });
    if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    write(
        &dir.join("manifest.json"),
        &serde_json::to_string_pretty(&m).unwrap(),
    );
}

/// The eval run's folder name: a space and an ampersand test escaping in links, XML and LaTeX.
const EVAL: &str = "eval x&y";

/// Writes one run of each kind (two train runs) under `root`.
fn synthetic_runs(root: &Path) {
    let t = root.join("train_a");
    manifest(&t, "train", serde_json::json!({}));
    let mut log = String::from(
        "step,epoch,lr,loss,ce,loss_energy,loss_grad,frac_in_masked,frac_aux_masked,grad_norm_in,grad_norm_aux,acc\n",
    );
    for s in 1..=20 {
        let g = 5.0 - 0.1 * s as f64;
        log.push_str(&format!(
            "{},{},0.01,{},{},0.1,0.2,0.5,0.4,{g},{},{}\n",
            s * 10,
            s as f64 / 10.0,
            1.0 / s as f64,
            0.9 / s as f64,
            g / 2.0,
            0.5 + s as f64 / 50.0
        ));
    }
    write(&t.join("train_log.csv"), &log);
    let t = root.join("train_b");
    manifest(&t, "train", serde_json::json!({}));
    write(
        &t.join("train_log.csv"),
        "step,epoch,lr,loss,ce,loss_energy,loss_grad,frac_in_masked,frac_aux_masked,grad_norm_in,grad_norm_aux,acc\n\
         10,0.1,0.01,1.5,1.5,0,0,0,NaN,0.5,NaN,0.6\n20,0.2,0.01,1.0,1.0,0,0,0,NaN,1.5,NaN,0.8\n30,0.3,0.01,0.7,0.7,0,0,0,NaN,2.5,NaN,0.9\n",
    );

    let e = root.join(EVAL);
    manifest(
        &e,
        "eval",
        serde_json::json!({"config": {"convention_text": "ID positive, detector score -S, FPR at the first threshold where TPR >= t"}}),
    );
    write(
        &e.join("metrics.csv"),
        "ood,fpr95,auroc,aupr_in,aupr_out,detection_error,id_accuracy,n_id,n_ood,score,convention,tpr\n\
         noise_gauss:test,0.25,0.9125,0.95,0.8,0.1,0.97,400,300,energy,first,0.95\n\
         lfw:test|bilinear 25x25->28x28,0.0015,0.99875,0.999,0.99,0.01,0.97,400,200,energy,first,0.95\n",
    );
    let mut scores = String::from("dataset,index,label,score,is_id\n");
    for i in 0..400 {
        scores.push_str(&format!(
            "mnist:test,{i},{},{},1\n",
            i % 10,
            -20.0 + (i % 37) as f64 * 0.2
        ));
    }
    for i in 0..300 {
        scores.push_str(&format!(
            "noise_gauss:test,{i},-1,{},0\n",
            -8.0 + (i % 23) as f64 * 0.1
        ));
    }
    for i in 0..200 {
        scores.push_str(&format!(
            "lfw:test|bilinear 25x25->28x28,{i},-1,{},0\n",
            -5.0 + (i % 11) as f64 * 0.1
        ));
    }
    write(&e.join("scores.csv"), &scores);

    let c = root.join("cert");
    manifest(
        &c,
        "certify",
        serde_json::json!({"format": "oodcert-certify/1", "config": {"sigma": 0.25},
            "conventions": ["score: larger = more OOD"]}),
    );
    // ID rate 1, .8, .5, .2, 0 over r = 0..1 step .25 → r½(ID) = 0.5; OOD rate .4 at r=0 → r½ empty.
    let mut curves = String::from(
        "certificate,radius,certified_id_rate,certified_ood_rate,guaranteed_fpr95,guaranteed_auroc\n",
    );
    let id = [1.0, 0.8, 0.5, 0.2, 0.0];
    let ood = [0.4, 0.3, 0.2, 0.1, 0.0];
    for cert in ["detector", "score", "score-hoeffding"] {
        for k in 0..5 {
            curves.push_str(&format!(
                "{cert},{},{},{},{},{}\n",
                k as f64 * 0.25,
                id[k],
                ood[k],
                0.1 * k as f64,
                1.0 - 0.1 * k as f64
            ));
        }
    }
    write(&c.join("curves.csv"), &curves);
    let mut cert = String::from("idx,label,predict,radius,correct,time,dataset,is_id\n");
    for i in 0..5 {
        cert.push_str(&format!("{i},1,1,0.5,1,0,mnist:test,1\n"));
    }
    for i in 0..3 {
        cert.push_str(&format!("{i},-1,0,0.2,1,0,noise:test,0\n"));
    }
    write(&c.join("certify.csv"), &cert);
    // Verified after the run (`oodcert verify` records the attacked file's SHA-256).
    let sha = oodcert::evidence::sha256_file(c.join("certify.csv")).unwrap();
    write(
        &c.join("verify_summary.csv"),
        &format!(
            "{}\ncertify,false,8,1,2,true,4,5,certify.csv,{sha},40,5,0\n",
            oodcert::verify::SUMMARY_COLUMNS.join(",")
        ),
    );

    // A guaranteed run (ℓ∞): GAUROC / GFPR95 at ε = 0 and 0.1, both variants.
    let g = root.join("guar");
    manifest(
        &g,
        "guaranteed",
        serde_json::json!({"config": {"norm": "linf", "convention": "OOD at certified lower bounds"}}),
    );
    write(
        &g.join("bounds.csv"),
        "spec,dataset,index,is_id,eps,score,lower,upper\nid,id,0,1,0,-3e0,-3e0,-3e0\n",
    );
    let sha = oodcert::evidence::sha256_file(g.join("bounds.csv")).unwrap();
    write(
        &g.join("verify_summary.csv"),
        &format!(
            "{}\nguaranteed,true,2,0,0,true,1.25,2,bounds.csv,{sha},40,5,0\n",
            oodcert::verify::SUMMARY_COLUMNS.join(",")
        ),
    );
    write(
        &g.join("guaranteed.csv"),
        "norm,eps,ood,variant,auroc,fpr95,n_id,n_ood\n\
         linf,0,o,clean-id,0.99,0.05,10,10\nlinf,0,o,certified-id,0.99,0.05,10,10\n\
         linf,0.1,o,clean-id,0.9,0.3,10,10\nlinf,0.1,o,certified-id,0.8,0.5,10,10\n",
    );

    let l = root.join("lip");
    manifest(
        &l,
        "lipschitz",
        serde_json::json!({"config": {"ball": "l2∩[0,1]", "eps": 0.1}}),
    );
    write(
        &l.join("summary.csv"),
        "quantity,n,mean,median\ngrad_norm,4,2.0e0,1.9e0\nlower_sample,4,2.1e0,2.0e0\nlower_pgd,4,2.5e0,2.4e0\n\
         clever,4,2.6e0,2.5e0\nupper_local,4,1.2e1,1.1e1\nupper_recurjac,0,NaN,NaN\nupper_global,4,3.0e3,3.0e3\n\
         tightness_local_over_pgd,4,4.8e0,4.6e0\nseconds_global_once,1,1.0e-2,\n",
    );
    write(
        &l.join("lipschitz.csv"),
        "index,label,is_id,radius_lipschitz,radius_bound_prop\n0,1,true,0.5,0.25\n1,2,true,0,0.1\n",
    );
    // Verified by an oodcert that did not record what it attacked.
    write(
        &l.join("verify_summary.csv"),
        "run_kind,deterministic,certificates,violations,allowed_violations,passed,median_attack_to_certified_radius,decisions_changed_by_attack\n\
         lipschitz,true,3,0,0,true,NaN,0\n",
    );
}

fn oodcert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oodcert"))
        .args(args)
        .output()
        .unwrap()
}

/// Builds the synthetic runs and a report over them; returns (tempdir, runs root, out dir).
fn report() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    let out = d.path().join("out");
    let o = oodcert(&[
        "report",
        "--runs",
        runs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (d, runs, out)
}

fn read_csv(p: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(p).unwrap();
    let h = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (h, rows)
}

fn get<'a>(h: &[String], row: &'a [String], col: &str) -> &'a str {
    &row[h
        .iter()
        .position(|x| x == col)
        .unwrap_or_else(|| panic!("no column {col}"))]
}

/// The summary tables: one per run kind, and the verification table.
const KINDS: [&str; 6] = [
    "train",
    "eval",
    "certify",
    "guaranteed",
    "lipschitz",
    "verify",
];

#[test]
fn writes_every_output_kind() {
    let (_d, _runs, out) = report();
    for k in KINDS {
        assert!(
            out.join(format!("tables/{k}_summary.csv")).is_file(),
            "{k} csv"
        );
        assert!(
            out.join(format!("latex/{k}_summary.tex")).is_file(),
            "{k} tex"
        );
    }
    for stem in [
        "certified_rate_cert",
        "scores_eval_x_y",
        "grad_norm_training",
        "bound_tightness",
        "guaranteed_auroc_guar",
        "guaranteed_fpr95_guar",
        "headline_certified_rate",
    ] {
        for ext in ["svg", "png"] {
            assert!(
                out.join(format!("plots/{stem}.{ext}")).is_file(),
                "{stem}.{ext}"
            );
        }
    }
    assert!(out.join("report.md").is_file());
}

#[test]
fn summary_numbers_match_their_sources() {
    let (_d, runs, out) = report();
    let (h, rows) = read_csv(&out.join("tables/eval_summary.csv"));
    assert_eq!(rows.len(), 2);
    let lfw = rows
        .iter()
        .find(|r| get(&h, r, "ood").starts_with("lfw"))
        .unwrap();
    assert_eq!(get(&h, lfw, "fpr95"), "0.0015");
    assert_eq!(get(&h, lfw, "auroc"), "0.99875");
    assert_eq!(get(&h, lfw, "run"), EVAL);
    let sha = oodcert::evidence::sha256_file(runs.join(EVAL).join("manifest.json")).unwrap();
    assert_eq!(get(&h, lfw, "manifest_sha256"), sha);

    let (h, rows) = read_csv(&out.join("tables/train_summary.csv"));
    assert_eq!(rows.len(), 2);
    let a = rows
        .iter()
        .find(|r| get(&h, r, "run") == "train_a")
        .unwrap();
    assert_eq!(get(&h, a, "step"), "200");
    assert_eq!(get(&h, a, "n_logged"), "20");
    assert_eq!(
        get(&h, a, "grad_norm_in").parse::<f64>().unwrap(),
        5.0 - 0.1 * 20.0
    );

    let (h, rows) = read_csv(&out.join("tables/certify_summary.csv"));
    assert_eq!(rows.len(), 3, "one row per certificate");
    for r in &rows {
        assert_eq!(get(&h, r, "sigma"), "0.25");
        assert_eq!(get(&h, r, "n_id"), "5");
        assert_eq!(get(&h, r, "n_ood"), "3");
        assert_eq!(get(&h, r, "certified_id_rate_r0"), "1");
        assert_eq!(get(&h, r, "certified_ood_rate_r0"), "0.4");
        assert_eq!(get(&h, r, "radius_half_id"), "0.5");
        assert_eq!(get(&h, r, "radius_half_ood"), "", "OOD never reaches half");
        assert_eq!(get(&h, r, "max_radius"), "1");
    }
    let (h, rows) = read_csv(&out.join("tables/lipschitz_summary.csv"));
    // The radius distribution figure of the Lipschitz run.
    assert!(out.join("plots/lipschitz_radius_lip.svg").is_file());
    // upper_recurjac (n = 0: not run) has no row.
    assert_eq!(rows.len(), 8);
    assert!(
        rows.iter()
            .all(|r| get(&h, r, "quantity") != "upper_recurjac")
    );
    assert_eq!(get(&h, &rows[0], "eps"), "0.1");
    assert_eq!(get(&h, &rows[0], "ball"), "l2∩[0,1]");

    // The verifications: the certify and guaranteed runs' are of the runs in the folders, the
    // Lipschitz run's did not record what it attacked; the summary counts all three (1 violation
    // of 2 allowed).
    let (h, rows) = read_csv(&out.join("tables/verify_summary.csv"));
    let cols = [
        "run",
        "certificates",
        "violations",
        "allowed_violations",
        "passed",
    ];
    let row = |r: &[String]| cols.map(|c| get(&h, r, c).to_string());
    assert_eq!(row(&rows[0]), ["cert", "8", "1", "2", "true"]);
    assert_eq!(row(&rows[1]), ["guar", "2", "0", "0", "true"]);
    assert_eq!(row(&rows[2]), ["lip", "3", "0", "0", "true"]);
    let status: Vec<&str> = rows.iter().map(|r| get(&h, r, "status")).collect();
    assert_eq!(status, ["current", "current", "not recorded"]);
    assert_eq!(
        get(&h, &rows[2], "median_attack_to_certified_radius"),
        "NaN"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("oodcert verify attacked 13 certificates inside their certified radii (3 runs): 1 violated (2 allowed"),
        "{md}"
    );
    assert!(md.contains("without a record of the certificate file they attacked (so possibly of an earlier run): 1 verification."));

    let (h, rows) = read_csv(&out.join("tables/guaranteed_summary.csv"));
    assert_eq!(rows.len(), 4, "one row per ε and variant");
    let last = &rows[3];
    assert_eq!(
        [
            get(&h, last, "norm"),
            get(&h, last, "eps"),
            get(&h, last, "variant"),
            get(&h, last, "auroc"),
            get(&h, last, "fpr95")
        ],
        ["linf", "0.1", "certified-id", "0.8", "0.5"]
    );
    let tex = std::fs::read_to_string(out.join("latex/guaranteed_summary.tex")).unwrap();
    assert!(tex.contains("certified-id & 80.00 & 50.00 \\\\"), "{tex}");
}

#[test]
fn svgs_are_well_formed_xml() {
    let (_d, _runs, out) = report();
    let mut n = 0;
    for e in std::fs::read_dir(out.join("plots")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "svg") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        let mut r = quick_xml::Reader::from_str(&text);
        r.config_mut().check_end_names = true;
        let (mut depth, mut root, mut texts) = (0i64, None, 0);
        loop {
            match r.read_event() {
                Ok(quick_xml::events::Event::Start(s)) => {
                    if depth == 0 {
                        root = Some(String::from_utf8_lossy(s.name().as_ref()).into_owned());
                    }
                    if s.name().as_ref() == b"text" {
                        texts += 1;
                    }
                    depth += 1;
                }
                Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{}: not XML: {e}", p.display()),
            }
        }
        assert_eq!(depth, 0, "{}: unbalanced", p.display());
        assert_eq!(root.as_deref(), Some("svg"), "{}", p.display());
        assert!(
            texts > 5,
            "{}: axis labels and legend expected",
            p.display()
        );
    }
    assert_eq!(n, 8);
}

#[test]
fn pngs_decode_to_the_figure_size_and_are_not_blank() {
    let (_d, _runs, out) = report();
    let mut n = 0;
    for e in std::fs::read_dir(out.join("plots")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "png") {
            continue;
        }
        n += 1;
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let mut rd = dec.read_info().unwrap();
        let mut buf = vec![0; rd.output_buffer_size().unwrap()];
        let info = rd.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (960, 600), "{}", p.display());
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let px = &buf[..info.buffer_size()];
        let non_white = px.chunks(3).filter(|c| c != &[255, 255, 255]).count();
        let share = non_white as f64 / (960.0 * 600.0);
        assert!(
            share > 0.02 && share < 0.9,
            "{}: {share} non-white",
            p.display()
        );
        let mut colours: Vec<&[u8]> = px.chunks(3).collect();
        colours.sort();
        colours.dedup();
        assert!(
            colours.len() > 10,
            "{}: only {} colours",
            p.display(),
            colours.len()
        );
    }
    assert_eq!(n, 8);
}

/// Removes `$…$` math spans (underscores are legal there).
fn outside_math(s: &str) -> String {
    s.split('$').step_by(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn latex_tables_are_structurally_valid_booktabs() {
    let (_d, _runs, out) = report();
    for k in KINDS {
        let tex = std::fs::read_to_string(out.join(format!("latex/{k}_summary.tex"))).unwrap();
        let body: String = tex
            .lines()
            .filter(|l| !l.starts_with('%'))
            .collect::<Vec<_>>()
            .join("\n");
        let unescaped = body.replace("\\{", "").replace("\\}", "");
        let mut depth = 0i64;
        for ch in unescaped.chars() {
            depth += match ch {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            assert!(depth >= 0, "{k}: '}}' before '{{'");
        }
        assert_eq!(depth, 0, "{k}: unbalanced braces");
        assert_eq!(body.matches("\\begin{tabular}").count(), 1, "{k}");
        assert_eq!(body.matches("\\end{tabular}").count(), 1, "{k}");
        assert_eq!(body.matches('$').count() % 2, 0, "{k}: unbalanced math");
        let lines: Vec<&str> = body.lines().collect();
        let pos = |s: &str| {
            lines
                .iter()
                .position(|l| l.trim() == s)
                .unwrap_or_else(|| panic!("{k}: no {s}"))
        };
        let (top, mid, bot) = (pos("\\toprule"), pos("\\midrule"), pos("\\bottomrule"));
        assert!(top < mid && mid < bot, "{k}: rules out of order");
        let rows: Vec<&str> = lines[mid + 1..bot].to_vec();
        let (_, csv_rows) = read_csv(&out.join(format!("tables/{k}_summary.csv")));
        assert_eq!(rows.len(), csv_rows.len(), "{k}: one LaTeX row per CSV row");
        let ncol = lines[top + 1].matches(" & ").count();
        for r in &rows {
            assert!(r.ends_with("\\\\"), "{k}: {r}");
            assert_eq!(r.matches(" & ").count(), ncol, "{k}: ragged row {r}");
            let plain = outside_math(r);
            for (i, _) in plain.match_indices('_') {
                assert!(
                    i > 0 && plain.as_bytes()[i - 1] == b'\\',
                    "{k}: unescaped _ in {r}"
                );
            }
            assert!(
                !plain.contains('|') && !plain.contains('>'),
                "{k}: raw | or > in {r}"
            );
        }
    }
    let eval = std::fs::read_to_string(out.join("latex/eval_summary.tex")).unwrap();
    assert!(eval.contains("noise\\_gauss:test"));
    assert!(eval.contains("eval x\\&y &"), "escaped & in the run label");
    assert!(
        !eval.contains("\\textbf{"),
        "a single run per OOD set has nothing to compare"
    );
}

#[test]
fn latex_tables_compile_with_pdflatex() {
    let ok = Command::new("pdflatex")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!(
            "SKIPPED: pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)"
        );
        return;
    }
    let (d, _runs, out) = report();
    let build = d.path().join("tex");
    std::fs::create_dir_all(&build).unwrap();
    let mut doc = String::from(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n",
    );
    for k in KINDS {
        let p = out.join(format!("latex/{k}_summary.tex"));
        doc.push_str(&format!(
            "\\resizebox{{\\textwidth}}{{!}}{{\\input{{{}}}}}\n\n",
            p.display()
        ));
    }
    doc.push_str("\\end{document}\n");
    std::fs::write(build.join("doc.tex"), doc).unwrap();
    let o = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "doc.tex"])
        .current_dir(&build)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "pdflatex failed:\n{log}");
    assert!(build.join("doc.pdf").is_file());
    assert!(!log.contains("Missing character"), "{log}");
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn markdown_links_resolve_and_every_number_is_linked() {
    let (_d, runs, out) = report();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let mut links = 0;
    for (i, _) in md.match_indices("](") {
        let rest = &md[i + 2..];
        let target = &rest[..rest.find(')').unwrap()];
        let p = out.join(percent_decode(target));
        assert!(p.exists(), "broken link {target}");
        links += 1;
    }
    assert!(links > 40, "{links} links");
    // Each table row: every number is a link, and the row links its run's manifest.
    let mut data_rows = 0;
    for line in md
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("manifest.json]("))
    {
        data_rows += 1;
        for c in line.split(" | ") {
            let c = c.trim_matches(|ch| ch == '|' || ch == ' ');
            assert!(c.parse::<f64>().is_err(), "bare number {c} in: {line}");
        }
    }
    // 6 runs + 3 verifications + 2 + 2 + 3 + 4 + 8 table rows
    assert_eq!(data_rows, 6 + 3 + 2 + 2 + 3 + 4 + 8);
    assert!(
        md.contains("`0123456789abcdef0123456789abcdef01234567`"),
        "git revision listed"
    );
    assert_eq!(
        md.matches("FPR at the first threshold where TPR").count(),
        1,
        "convention once"
    );
    let sha = oodcert::evidence::sha256_file(runs.join("cert/manifest.json")).unwrap();
    assert!(md.contains(&sha));
}

#[test]
fn output_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    let outs = [d.path().join("o1"), d.path().join("o2")];
    for o in &outs {
        let r = oodcert(&[
            "report",
            "--runs",
            runs.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ]);
        assert!(r.status.success());
    }
    let mut files = Vec::new();
    for sub in ["tables", "latex", "plots"] {
        for e in std::fs::read_dir(outs[0].join(sub)).unwrap() {
            files.push(format!(
                "{sub}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    files.push("report.md".into());
    assert_eq!(files.len(), 6 + 6 + 16 + 1);
    for f in files {
        let a = std::fs::read(outs[0].join(&f)).unwrap();
        let b = std::fs::read(outs[1].join(&f)).unwrap();
        assert!(a == b, "{f} differs between two identical runs");
    }
}

fn assert_bad_input(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "'{n}' not in: {err}");
    }
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o_s = out.to_str().unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = oodcert(&["report", "--runs", empty.to_str().unwrap(), "--out", o_s]);
    assert_bad_input(&o, &["no run folders found"]);
    let missing = d.path().join("nope");
    let o = oodcert(&["report", "--runs", missing.to_str().unwrap(), "--out", o_s]);
    assert_bad_input(&o, &["no such directory", "nope"]);

    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    write(&runs.join(EVAL).join("metrics.csv"), "ood,fpr95\nx,0.1\n");
    let o = oodcert(&["report", "--runs", runs.to_str().unwrap(), "--out", o_s]);
    assert_bad_input(&o, &["metrics.csv", "missing column 'auroc'"]);

    synthetic_runs(&runs);
    write(
        &runs.join("train_a/train_log.csv"),
        "step,epoch,lr,loss,ce,loss_energy,loss_grad,frac_in_masked,frac_aux_masked,grad_norm_in,grad_norm_aux,acc\n10,0.1,0.01,abc,1,0,0,0,0,1,1,0.5\n",
    );
    let o = oodcert(&["report", "--runs", runs.to_str().unwrap(), "--out", o_s]);
    assert_bad_input(
        &o,
        &["train_log.csv", "column 'loss'", "'abc' is not a number"],
    );

    synthetic_runs(&runs);
    write(
        &runs.join("cert/curves.csv"),
        "certificate,radius\ndetector,0,1\n",
    );
    let o = oodcert(&["report", "--runs", runs.to_str().unwrap(), "--out", o_s]);
    assert_bad_input(&o, &["curves.csv", "malformed CSV"]);

    synthetic_runs(&runs);
    write(&runs.join("lip/manifest.json"), "{not json");
    let o = oodcert(&["report", "--runs", runs.to_str().unwrap(), "--out", o_s]);
    assert_bad_input(&o, &["manifest.json", "not valid JSON"]);
    assert!(!out.join("report.md").exists(), "no report from bad input");
}

// ---- index.html -------------------------------------------------------------------------------

/// What a parse of `index.html` with quick-xml found.
#[derive(Default)]
struct Page {
    /// Element names in document order.
    elements: Vec<String>,
    /// (element, attribute, unescaped value) of every attribute.
    attrs: Vec<(String, String, String)>,
    /// Unescaped text nodes.
    texts: Vec<String>,
    /// Section ids.
    sections: Vec<String>,
}

fn parse_page(path: &Path) -> Page {
    use quick_xml::events::Event;
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("<!DOCTYPE html>\n"), "HTML5 doctype");
    let mut r = quick_xml::Reader::from_str(&text);
    r.config_mut().check_end_names = true;
    let mut page = Page::default();
    let mut depth = 0i64;
    loop {
        let ev = r
            .read_event()
            .unwrap_or_else(|e| panic!("index.html is not XML: {e}"));
        let start = match &ev {
            Event::Start(s) => {
                depth += 1;
                Some(s.clone())
            }
            Event::Empty(s) => Some(s.clone()),
            Event::End(_) => {
                depth -= 1;
                None
            }
            Event::Text(t) => {
                page.texts.push(t.unescape().unwrap().into_owned());
                None
            }
            Event::Eof => break,
            _ => None,
        };
        if let Some(s) = start {
            let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
            for a in s.attributes() {
                let a = a.unwrap();
                let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                let value = a.unescape_value().unwrap().into_owned();
                if name == "section" && key == "id" {
                    page.sections.push(value.clone());
                }
                page.attrs.push((name.clone(), key, value));
            }
            page.elements.push(name);
        }
    }
    assert_eq!(depth, 0, "unbalanced elements");
    page
}

/// Every `href`/`src` of the page: fragments name an element id, others are relative links to
/// existing files (nothing external).
fn assert_links_resolve(out: &Path, page: &Page) -> usize {
    let ids: Vec<&str> = page
        .attrs
        .iter()
        .filter(|a| a.1 == "id")
        .map(|a| a.2.as_str())
        .collect();
    let mut n = 0;
    for (el, key, v) in &page.attrs {
        if key != "href" && key != "src" {
            continue;
        }
        if let Some(id) = v.strip_prefix('#') {
            assert!(ids.contains(&id), "<{el}> links to a missing id {v}");
            continue;
        }
        assert!(
            !v.contains(':') && !v.starts_with('/'),
            "<{el} {key}={v}>: not a relative link"
        );
        let p = out.join(percent_decode(v));
        assert!(
            p.is_file(),
            "<{el} {key}={v}>: no such file {}",
            p.display()
        );
        n += 1;
    }
    n
}

#[test]
fn html_page_is_valid_self_contained_and_its_links_resolve() {
    let (_d, runs, out) = report();
    let page = parse_page(&out.join("index.html"));
    assert_eq!(page.elements[0], "html");
    assert!(
        page.attrs
            .iter()
            .any(|a| a.0 == "meta" && a.1 == "charset" && a.2 == "utf-8")
    );
    assert_eq!(
        page.sections,
        [
            "summary",
            "conventions",
            "runs",
            "verification",
            "kind-train",
            "kind-eval",
            "kind-certify",
            "kind-guaranteed",
            "kind-lipschitz"
        ]
    );
    // No scripts, no external resources, no event handlers.
    for bad in [
        "script",
        "iframe",
        "object",
        "embed",
        "link",
        "foreignObject",
    ] {
        assert!(
            !page.elements.iter().any(|e| e == bad),
            "<{bad}> in the page"
        );
    }
    assert!(!page.attrs.iter().any(|a| a.1.starts_with("on")));
    // The eight figures inline, as SVG (the Lipschitz radius distribution, the two guaranteed
    // curves and the summary's headline figure among them).
    assert_eq!(page.elements.iter().filter(|e| *e == "svg").count(), 8);
    // Tables: runs, verifications and one per kind (no verdict table without --claims); rows
    // as in report.md.
    assert_eq!(page.elements.iter().filter(|e| *e == "table").count(), 7);
    assert_eq!(
        page.elements.iter().filter(|e| *e == "tr").count(),
        7 + (6 + 3 + 2 + 2 + 3 + 4 + 8)
    );
    let links = assert_links_resolve(&out, &page);
    assert!(links > 100, "{links} links");
    // Every number in a kind table links to its run's manifest.json.
    let manifest_links = page
        .attrs
        .iter()
        .filter(|a| a.1 == "href" && a.2.ends_with("manifest.json"))
        .count();
    assert!(manifest_links > 60, "{manifest_links}");
    let eval_manifest = markdown_rel(&out, &runs.join(EVAL).join("manifest.json"));
    assert!(
        page.attrs.iter().any(|a| a.2 == eval_manifest),
        "a link to {eval_manifest}"
    );
    // Header: version, git revision and the command that made the report.
    let text = page.texts.join("");
    assert!(text.contains("oodcert 0.1.0"));
    assert!(text.contains(&format!("--out {}", out.display())));
    // The file list of report_manifest.json is exactly the folder.
    let m = oodcert::evidence::Manifest::read(&out.join("report_manifest.json")).unwrap();
    assert_eq!(m.command, "report");
    let mut listed: Vec<String> = m.outputs.iter().map(|o| o.0.clone()).collect();
    listed.push("report_manifest.json".into());
    listed.sort();
    assert_eq!(
        listed,
        oodcert::evidence::report::folder::files_under(&out).unwrap()
    );
    for (f, sha) in &m.outputs {
        assert_eq!(
            &oodcert::evidence::sha256_file(out.join(f)).unwrap(),
            sha,
            "{f}"
        );
    }
}

/// The percent-encoded relative link from `out` to `to`, as the report writes it.
fn markdown_rel(out: &Path, to: &Path) -> String {
    oodcert::evidence::report::markdown::rel_link(out, to).unwrap()
}

#[test]
fn html_escapes_every_string_from_csv_and_manifests() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    // A run folder, an OOD set and manifest fields that try to inject markup.
    let evil_dir = runs.join("x<u onclick=alert(1)>\"'&");
    std::fs::rename(runs.join(EVAL), &evil_dir).unwrap();
    let evil_set = "<script>alert(\"set\")</script><img src=x onerror=alert(2)>";
    let m = evil_dir.join("metrics.csv");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("noise_gauss:test", evil_set);
    write(&m, &text);
    let s = evil_dir.join("scores.csv");
    let text = std::fs::read_to_string(&s)
        .unwrap()
        .replace("noise_gauss:test", evil_set);
    write(&s, &text);
    manifest(
        &runs.join("lip"),
        "lipschitz",
        serde_json::json!({"oodcert_version": "<b onmouseover=alert(3)>v</b>",
            "git_revision": "</code><script>alert(4)</script>",
            "config": {"ball": "<i>l2</i>", "eps": 0.1}}),
    );
    let out = d.path().join("out");
    let o = oodcert(&[
        "report",
        "--runs",
        runs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = parse_page(&out.join("index.html"));
    for bad in ["script", "img", "b", "i", "u"] {
        assert!(!page.elements.iter().any(|e| e == bad), "<{bad}> injected");
    }
    assert!(
        !page.attrs.iter().any(|a| a.1.starts_with("on")),
        "handler injected"
    );
    // The strings arrive as text, unchanged.
    let text = page.texts.join("\n");
    for s in [
        evil_set,
        "<b onmouseover=alert(3)>v</b>",
        "</code><script>alert(4)</script>",
        "<i>l2</i>",
        "x<u onclick=alert(1)>\"'&",
    ] {
        assert!(text.contains(s), "{s} not shown as text");
    }
    assert_links_resolve(&out, &page);
}

// ---- the report folder is exact --------------------------------------------------------------

fn run_report(runs: &[&Path], out: &Path) -> Output {
    let mut args = vec!["report".to_string(), "--runs".into()];
    args.extend(runs.iter().map(|r| r.display().to_string()));
    args.extend(["--out".into(), out.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    oodcert(&refs)
}

/// `oodcert report --runs RUNS --claims CLAIMS… --out OUT`.
fn report_with_claims(runs: &Path, claims: &[&Path], out: &Path) -> Output {
    let mut args = vec![
        "report".to_string(),
        "--runs".into(),
        runs.display().to_string(),
    ];
    args.push("--claims".into());
    args.extend(claims.iter().map(|c| c.display().to_string()));
    args.extend(["--out".into(), out.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    oodcert(&refs)
}

#[test]
fn rerun_over_fewer_runs_leaves_no_stale_files() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    let out = d.path().join("out");
    assert!(run_report(&[&runs], &out).status.success());
    assert!(out.join("plots/scores_eval_x_y.svg").is_file());
    assert!(out.join("tables/eval_summary.csv").is_file());
    // Again over the train runs only: eval/certify/lipschitz files must be gone.
    let o = run_report(&[&runs.join("train_a"), &runs.join("train_b")], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = oodcert::evidence::report::folder::files_under(&out).unwrap();
    assert_eq!(
        files,
        [
            "index.html",
            "latex/train_summary.tex",
            "plots/grad_norm_training.png",
            "plots/grad_norm_training.svg",
            "report.md",
            "report_manifest.json",
            "tables/train_summary.csv",
        ]
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        !md.contains("eval"),
        "report.md still mentions the eval run"
    );
    // No staging or old folders are left beside --out.
    let beside: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
}

#[test]
fn refuses_to_replace_folders_holding_files_no_report_wrote() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    // A non-empty folder that is not a report: refused, untouched.
    let other = d.path().join("other");
    write(&other.join("paper.tex"), "mine");
    let o = run_report(&[&runs], &other);
    assert_bad_input(&o, &["not an oodcert report folder", "other"]);
    assert_eq!(
        oodcert::evidence::report::folder::files_under(&other).unwrap(),
        ["paper.tex"]
    );
    // A report folder with a file the user added: refused, untouched.
    let out = d.path().join("out");
    assert!(run_report(&[&runs], &out).status.success());
    let before = oodcert::evidence::report::folder::files_under(&out).unwrap();
    write(&out.join("plots/notes.txt"), "mine");
    let o = run_report(&[&runs.join("lip")], &out);
    assert_bad_input(&o, &["plots/notes.txt", "no report wrote"]);
    assert!(out.join("plots/notes.txt").is_file());
    assert!(
        out.join("tables/eval_summary.csv").is_file(),
        "old report kept"
    );
    std::fs::remove_file(out.join("plots/notes.txt")).unwrap();
    assert_eq!(
        oodcert::evidence::report::folder::files_under(&out).unwrap(),
        before
    );
    // --out is a file.
    let f = d.path().join("file");
    write(&f, "x");
    assert_bad_input(&run_report(&[&runs], &f), &["not a directory"]);
    // A report made before report_manifest.json existed is recognised by its file names.
    std::fs::remove_file(out.join("report_manifest.json")).unwrap();
    std::fs::remove_file(out.join("index.html")).unwrap();
    let o = run_report(&[&runs.join("lip")], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("tables/eval_summary.csv").exists());
    assert!(out.join("tables/lipschitz_summary.csv").is_file());
}

// ---- the summary (issue #14 item 6), unlabelled ID sets ------------------------------------------

/// A claims.csv written by `oodcert claims` under `<dir>/bench-x/claims/`: 5 seeds, greg worse
/// than energy on "near" (contradicted), better on "far" (supported).
fn claims_file(dir: &Path) -> PathBuf {
    let mut t = String::from("arm,seed,ood,fpr95,auroc,aupr_in,aupr_out,id_accuracy,n_id,n_ood\n");
    for (arm, near, far) in [("energy", 0.7, 0.2), ("greg", 0.8, 0.1)] {
        for sd in 0..5 {
            let d = 0.001 * sd as f64;
            t.push_str(&format!(
                "{arm},{sd},near,{:.3},0.5,0.5,0.5,0.9,10,10\n",
                near + d
            ));
            t.push_str(&format!(
                "{arm},{sd},far,{:.3},0.5,0.5,0.5,0.9,10,10\n",
                far + d
            ));
        }
    }
    let m = dir.join("metrics_all.csv");
    write(&m, &t);
    let out = dir.join("bench-x/claims");
    let o = oodcert(&[
        "claims",
        "--metrics",
        m.to_str().unwrap(),
        "--baseline",
        "energy",
        "--arm",
        "greg",
        "--metric",
        "fpr95",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.join("claims.csv")
}

#[test]
fn summary_opens_the_page_with_verdicts_and_the_headline_figure() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    let claims = claims_file(d.path());
    let out = d.path().join("out");
    let o = report_with_claims(&runs, &[&claims], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let (sum, conv) = (
        html.find("<section id=\"summary\">").unwrap(),
        html.find("<section id=\"conventions\">").unwrap(),
    );
    assert!(
        sum < conv && sum < html.find("<nav>").unwrap(),
        "summary first"
    );
    let summary = &html[sum..conv];
    // The verdict table: header + 2 claims, in file order, and the headline figure after it.
    assert_eq!(summary.matches("<tr>").count(), 3, "{summary}");
    let near = summary.find(">near<").unwrap();
    let far = summary.find(">far<").unwrap();
    assert!(near < far);
    assert!(summary[near..far].contains("<strong>contradicted</strong>"));
    assert!(summary[far..].contains("<strong>supported</strong>"));
    assert!(
        summary.contains(">bench-x</a>"),
        "labelled by the benchmark folder"
    );
    assert!(
        summary.contains("+10.00 ["),
        "difference in percentage points"
    );
    assert!(summary.contains("0.0079 (2/252)"));
    assert!(summary.contains("Verdict rule: supported when"));
    assert!(summary.find("<svg").unwrap() > summary.find("</table>").unwrap());
    assert!(summary.contains("plots/headline_certified_rate.svg"));
    let page = parse_page(&out.join("index.html"));
    assert_links_resolve(&out, &page);
    // report.md opens with the same summary, its links resolve.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let (ms, mc) = (
        md.find("## Summary").unwrap(),
        md.find("## Conventions").unwrap(),
    );
    assert!(ms < mc);
    assert_eq!(md[ms..mc].matches("| [bench-x](").count(), 2);
    for (i, _) in md.match_indices("](") {
        let rest = &md[i + 2..];
        let target = &rest[..rest.find(')').unwrap()];
        assert!(
            out.join(percent_decode(target)).exists(),
            "broken link {target}"
        );
    }
    // The claims file is recorded with its hash.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["config"]["claims"][0]["sha256"].as_str().unwrap(),
        oodcert::evidence::sha256_file(&claims).unwrap()
    );
    // A file that is not a claims table: exit 2, one line.
    let bad = d.path().join("bad.csv");
    write(&bad, "ood,metric\nx,fpr95\n");
    let o = report_with_claims(&runs, &[&bad], &d.path().join("o2"));
    assert_bad_input(&o, &["bad.csv", "missing column 'baseline'"]);
}

#[test]
fn eval_run_with_an_unlabelled_id_set_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    let e = runs.join("unlabelled");
    manifest(&e, "eval", serde_json::json!({}));
    // `oodcert eval` leaves id_accuracy empty when the ID set has no labels.
    write(
        &e.join("metrics.csv"),
        "ood,fpr95,auroc,aupr_in,aupr_out,detection_error,id_accuracy,n_id,n_ood,score,convention,tpr\n\
         noise:test,0.25,0.9,0.95,0.8,0.1,,400,300,energy,first,0.95\n",
    );
    let out = d.path().join("out");
    let o = oodcert(&[
        "report",
        "--runs",
        runs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (h, rows) = read_csv(&out.join("tables/eval_summary.csv"));
    assert_eq!(
        (get(&h, &rows[0], "id_accuracy"), get(&h, &rows[0], "fpr95")),
        ("", "0.25")
    );
    let tex = std::fs::read_to_string(out.join("latex/eval_summary.tex")).unwrap();
    assert!(tex.contains("& -- \\\\"), "{tex}");
    // A non-number there is still an error.
    write(
        &e.join("metrics.csv"),
        "ood,fpr95,auroc,aupr_in,aupr_out,detection_error,id_accuracy,n_id,n_ood,score,convention,tpr\n\
         noise:test,0.25,0.9,0.95,0.8,0.1,abc,400,300,energy,first,0.95\n",
    );
    let o = oodcert(&[
        "report",
        "--runs",
        runs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&o, &["column 'id_accuracy'"]);
}

/// A paired_claims.csv with every column `oodcert claims --paired-*` writes (the header comes from
/// the crate, so the format cannot drift from what the report reads): ID images supported, OOD
/// undecided.
fn paired_claims_file(dir: &Path) -> PathBuf {
    use oodcert::evidence::claims::paired_output::CLAIM_COLUMNS;
    let value = |set: &str, c: &str| -> String {
        let id = set == "ID";
        match c {
            "set" => set.into(),
            "datasets" => (if id { "mnist:test" } else { "textures:test" }).into(),
            "column" => "radius_bound_prop".into(),
            "baseline" => "energy".into(),
            "arm" => "greg".into(),
            "n" => "20".into(),
            "baseline_median" => (if id { "0.449" } else { "0" }).into(),
            "arm_median" => (if id { "0.5717" } else { "0" }).into(),
            "diff_median" => (if id { "0.0989" } else { "0" }).into(),
            "diff_median_lo" => (if id { "0.0524" } else { "-inf" }).into(),
            "diff_median_hi" => (if id { "0.2358" } else { "inf" }).into(),
            "larger" => (if id { "16" } else { "2" }).into(),
            "smaller" => (if id { "3" } else { "2" }).into(),
            "equal" => (if id { "1" } else { "16" }).into(),
            "signed_rank_p" => (if id { "0.0047149658203125" } else { "1" }).into(),
            "verdict" => (if id { "supported" } else { "undecided" }).into(),
            "rule" => "\"per image, a rule\"".into(),
            _ => "0.5".into(),
        }
    };
    let mut t = CLAIM_COLUMNS.join(",") + "\n";
    for set in ["ID", "OOD"] {
        let row: Vec<String> = CLAIM_COLUMNS.iter().map(|c| value(set, c)).collect();
        t.push_str(&(row.join(",") + "\n"));
    }
    let p = dir.join("paired-x/paired_claims.csv");
    write(&p, &t);
    p
}

#[test]
fn paired_claims_get_their_own_verdict_table_after_the_seeds_table() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    synthetic_runs(&runs);
    let (seeds, paired) = (claims_file(d.path()), paired_claims_file(d.path()));
    let out = d.path().join("out");
    let o = report_with_claims(&runs, &[&paired, &seeds], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let sum = html.find("<section id=\"summary\">").unwrap();
    let summary = &html[sum..html.find("<section id=\"conventions\">").unwrap()];
    // Two tables: the seeds' (2 claims) first, then the paired one (2 claims).
    assert_eq!(summary.matches("<table class=\"verdicts\">").count(), 2);
    assert_eq!(summary.matches("<tr>").count(), 6, "{summary}");
    let paired_at = summary.find("Paired radius claims").unwrap();
    assert!(summary.find(">near<").unwrap() < paired_at);
    let p = &summary[paired_at..];
    assert!(p.contains("arm − baseline: median [95 % sign-test CI]"));
    assert!(p.contains(">paired-x</a>"), "labelled by the file's folder");
    let (id, ood) = (p.find(">ID<").unwrap(), p.find(">OOD<").unwrap());
    assert!(id < ood);
    assert!(p[id..ood].contains("energy 0.4490"));
    assert!(p[id..ood].contains("0.0989 [0.0524, 0.2358]"));
    assert!(p[id..ood].contains("16 / 3 / 1"));
    assert!(p[id..ood].contains("0.0047"));
    assert!(p[id..ood].contains("<strong>supported</strong>"));
    assert!(p[ood..].contains("0.0000 [-inf, inf]"));
    assert!(p[ood..].contains(">undecided<"));
    assert!(summary.contains("4 claims: 2 supported, 1 contradicted, 1 undecided."));
    assert_links_resolve(&out, &parse_page(&out.join("index.html")));
    // report.md: both tables, each delimiter row as wide as its header.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let summary_md = &md[md.find("## Summary").unwrap()..md.find("## Conventions").unwrap()];
    let lines: Vec<&str> = summary_md.lines().collect();
    let mut tables = 0;
    for (k, l) in lines.iter().enumerate() {
        if l.starts_with("|---") {
            tables += 1;
            let head = lines[k - 1];
            let cells = |s: &str| s.trim().trim_matches('|').split('|').count();
            assert_eq!(cells(l), cells(head), "delimiter row {l} under {head}");
            assert_eq!(cells(lines[k + 1]), cells(head), "first row of {head}");
        }
    }
    assert_eq!(tables, 2);
    // A paired file that lacks a column: exit 2, one line naming it.
    let text = std::fs::read_to_string(&paired).unwrap();
    let bad = d.path().join("bad/paired_claims.csv");
    write(&bad, &text.replacen("smaller", "fewer", 1));
    let o = report_with_claims(&runs, &[&bad], &d.path().join("o2"));
    assert_bad_input(&o, &["paired_claims.csv", "missing column 'smaller'"]);
    // Without its p column it is still read as a paired file (by `set`) and the error says so.
    write(&bad, &text.replacen("signed_rank_p", "p", 1));
    let o = report_with_claims(&runs, &[&bad], &d.path().join("o3"));
    assert_bad_input(&o, &["paired_claims.csv", "missing column 'signed_rank_p'"]);
}
