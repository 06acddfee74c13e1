//! Rows read through `rusqlite` (the inline reads, the group commit's writes), decoded like any other row
//! of the store (store/rows.rs).

use crate::store::{StoreError, rows::StoreRow};

/// A row and its statement's column names, read once per row: rusqlite's lookup by name asks SQLite for
/// every column's name (and checks it as UTF-8) on each lookup: two thirds of decoding an
/// application's row (BENCHMARKS.md §19).
pub(super) struct Columns<'r> {
    row: &'r rusqlite::Row<'r>,
    names: Vec<&'r str>,
}

impl<'r> Columns<'r> {
    pub(super) fn new(row: &'r rusqlite::Row<'r>) -> Self {
        let statement: &'r rusqlite::Statement<'r> = row.as_ref();
        let names = (0..statement.column_count())
            .map(|i| statement.column_name(i).unwrap_or_default())
            .collect();
        Columns { row, names }
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T, StoreError> {
        // Case-insensitive, as SQLite's own lookup is.
        let index = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(column))
            .ok_or_else(|| StoreError(format!("column {column}: no such column")))?;
        self.row
            .get(index)
            .map_err(|e| StoreError(format!("column {column}: {e}")))
    }
}

impl StoreRow for Columns<'_> {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.get(column)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }
    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        self.get(column)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.get(column)
    }
    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.get(column)
    }
}
