//! Class filters in dataset specs, `NAME[:SPLIT]#CLASSES[+remap]` (issue #14, item 1): the images
//! of a set whose source label is in CLASSES (`0-5`, `6-9`, `0,2,4`, `0-2,7`), in file order.
//!
//! Labels stay the source labels; `+remap` relabels the i-th smallest selected class as i (for a
//! training set whose classes are not 0..K−1). Indices in every CSV are positions in the filtered
//! set; [`ClassSelection`] records the filter and the SHA-256 of the source indices it kept.

use super::Dataset;
use super::subset::{indices_sha256, select};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The marker that relabels the selected classes 0..K−1.
pub const REMAP: &str = "+remap";

/// A parsed class filter: the selected source classes and whether to relabel them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFilter {
    /// Selected source labels, ascending, distinct.
    pub classes: BTreeSet<i64>,
    /// Relabel the i-th smallest class as i.
    pub remap: bool,
}

/// What a manifest records of a class-filtered set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSelection {
    /// The canonical filter, e.g. `#0-5` or `#3-7+remap`.
    pub filter: String,
    /// Images of the unfiltered set.
    pub source_n: usize,
    /// `data::subset::indices_sha256` of the kept indices in the unfiltered set.
    pub indices_sha256: String,
    /// `(source label, label)` pairs when `+remap` relabelled the classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remap: Vec<(i64, i64)>,
}

/// Splits a spec into the spec without its class filter and the filter text after `#` (`None`
/// when there is no `#`). A `path:` spec naming an existing file that contains `#` is kept whole.
pub fn split_filter(spec: &str) -> (&str, Option<&str>) {
    let spec = spec.trim();
    if let Some(file) = spec.strip_prefix("path:")
        && std::path::Path::new(file).is_file()
    {
        return (spec, None);
    }
    match spec.rsplit_once('#') {
        Some((head, filter)) => (head, Some(filter)),
        None => (spec, None),
    }
}

/// The spec without its class filter and the parsed filter, if the spec has one; a spec with two
/// filters is an error.
pub fn parse_spec(spec: &str) -> Result<Option<(&str, ClassFilter)>> {
    let (head, filter) = split_filter(spec);
    let Some(text) = filter else {
        return Ok(None);
    };
    if head.contains('#') {
        return Err(Error::BadInput(format!(
            "dataset {spec:?}: one class filter per spec (write the classes in one #CLASSES)"
        )));
    }
    Ok(Some((head, ClassFilter::parse(text, spec)?)))
}

impl ClassFilter {
    /// Parses the text after `#` (`spec` is the whole spec, for the error message).
    pub fn parse(text: &str, spec: &str) -> Result<ClassFilter> {
        let bad = |why: String| {
            Error::BadInput(format!(
                "dataset {spec:?}: class filter #{text}: {why} (write #CLASSES as ranges and lists, e.g. #0-5, #6-9, #0,2,4, then +remap to relabel them 0..K-1)"
            ))
        };
        let (body, remap) = match text.strip_suffix(REMAP) {
            Some(b) => (b, true),
            None => (text, false),
        };
        if body.trim().is_empty() {
            return Err(bad("no classes after #".into()));
        }
        let num = |s: &str| -> Result<i64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{s:?} is not a class number")));
            }
            s.parse::<i64>()
                .map_err(|_| bad(format!("{s:?} is not a class number")))
        };
        let mut classes = BTreeSet::new();
        for item in body.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(bad(format!("range {a}-{b} is descending; write {b}-{a}")));
                    }
                    if b - a > 1_000_000 {
                        return Err(bad(format!("range {a}-{b} is too wide")));
                    }
                    classes.extend(a..=b);
                }
                None => {
                    classes.insert(num(item)?);
                }
            }
        }
        Ok(ClassFilter { classes, remap })
    }

    /// The canonical text: `#` then maximal ranges `a-b` (single classes alone), comma-separated,
    /// then `+remap` if set.
    pub fn canonical(&self) -> String {
        let mut parts = Vec::new();
        let mut it = self.classes.iter().copied().peekable();
        while let Some(a) = it.next() {
            let mut b = a;
            while it.peek() == Some(&(b + 1)) {
                b += 1;
                it.next();
            }
            parts.push(if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            });
        }
        format!(
            "#{}{}",
            parts.join(","),
            if self.remap { REMAP } else { "" }
        )
    }

    /// The images of `d` whose label is selected, in file order, named `NAME#CLASSES`; a selected
    /// class with no image in `d` is an error naming the classes present.
    pub fn apply(&self, d: &Dataset) -> Result<Dataset> {
        let present: BTreeSet<i64> = d.labels.iter().copied().filter(|&l| l >= 0).collect();
        let missing: Vec<i64> = self.classes.difference(&present).copied().collect();
        if !missing.is_empty() {
            let have = if present.is_empty() {
                "it has no class labels".to_string()
            } else {
                format!(
                    "its classes are {}",
                    ClassFilter {
                        classes: present,
                        remap: false
                    }
                    .canonical()
                    .trim_start_matches('#')
                )
            };
            return Err(Error::BadInput(format!(
                "dataset {}: class filter {} selects class(es) {missing:?} absent from the set; {have}",
                d.name,
                self.canonical()
            )));
        }
        let kept: Vec<usize> = (0..d.len())
            .filter(|&i| self.classes.contains(&d.labels[i]))
            .collect();
        let mut out = select(d, &kept)?;
        let mut remap = Vec::new();
        if self.remap {
            let to: std::collections::BTreeMap<i64, i64> = self
                .classes
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, i as i64))
                .collect();
            for l in &mut out.labels {
                *l = to[l];
            }
            remap = to.into_iter().collect();
        }
        out.name = format!("{}{}", d.name, self.canonical());
        out.selection = Some(ClassSelection {
            filter: self.canonical(),
            source_n: d.len(),
            indices_sha256: indices_sha256(&kept),
            remap,
        });
        Ok(out)
    }

    /// True when the two filters share a class.
    fn overlaps(&self, other: &ClassFilter) -> bool {
        !self.classes.is_disjoint(&other.classes)
    }
}

/// Undoes a comma-separated flag's split inside class filters: a piece that is only classes
/// (`2`, `4-5`, `7+remap`) following a spec with `#` continues that spec's list, so
/// `--ood fashion-mnist:test#0,2,4,lfw` is the two specs `fashion-mnist:test#0,2,4` and `lfw`.
pub fn rejoin_specs(pieces: Vec<String>) -> Vec<String> {
    let is_classes = |p: &str| {
        let p = p.strip_suffix(REMAP).unwrap_or(p);
        !p.is_empty()
            && p.split('-').count() <= 2
            && p.split('-')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut out: Vec<String> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match out.last_mut() {
            Some(prev) if prev.contains('#') && !prev.ends_with(REMAP) && is_classes(p.trim()) => {
                prev.push(',');
                prev.push_str(p.trim());
            }
            _ => out.push(p),
        }
    }
    out
}

/// The dataset name of a spec (`mnist` of `mnist:test#0-5`; the file of `path:FILE`).
fn base_name(spec: &str) -> &str {
    let (head, _) = split_filter(spec);
    if head.starts_with("path:") {
        return head;
    }
    let head = head.split_once('?').map_or(head, |(h, _)| h);
    head.split_once(':').map_or(head, |(n, _)| n)
}

/// Whether two specs can hold images of one class of one dataset: the same dataset (any split)
/// and overlapping class filters, a missing filter counting as every class.
pub fn shares_classes(a: &str, b: &str) -> Result<bool> {
    if base_name(a) != base_name(b) {
        return Ok(false);
    }
    Ok(match (parse_spec(a)?, parse_spec(b)?) {
        (Some((_, fa)), Some((_, fb))) => fa.overlaps(&fb),
        _ => true,
    })
}

/// Refuses an OOD (or auxiliary) spec that shares a class with the ID spec of the same dataset,
/// when either has a class filter (`role` names the other set, e.g. `--ood`). Specs of different
/// datasets, or without filters, are not compared (their validity is checked when loaded).
pub fn check_disjoint(id: &str, others: &[String], role: &str) -> Result<()> {
    let id_filtered = parse_spec(id)?.is_some();
    for other in others {
        let filtered = id_filtered || parse_spec(other)?.is_some();
        if filtered && shares_classes(id, other)? {
            return Err(Error::BadInput(format!(
                "{role} {other:?} shares classes with the in-distribution set {id:?}; give them disjoint class filters (e.g. #0-5 and #6-9)"
            )));
        }
    }
    Ok(())
}

/// Refuses a training set whose labels are not exactly 0..K−1 when it carries a class filter
/// (the model's K outputs would include classes it never sees); `key` names the config key.
pub fn check_training_labels(d: &Dataset, key: &str) -> Result<()> {
    if d.selection.is_none() {
        return Ok(());
    }
    let present: BTreeSet<i64> = d.labels.iter().copied().collect();
    let k = present.len() as i64;
    if present.iter().copied().eq(0..k) {
        return Ok(());
    }
    Err(Error::BadInput(format!(
        "{key} = {}: its labels {} are not 0..{} (a model would get outputs for classes it never sees); append {REMAP} to the spec ({}{REMAP}) to relabel them 0..{}, and use the same {REMAP} filter wherever the model's ID set is named",
        d.name,
        ClassFilter {
            classes: present,
            remap: false
        }
        .canonical()
        .trim_start_matches('#'),
        k - 1,
        d.name,
        k - 1
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(labels: &[i64]) -> Dataset {
        Dataset {
            name: "t:test".into(),
            images: labels.iter().map(|&l| l as f32 / 10.0).collect(),
            labels: labels.to_vec(),
            shape: [1, 1, 1],
            sha256: "s".into(),
            selection: None,
        }
    }

    fn parse(t: &str) -> Result<ClassFilter> {
        ClassFilter::parse(t, "x")
    }

    #[test]
    fn ranges_and_lists_parse_to_canonical_form() {
        assert_eq!(parse("0-5").unwrap().canonical(), "#0-5");
        assert_eq!(parse("0,2,4").unwrap().canonical(), "#0,2,4");
        assert_eq!(parse("4,0-2,3,9").unwrap().canonical(), "#0-4,9");
        assert_eq!(parse("7").unwrap().canonical(), "#7");
        assert_eq!(parse("3-7+remap").unwrap().canonical(), "#3-7+remap");
    }

    #[test]
    fn malformed_filters_are_bad_input() {
        for t in ["", "+remap", "9-3", "a", "1,,2", "-3", "1-", "0-5+rem", " "] {
            let e = parse(t).unwrap_err();
            assert!(matches!(e, Error::BadInput(_)), "{t:?}: {e}");
        }
        assert!(parse("9-3").unwrap_err().to_string().contains("descending"));
    }

    #[test]
    fn apply_keeps_file_order_and_source_labels() {
        let d = ds(&[3, 0, 5, 1, 3, 9]);
        assert!(
            parse("3-5").unwrap().apply(&d).is_err(),
            "class 4 is absent"
        );
        let f = parse("5,3").unwrap().apply(&d).unwrap();
        assert_eq!(f.labels, vec![3, 5, 3]);
        assert_eq!(f.images, vec![0.3, 0.5, 0.3]);
        assert_eq!(f.name, "t:test#3,5");
        let sel = f.selection.unwrap();
        assert_eq!(sel.indices_sha256, indices_sha256(&[0, 2, 4]));
        assert_eq!(sel.source_n, 6);
        assert!(sel.remap.is_empty());
    }

    #[test]
    fn remap_relabels_in_class_order() {
        let d = ds(&[9, 3, 5, 3]);
        let f = parse("3,5,9+remap").unwrap().apply(&d).unwrap();
        assert_eq!(f.labels, vec![2, 0, 1, 0]);
        assert_eq!(f.selection.unwrap().remap, vec![(3, 0), (5, 1), (9, 2)]);
    }

    #[test]
    fn absent_classes_are_bad_input() {
        let e = parse("4").unwrap().apply(&ds(&[0, 1, 2])).unwrap_err();
        assert!(matches!(e, Error::BadInput(_)), "{e}");
        assert!(
            e.to_string().contains("[4]") && e.to_string().contains("0-2"),
            "{e}"
        );
        let e = parse("0").unwrap().apply(&ds(&[-1, -1])).unwrap_err();
        assert!(e.to_string().contains("no class labels"), "{e}");
    }

    #[test]
    fn comma_lists_of_specs_keep_class_lists_whole() {
        let v = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            rejoin_specs(v(
                "fashion-mnist:test#0,2,4-5,lfw,mnist:test#6-9,noise-gauss"
            )),
            vec![
                "fashion-mnist:test#0,2,4-5",
                "lfw",
                "mnist:test#6-9",
                "noise-gauss"
            ]
        );
        assert_eq!(
            rejoin_specs(v("mnist#1,3+remap,textures")),
            vec!["mnist#1,3+remap", "textures"]
        );
        assert_eq!(rejoin_specs(v("lfw,2")), vec!["lfw", "2"]);
    }

    #[test]
    fn two_filters_in_one_spec_are_refused() {
        let e = parse_spec("mnist#0-5#3").unwrap_err();
        assert!(e.to_string().contains("one class filter"), "{e}");
        assert!(parse_spec("mnist:test").unwrap().is_none());
        let (head, f) = parse_spec("mnist:test#6-9").unwrap().unwrap();
        assert_eq!((head, f.canonical().as_str()), ("mnist:test", "#6-9"));
    }

    #[test]
    fn overlap_between_id_and_ood_of_one_dataset_is_refused() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check_disjoint(
            "mnist:test#0-5",
            &o(&["mnist:test#6-9", "fashion-mnist:test"]),
            "--ood",
        )
        .unwrap();
        check_disjoint("mnist:train#0-5", &o(&["mnist:test#6-9"]), "--ood").unwrap();
        check_disjoint("mnist", &o(&["mnist:train"]), "--ood").unwrap();
        for bad in ["mnist:test#5-9", "mnist:test", "mnist#0"] {
            let e = check_disjoint("mnist:test#0-5", &o(&[bad]), "--ood").unwrap_err();
            assert!(matches!(e, Error::BadInput(_)), "{bad}: {e}");
        }
        let e = check_disjoint("mnist:test", &o(&["mnist:test#6-9"]), "--ood").unwrap_err();
        assert!(e.to_string().contains("disjoint"), "{e}");
    }

    #[test]
    fn training_labels_must_be_0_to_k_minus_1_unless_remapped() {
        let d = ds(&[3, 4, 5, 3]);
        check_training_labels(&d, "data.id").unwrap();
        let f = parse("3-5").unwrap().apply(&d).unwrap();
        let e = check_training_labels(&f, "data.id").unwrap_err();
        assert!(
            matches!(e, Error::BadInput(_)) && e.to_string().contains("+remap"),
            "{e}"
        );
        let f = parse("3-5+remap").unwrap().apply(&d).unwrap();
        check_training_labels(&f, "data.id").unwrap();
        let f = parse("0-1").unwrap().apply(&ds(&[0, 1, 2])).unwrap();
        check_training_labels(&f, "data.id").unwrap();
    }
}
