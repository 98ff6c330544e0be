//! The README and docs/ send users only to files the repository has (issue 12: the CUDA recipe
//! lived in ../shared, outside the project).

use std::path::Path;

fn docs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            v.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    v
}

#[test]
fn docs_name_no_file_outside_the_repository() {
    for (name, text) in docs() {
        assert!(
            !text.contains("../shared"),
            "{name} points outside the repository"
        );
    }
}

#[test]
fn scripts_and_docs_the_readme_names_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, text) in docs() {
        for prefix in ["scripts/", "docs/"] {
            for (i, _) in text.match_indices(prefix) {
                // Only a path token: preceded by a space, backtick or '(' (not "…/docs/…").
                if i > 0 && !matches!(text.as_bytes()[i - 1], b' ' | b'`' | b'(' | b'\n') {
                    continue;
                }
                let path: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                    .collect();
                let path = path.trim_end_matches('.');
                if path.ends_with(".sh") || path.ends_with(".md") {
                    assert!(
                        root.join(path).exists(),
                        "{name} names {path}, which is missing"
                    );
                }
            }
        }
    }
    assert!(root.join("scripts/setup-cuda13.sh").exists());
}
