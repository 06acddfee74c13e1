//! The time a caller is still willing to wait.

use std::time::{Duration, Instant};

/// When the caller stops waiting, if it said. Carried from the transport down to every upstream call, so
/// that no upstream request outlives the call that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub const NONE: Deadline = Deadline(None);

    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now().checked_add(timeout))
    }

    pub fn instant(self) -> Option<Instant> {
        self.0
    }

    /// Time left, or `None` when the caller set no deadline.
    pub fn remaining(self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_prefers_the_earlier_and_ignores_none() {
        let soon = Deadline::after(Duration::from_secs(1));
        let late = Deadline::after(Duration::from_secs(10));
        assert_eq!(soon.min(late), soon);
        assert_eq!(late.min(soon), soon);
        assert_eq!(Deadline::NONE.min(late), late);
        assert_eq!(Deadline::NONE.min(Deadline::NONE), Deadline::NONE);
        assert!(Deadline::NONE.remaining().is_none());
        assert!(soon.remaining().unwrap() <= Duration::from_secs(1));
    }
}
