//! Token buckets: how many records one origin may have accepted per unit of time.
//!
//! A bucket holds up to `burst` tokens and gains `per_minute` tokens a minute, in
//! thousandths so that slow rates refill smoothly. Time comes in as an argument;
//! a clock that goes backwards refills nothing.

/// Capacity and refill rate of a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens available at once.
    pub burst: u32,
    /// Tokens regained per minute.
    pub per_minute: u32,
}

impl RateLimit {
    /// Accepted records per origin: a burst of 20, then 12 a minute. An honest
    /// origin refreshes at half its TTL and changes its specialists now and then.
    pub const ORIGIN_DEFAULT: RateLimit = RateLimit {
        burst: 20,
        per_minute: 12,
    };
}

const MILLI: u64 = 1000;

/// A token bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(limit: RateLimit, now_ms: u64) -> Self {
        Self {
            milli_tokens: u64::from(limit.burst) * MILLI,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, limit: RateLimit, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        // per_minute tokens per 60,000 ms = per_minute milli-tokens per 60 ms.
        let gained = elapsed.saturating_mul(u64::from(limit.per_minute)) / 60;
        let capacity = u64::from(limit.burst) * MILLI;
        self.milli_tokens = self.milli_tokens.saturating_add(gained).min(capacity);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Whether a token is there (refilled to `now_ms`), without taking it.
    pub fn has_token(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        self.refill(limit, now_ms);
        self.milli_tokens >= MILLI
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        self.refill(limit, now_ms);
        if self.milli_tokens >= MILLI {
            self.milli_tokens -= MILLI;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let limit = RateLimit {
            burst: 3,
            per_minute: 60,
        };
        let mut bucket = TokenBucket::full(limit, 0);
        assert!((0..3).all(|_| bucket.try_take(limit, 0)));
        assert!(!bucket.try_take(limit, 0));
        assert!(!bucket.try_take(limit, 999));
        assert!(bucket.try_take(limit, 1000));
        // A clock that goes backwards gives nothing.
        assert!(!bucket.try_take(limit, 10));
        // Never more than the burst, however long it rests.
        assert_eq!(
            (0..10)
                .filter(|_| bucket.try_take(limit, 1_000_000))
                .count(),
            3
        );
    }
}
