//! Wall-clock timestamps in the one format the sandbox writes: RFC 3339, UTC, milliseconds
//! (`2026-11-26T08:19:14.123Z`), as in `x-connectpay-timestamp`.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub(crate) fn now() -> String {
    format(OffsetDateTime::now_utc())
}

fn format(at: OffsetDateTime) -> String {
    // Only years beyond 9999 could fail to format; fall back to the full RFC 3339 form.
    at.format(FORMAT).unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(
            format(datetime!(2026-11-26 08:19:14.123456 UTC)),
            "2026-11-26T08:19:14.123Z"
        );
        assert_eq!(now().len(), "2026-11-26T08:19:14.123Z".len());
    }
}
