//! Counts over the last minute, for rates that describe now rather than the whole uptime.

use chrono::{DateTime, Utc};

/// Seconds in the window.
const SECONDS: usize = 60;

/// Events per second for the last 60 seconds, in a ring of one slot per second.
#[derive(Debug)]
pub(super) struct LastMinute {
    /// Slot `s % 60` holds the count of Unix second `s`, if it is that second's slot still.
    slots: [(i64, u64); SECONDS],
}

impl Default for LastMinute {
    fn default() -> Self {
        Self {
            slots: [(i64::MIN, 0); SECONDS],
        }
    }
}

impl LastMinute {
    /// One event at `at`.
    pub(super) fn add(&mut self, at: DateTime<Utc>) {
        let second = at.timestamp();
        let slot = &mut self.slots[second.rem_euclid(SECONDS as i64) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    /// Events in the 60 seconds up to `now`.
    pub(super) fn count(&self, now: DateTime<Utc>) -> u64 {
        let now = now.timestamp();
        self.slots
            .iter()
            .filter(|(second, _)| now - (SECONDS as i64) < *second && *second <= now)
            .map(|(_, count)| count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn counts_only_the_last_sixty_seconds() {
        let start = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let mut window = LastMinute::default();
        window.add(start);
        window.add(start);
        window.add(start + chrono::Duration::seconds(30));
        assert_eq!(window.count(start + chrono::Duration::seconds(30)), 3);
        // 60 s on, the first two have left the window; the slot they used is reused.
        assert_eq!(window.count(start + chrono::Duration::seconds(60)), 1);
        window.add(start + chrono::Duration::seconds(60));
        assert_eq!(window.count(start + chrono::Duration::seconds(60)), 2);
        assert_eq!(window.count(start + chrono::Duration::seconds(200)), 0);
    }
}
