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
}
