//! Rate limits for warnings that a fault can repeat thousands of times a second (accepts or
//! connects failing for want of file descriptors, a dead upstream under load): the first goes
//! to the log at once, then at most one a second, saying how many were left out meanwhile.

use std::cell::Cell;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(1);

/// One warning's rate limit, owned by a worker thread.
#[derive(Default)]
pub struct Throttle {
    last: Cell<Option<Instant>>,
    skipped: Cell<u64>,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last: Cell::new(None),
            skipped: Cell::new(0),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the occurrences left out since the
    /// last one; `None` when this one is to be left out (and counted).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < EVERY)
        {
            self.skipped.set(self.skipped.get() + 1);
            return None;
        }
        self.last.set(Some(now));
        Some(self.skipped.replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_left_out() {
        let t = Throttle::new();
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.allow(t0 + Duration::from_millis(900)), None);
        assert_eq!(t.allow(t0 + Duration::from_millis(1001)), Some(2));
        assert_eq!(t.allow(t0 + Duration::from_millis(1500)), None);
    }
}
