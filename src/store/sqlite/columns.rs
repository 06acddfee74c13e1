//! Rows read through `rusqlite` (the inline reads, the group commit's writes), decoded like any other row
//! of the store (store/rows.rs).

use crate::store::{StoreError, rows::StoreRow};

pub(super) struct Columns<'r>(pub(super) &'r rusqlite::Row<'r>);

impl Columns<'_> {
    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T, StoreError> {
        self.0
            .get(column)
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
