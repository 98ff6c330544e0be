//! Fixed-schema run CSVs (`certify.csv`, `lipschitz.csv`): one record per row, written from its
//! text fields under an exact header, and read back with that header checked and every cell
//! parsed; errors are one-line `BadFile`s naming the file, the row and the column.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

/// The bytes of a CSV file with header `columns` and the given rows (`what` names the file in
/// errors).
pub fn to_bytes(
    what: &str,
    columns: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::Internal(format!("writing {what}: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns).map_err(err)?;
    for r in rows {
        w.write_record(r).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("writing {what}: {e}")))
}

/// One data row of a fixed-schema file, looked up by column name.
pub struct Row<'a> {
    path: &'a Path,
    /// The row's line number in the file (the header is line 1).
    line: usize,
    cells: HashMap<&'a str, &'a str>,
}

impl Row<'_> {
    /// The cell of column `c` as text.
    pub fn get(&self, c: &str) -> Result<&str> {
        self.cells.get(c).copied().ok_or_else(|| {
            Error::bad_file(self.path, format!("row {}: missing column {c}", self.line))
        })
    }

    /// The cell of column `c` parsed as a `T`.
    pub fn parse<T: FromStr>(&self, c: &str) -> Result<T> {
        self.get(c)?.parse().map_err(|_| self.bad(c))
    }

    /// The cell of column `c` parsed as a `T`, `None` when it is empty (not computed).
    pub fn opt<T: FromStr>(&self, c: &str) -> Result<Option<T>> {
        match self.get(c)? {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|_| self.bad(c)),
        }
    }

    fn bad(&self, c: &str) -> Error {
        Error::bad_file(
            self.path,
            format!("row {}: bad value in column {c}", self.line),
        )
    }
}

/// Reads `path`, whose header must be exactly `columns` (else a `BadFile` error saying
/// `mismatch`), turning each data row into a record with `record`.
pub fn read<T>(
    path: &Path,
    columns: &[&'static str],
    mismatch: &str,
    record: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    read_prefix(path, columns, columns.len(), mismatch, record)
}

/// [`read`] for a schema that grew at its end: the header may be `columns[..k]` for any
/// `k ≥ min_columns` (a file written before the last columns existed), and each absent column
/// reads as an empty cell (`Row::opt` gives `None`), so such columns must be optional ones.
pub fn read_prefix<T>(
    path: &Path,
    columns: &[&'static str],
    min_columns: usize,
    mismatch: &str,
    mut record: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| Error::bad_file(path, format!("cannot read as CSV: {e}")))?;
    let headers = r
        .headers()
        .map_err(|e| Error::bad_file(path, format!("no header row: {e}")))?
        .clone();
    let k = headers.len();
    if k < min_columns || k > columns.len() || headers.iter().ne(columns[..k].iter().copied()) {
        return Err(Error::bad_file(path, mismatch));
    }
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| Error::bad_file(path, format!("row {line}: {e}")))?;
        let row = Row {
            path,
            line,
            cells: columns
                .iter()
                .copied()
                .zip(rec.iter().chain(std::iter::repeat("")))
                .collect(),
        };
        out.push(record(&row)?);
    }
    Ok(out)
}
