//! A run's CSV file read as text cells with named columns; every lookup or parse failure is a
//! one-line `BadFile` error naming the file, the row and the column.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A CSV file held in memory: its header and its rows (all of the header's width).
#[derive(Debug, Clone)]
pub struct CsvTable {
    /// The file it was read from (for error messages and links).
    pub path: PathBuf,
    /// Column names, in file order.
    pub header: Vec<String>,
    /// Data rows, each as wide as `header`.
    pub rows: Vec<Vec<String>>,
}

impl CsvTable {
    /// Reads `path`; a ragged row, an empty header or unreadable bytes is a `BadFile` error.
    pub fn read(path: &Path) -> Result<CsvTable> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(bytes.as_slice());
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| Error::bad_file(path, format!("malformed CSV header: {e}")))?
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        if header.iter().all(|h| h.is_empty()) {
            return Err(Error::bad_file(path, "empty CSV (no header)"));
        }
        let mut rows = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec
                .map_err(|e| Error::bad_file(path, format!("malformed CSV row {}: {e}", i + 2)))?;
            rows.push(rec.iter().map(|s| s.trim().to_string()).collect());
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// The index of column `name`, or a `BadFile` error saying it is missing.
    pub fn col(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            Error::bad_file(
                &self.path,
                format!("missing column '{name}' (has: {})", self.header.join(",")),
            )
        })
    }

    /// Whether the table has column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.header.iter().any(|h| h == name)
    }

    /// Cell `(row, col)` as text (empty when the row is short, which `read` rules out).
    pub fn cell(&self, row: usize, col: usize) -> &str {
        self.rows
            .get(row)
            .and_then(|r| r.get(col))
            .map_or("", String::as_str)
    }

    /// Cell `(row, col)` parsed as a number; `NaN`/`inf` are accepted, empty or junk is an error.
    pub fn num(&self, row: usize, col: usize) -> Result<f64> {
        let s = self.cell(row, col);
        s.parse::<f64>().map_err(|_| {
            Error::bad_file(
                &self.path,
                format!(
                    "row {}, column '{}': '{s}' is not a number",
                    row + 2,
                    self.header.get(col).map_or("?", String::as_str)
                ),
            )
        })
    }

    /// Cell `(row, col)` as a sample index: a non-negative integer written as one (`12`, not
    /// `12.0`, `1e1`, `NaN` or `-1`), else an error.
    pub fn index(&self, row: usize, col: usize) -> Result<u64> {
        let s = self.cell(row, col);
        s.parse::<u64>()
            .map_err(|_| self.bad(row, col, &format!("'{s}' is not a sample index")))
    }

    /// Cell `(row, col)` as a flag: `1`/`true` or `0`/`false`, else an error.
    pub fn flag(&self, row: usize, col: usize) -> Result<bool> {
        match self.cell(row, col) {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            s => Err(self.bad(row, col, &format!("'{s}' is not 0/1 or true/false"))),
        }
    }

    /// Cell `(row, col)` as a finite number, else an error.
    pub fn finite(&self, row: usize, col: usize) -> Result<f64> {
        let v = self.num(row, col)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.bad(row, col, &format!("{v} is not a finite number")))
        }
    }

    /// Cell `(row, col)` as a radius: ≥ 0, or NaN for none, else an error.
    pub fn radius(&self, row: usize, col: usize) -> Result<f64> {
        let v = self.num(row, col)?;
        if v.is_nan() || (v.is_finite() && v >= 0.0) {
            Ok(v)
        } else {
            Err(self.bad(row, col, &format!("{v} is not a radius (≥ 0, or NaN)")))
        }
    }

    /// The `BadFile` error for cell `(row, col)`.
    fn bad(&self, row: usize, col: usize, what: &str) -> Error {
        Error::bad_file(
            &self.path,
            format!(
                "row {}, column '{}': {what}",
                row + 2,
                self.header.get(col).map_or("?", String::as_str)
            ),
        )
    }

    /// Cell `(row, col)` as a number, or `None` when it is empty (an undefined value).
    pub fn opt_num(&self, row: usize, col: usize) -> Result<Option<f64>> {
        if self.cell(row, col).is_empty() {
            Ok(None)
        } else {
            self.num(row, col).map(Some)
        }
    }

    /// Checks that every row of column `name` parses as a number (empty allowed if `allow_empty`).
    pub fn require_numeric(&self, name: &str, allow_empty: bool) -> Result<usize> {
        let c = self.col(name)?;
        for r in 0..self.rows.len() {
            if allow_empty && self.cell(r, c).is_empty() {
                continue;
            }
            self.num(r, c)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_missing_columns_and_junk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "a,b\n1,x\n2,NaN\n").unwrap();
        let t = CsvTable::read(&p).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert!(t.num(1, 1).unwrap().is_nan());
        let e = t.require_numeric("b", false).unwrap_err().to_string();
        assert!(e.contains("row 2, column 'b'"), "{e}");
        let e = t.col("zz").unwrap_err().to_string();
        assert!(e.contains("missing column 'zz'"), "{e}");
        std::fs::write(&p, "a,b\n1\n").unwrap();
        assert!(CsvTable::read(&p).is_err());
    }

    /// Indices, flags, finite numbers and radii: what is one, and an error naming the cell for
    /// what is not.
    #[test]
    fn strict_cells_accept_their_forms_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(
            &p,
            "v\n12\n0\n1\ntrue\nfalse\n0.5\nNaN\ninf\n-1\n1.5\n1e1\n\n",
        )
        .unwrap();
        let t = CsvTable::read(&p).unwrap();
        let ok =
            |f: &dyn Fn(usize) -> bool| (0..t.rows.len()).filter(|&r| f(r)).collect::<Vec<_>>();
        assert_eq!(ok(&|r| t.index(r, 0).is_ok()), [0, 1, 2]);
        assert_eq!(ok(&|r| t.flag(r, 0).is_ok()), [1, 2, 3, 4]);
        assert_eq!(ok(&|r| t.finite(r, 0).is_ok()), [0, 1, 2, 5, 8, 9, 10]);
        assert_eq!(ok(&|r| t.radius(r, 0).is_ok()), [0, 1, 2, 5, 6, 9, 10]);
        assert_eq!(t.index(0, 0).unwrap(), 12);
        assert!(t.flag(3, 0).unwrap() && !t.flag(1, 0).unwrap());
        let e = t.index(6, 0).unwrap_err().to_string();
        assert!(
            e.contains("row 8, column 'v'") && e.contains("'NaN' is not a sample index"),
            "{e}"
        );
    }
}
