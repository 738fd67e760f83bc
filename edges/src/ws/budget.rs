//! A connection's frame budget: a token bucket every client frame spends from. Queries are
//! limited per user across the cluster as well; this bounds everything else a connection can
//! make the node do (cancels, decisions, malformed frames), each of which costs a route, a
//! parse or an answer.

use std::time::Instant;

/// Frames a connection may send at once.
const BURST: f64 = 60.0;
/// Frames per second it earns back.
const REFILL_PER_SEC: f64 = 20.0;
/// Frames dropped over budget before the connection is closed.
const DROP_LIMIT: u32 = 1_000;

pub struct FrameBudget {
    tokens: f64,
    last: Instant,
    /// Over budget since the last frame that was allowed: the refusal is sent once.
    over: bool,
    dropped: u32,
}

/// What to do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Spend {
    Allowed,
    /// Over budget: say so (the first time in a row).
    Refuse,
    /// Over budget again: drop it silently.
    Drop,
    /// Over budget for too long: close the connection.
    Close,
}

impl FrameBudget {
    pub fn new() -> FrameBudget {
        FrameBudget {
            tokens: BURST,
            last: Instant::now(),
            over: false,
            dropped: 0,
        }
    }

    pub fn spend(&mut self) -> Spend {
        self.spend_at(Instant::now())
    }

    fn spend_at(&mut self, now: Instant) -> Spend {
        let earned = now.duration_since(self.last).as_secs_f64() * REFILL_PER_SEC;
        self.tokens = (self.tokens + earned).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.over = false;
            return Spend::Allowed;
        }
        self.dropped += 1;
        if self.dropped > DROP_LIMIT {
            Spend::Close
        } else if std::mem::replace(&mut self.over, true) {
            Spend::Drop
        } else {
            Spend::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_refusals_then_close() {
        let mut b = FrameBudget::new();
        let t = b.last;
        for _ in 0..60 {
            assert_eq!(b.spend_at(t), Spend::Allowed);
        }
        assert_eq!(b.spend_at(t), Spend::Refuse);
        assert_eq!(b.spend_at(t), Spend::Drop);
        // Earned back at the refill rate.
        let later = t + Duration::from_millis(100);
        assert_eq!(b.spend_at(later), Spend::Allowed);
        assert_eq!(b.spend_at(later), Spend::Allowed);
        assert_eq!(b.spend_at(later), Spend::Refuse);
        for _ in 0..DROP_LIMIT - 3 {
            assert_eq!(b.spend_at(later), Spend::Drop);
        }
        assert_eq!(b.spend_at(later), Spend::Close);
    }
}
