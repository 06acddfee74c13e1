//! Rows as domain values, for every backend: the column names are the same in each schema.

use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use super::{Event, InboxEntry, InboxRow, StoreError, from_micros};
use crate::domain::{Application, ApplicationId, Status};

/// What a row must decode for the conversions below: any sqlx row, and a row of the SQLite backend's
/// inline reads (sqlite/inline_reads.rs).
pub(crate) trait StoreRow {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
}

impl<R> StoreRow for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(column)?)
    }
}

fn status(name: String, column: &str) -> Result<Status, StoreError> {
    Status::from_name(&name)
        .ok_or_else(|| StoreError(format!("unknown status {name:?} in {column}")))
}

/// A row with the event log's columns (`application_id` … `updated_at`, `seq`) as an event.
pub(crate) fn event<R: StoreRow>(row: &R) -> Result<Event, StoreError> {
    let id = row.text("application_id")?;
    Ok(Event {
        seq: u64::try_from(row.integer("seq")?).unwrap_or(0),
        application: Application {
            id: ApplicationId::parse(&id)
                .ok_or_else(|| StoreError("malformed application id".into()))?,
            owner: row.text("owner")?,
            external_reference: row.text("external_reference")?,
            person_id: row.maybe_text("person_id")?,
            status: status(row.text("status")?, "status")?,
            upstream_status: row.text("upstream_status")?,
            last_known_status: status(row.text("last_known_status")?, "last_known_status")?,
            baas_client_id: row.maybe_text("baas_client_id")?,
            version: u64::try_from(row.integer("version")?).unwrap_or(0),
            create_time: from_micros(row.integer("created_at")?),
            update_time: from_micros(row.integer("updated_at")?),
        },
    })
}

pub(crate) fn inbox_row<R: StoreRow>(row: &R) -> Result<InboxRow, StoreError> {
    let application_id = row.maybe_text("application_id")?;
    Ok(InboxRow {
        id: row.integer("id")?,
        entry: InboxEntry {
            dedupe_key: row
                .bytes("dedupe_key")?
                .try_into()
                .map_err(|_| StoreError("malformed dedupe key".into()))?,
            application_id: application_id.as_deref().and_then(ApplicationId::parse),
            person_id: row.maybe_text("person_id")?,
            claimed_status: row.maybe_text("claimed_status")?,
            sent_at: row.maybe_text("sent_at")?,
            trace_context: row.maybe_text("trace_context")?,
            via_application: row.boolean("via_application")?,
        },
        received_at: from_micros(row.integer("received_at")?),
        attempts: u32::try_from(row.integer("attempts")?).unwrap_or(0),
    })
}
