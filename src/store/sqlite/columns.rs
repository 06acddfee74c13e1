//! Rows read through `rusqlite` (the inline reads, the group commit's writes), decoded like any other row
//! of the store (store/rows.rs).

use std::borrow::Cow;

use crate::store::{StoreError, rows::StoreRow};

/// The columns every read of applications selects (applications.rs, `select_applications!`), in its
/// order; a read of the event log (`event_columns!`) selects the same less the last.
pub(super) const APPLICATION_COLUMNS: [&str; 13] = [
    "application_id",
    "owner",
    "external_reference",
    "person_id",
    "status",
    "upstream_status",
    "last_known_status",
    "baas_client_id",
    "version",
    "created_at",
    "updated_at",
    "seq",
    "unchanged_polls",
];
/// The columns of an event, as applications and the event log are both read (store/rows.rs, `event`).
pub(super) const EVENT_COLUMNS: &[&str] = APPLICATION_COLUMNS.split_at(12).0;

/// A row and its statement's column names. rusqlite's own lookup by name asks SQLite for every column's
/// name (and checks it as UTF-8) on each lookup: two thirds of decoding an application's row
/// (BENCHMARKS.md §19).
pub(super) struct Columns<'r> {
    row: &'r rusqlite::Row<'r>,
    names: Cow<'r, [&'r str]>,
}

impl<'r> Columns<'r> {
    /// The names asked of the statement, once for the row.
    pub(super) fn new(row: &'r rusqlite::Row<'r>) -> Self {
        let statement: &'r rusqlite::Statement<'r> = row.as_ref();
        let names = (0..statement.column_count())
            .map(|i| statement.column_name(i).unwrap_or_default())
            .collect();
        Columns { row, names }
    }

    /// A row of a statement known to select `names` first, in that order (the reads of applications and
    /// events; `reads_select_the_columns_they_are_decoded_by` in applications.rs holds every such
    /// statement to it, and debug builds check each row): nothing is asked of SQLite.
    pub(super) fn in_order(row: &'r rusqlite::Row<'r>, names: &'static [&'static str]) -> Self {
        debug_assert!(
            names.iter().enumerate().all(|(i, name)| {
                row.as_ref()
                    .column_name(i)
                    .is_ok_and(|n| n.eq_ignore_ascii_case(name))
            }),
            "the statement does not select {names:?} first"
        );
        Columns {
            row,
            names: Cow::Borrowed(names),
        }
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
