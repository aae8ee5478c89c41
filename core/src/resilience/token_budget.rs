//! A provider instance's tokens per minute (`rate_limit.tpm`, #16 §5) as a budget that
//! refills continuously: a call reserves its estimate before it starts and settles
//! with what it actually used once it ends (the difference goes back, or is owed).

/// Tokens a minute, reserved ahead and settled after.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBudget {
    /// Tokens a minute (the most the budget holds).
    per_minute: u64,
    /// Tokens available now (negative: owed by calls that used more than reserved).
    level: f64,
    /// When `level` was last brought up to date.
    at_ms: u64,
}

impl TokenBudget {
    /// A full budget of `per_minute` tokens (at least 1) at `now_ms`.
    pub fn new(per_minute: u64, now_ms: u64) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            per_minute,
            level: per_minute as f64,
            at_ms: now_ms,
        }
    }

    /// Tokens a minute.
    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        let gained = elapsed as f64 * self.per_minute as f64 / 60_000.0;
        self.level = (self.level + gained).min(self.per_minute as f64);
    }

    /// Reserves `tokens` (a call's estimate) if the budget holds them now, and returns
    /// what was reserved; else how many milliseconds until it will. An estimate larger
    /// than a whole minute's budget reserves the whole budget (so it can ever start).
    ///
    /// # Errors
    /// The milliseconds to wait.
    pub fn try_reserve(&mut self, tokens: u64, now_ms: u64) -> Result<u64, u64> {
        self.refill(now_ms);
        let ask = tokens.min(self.per_minute);
        let missing = ask as f64 - self.level;
        if missing <= 0.0 {
            self.level -= ask as f64;
            return Ok(ask);
        }
        let wait = (missing * 60_000.0 / self.per_minute as f64).ceil();
        Err((wait as u64).max(1))
    }

    /// Settles a call that reserved `reserved` and used `used`: the difference goes
    /// back to the budget (or is taken from it when the call used more).
    pub fn settle(&mut self, reserved: u64, used: u64, now_ms: u64) {
        self.refill(now_ms);
        self.level = (self.level + reserved as f64 - used as f64).min(self.per_minute as f64);
    }

    /// The same budget at `per_minute` tokens a minute (the replicas' share changed):
    /// what is available, or owed, keeps its fraction of the budget, so a change of
    /// share neither refills a spent budget nor forgets what calls owe.
    pub fn rescale(&mut self, per_minute: u64, now_ms: u64) {
        self.refill(now_ms);
        let per_minute = per_minute.max(1);
        self.level = self.level * per_minute as f64 / self.per_minute as f64;
        self.per_minute = per_minute;
    }

    /// The tokens available now (rounded down; 0 while owed).
    pub fn available(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        self.level.max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_while_it_holds_and_says_how_long_to_wait() {
        let mut budget = TokenBudget::new(600, 0);
        assert_eq!(budget.try_reserve(400, 0), Ok(400));
        // 200 left; 300 more arrive at 10 a second: 100 missing is 10 s.
        assert_eq!(budget.try_reserve(300, 0), Err(10_000));
        assert_eq!(budget.try_reserve(300, 10_000), Ok(300));
        assert_eq!(budget.available(10_000), 0);
    }

    #[test]
    fn settling_gives_back_what_a_call_did_not_use_and_takes_what_it_overran() {
        let mut budget = TokenBudget::new(600, 0);
        assert_eq!(budget.try_reserve(500, 0), Ok(500));
        budget.settle(500, 50, 0);
        assert_eq!(budget.available(0), 550);
        assert_eq!(budget.try_reserve(550, 0), Ok(550));
        budget.settle(550, 850, 0);
        assert_eq!(budget.available(0), 0, "300 owed");
        assert_eq!(budget.try_reserve(1, 0), Err(30_100));
        budget.settle(0, 0, 60_000);
        assert_eq!(
            budget.available(60_000),
            300,
            "a minute refills 600 of the 900 missing"
        );
    }

    #[test]
    fn an_estimate_over_the_whole_budget_takes_all_of_it_and_never_overfills() {
        let mut budget = TokenBudget::new(100, 0);
        assert_eq!(budget.try_reserve(5_000, 0), Ok(100));
        budget.settle(100, 0, 0);
        assert_eq!(budget.available(600_000), 100);
        assert_eq!(TokenBudget::new(0, 0).per_minute(), 1);
    }

    #[test]
    fn a_new_share_keeps_what_was_spent() {
        let mut budget = TokenBudget::new(1000, 0);
        assert_eq!(budget.try_reserve(800, 0), Ok(800));
        // Two replicas now: half the budget, still 80 % spent.
        budget.rescale(500, 0);
        assert_eq!(budget.per_minute(), 500);
        assert_eq!(budget.available(0), 100);
        // Owed tokens stay owed.
        budget.settle(100, 700, 0);
        budget.rescale(1000, 0);
        assert_eq!(budget.available(0), 0);
    }
}
