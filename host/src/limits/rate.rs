//! The connect rate: a token bucket per plugin instance.

use tokio::time::Instant;

/// A token bucket for connects: `rate` tokens per second, holding at most
/// `rate`. Runs on tokio's clock so that tests can pause it.
#[derive(Debug)]
pub(crate) struct ConnectRate {
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl ConnectRate {
    pub(crate) fn new(rate: u32) -> Self {
        ConnectRate {
            rate,
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// The rate, in connects per second.
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes a token if there is one.
    pub(crate) fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.rate);
        let refill = now.duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn connect_rate_refills_over_time() {
        let mut rate = ConnectRate::new(5);
        for _ in 0..5 {
            assert!(rate.try_take());
        }
        assert!(!rate.try_take(), "the burst is the rate");
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(!rate.try_take(), "one token takes 200 ms");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(rate.try_take());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert!(rate.try_take());
        }
        assert!(!rate.try_take(), "tokens do not pile up beyond the burst");
    }
}
