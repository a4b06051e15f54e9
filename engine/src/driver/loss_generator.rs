//! Seeded loss for tests and experiments (Aeron's debug loss generators): drops, duplicates
//! and holds back datagrams at the sender's or receiver's socket, off unless configured.
//!
//! Each agent owns its generator; decisions come from a xorshift sequence seeded by the
//! configuration, so a run's losses repeat with its seed.

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Deliver (or send) it.
    Pass,
    /// Drop it.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it after the next one.
    Reorder,
}

/// The loss a generator applies, each as a rate from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// Datagrams dropped.
    pub drop_rate: f64,
    /// Datagrams delivered twice.
    pub duplicate_rate: f64,
    /// Datagrams delivered after the one that follows them.
    pub reorder_rate: f64,
    /// The seed of the decisions.
    pub seed: u64,
}

impl LossConfig {
    /// Parses `drop=R[,duplicate=R][,reorder=R][,seed=N]`, the form of the `*_loss` driver
    /// settings.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config = Self {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            seed: 1,
        };
        for part in text.split(',').filter(|part| !part.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let rate = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|rate| (0.0..=1.0).contains(rate))
                    .ok_or_else(|| format!("{key}={value}: a rate from 0 to 1"))
            };
            match key {
                "drop" => config.drop_rate = rate()?,
                "duplicate" => config.duplicate_rate = rate()?,
                "reorder" => config.reorder_rate = rate()?,
                "seed" => {
                    config.seed = value
                        .parse()
                        .map_err(|_| format!("seed={value}: an unsigned integer"))?;
                }
                other => return Err(format!("unknown loss parameter {other:?}")),
            }
        }
        Ok(config)
    }
}

/// A seeded loss generator.
#[derive(Debug, Clone)]
pub struct LossGenerator {
    config: LossConfig,
    state: u64,
    dropped: u64,
}

impl LossGenerator {
    /// A generator for `config`.
    pub fn new(config: LossConfig) -> Self {
        Self {
            config,
            state: config.seed | 1,
            dropped: 0,
        }
    }

    fn next_unit(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        // 53 random bits as a fraction in [0, 1).
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What happens to the next datagram.
    pub fn fate(&mut self) -> Fate {
        if self.next_unit() < self.config.drop_rate {
            self.dropped += 1;
            return Fate::Drop;
        }
        if self.next_unit() < self.config.duplicate_rate {
            return Fate::Duplicate;
        }
        if self.next_unit() < self.config.reorder_rate {
            return Fate::Reorder;
        }
        Fate::Pass
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rates_hold_and_seeds_repeat() {
        let config = LossConfig::parse("drop=0.1,duplicate=0.05,reorder=0.02,seed=7").unwrap();
        let fates = |config| {
            let mut generator = LossGenerator::new(config);
            (0..100_000).map(|_| generator.fate()).collect::<Vec<_>>()
        };
        let first = fates(config);
        assert_eq!(first, fates(config), "the same seed, the same losses");
        let dropped = first.iter().filter(|fate| **fate == Fate::Drop).count();
        let duplicated = first
            .iter()
            .filter(|fate| **fate == Fate::Duplicate)
            .count();
        assert!((9_000..11_000).contains(&dropped), "{dropped}");
        assert!((4_000..5_000).contains(&duplicated), "{duplicated}");
        let reordered = first.iter().filter(|fate| **fate == Fate::Reorder).count();
        assert!((1_500..2_000).contains(&reordered), "{reordered}");
        assert!(LossConfig::parse("drop=2").is_err());
        assert!(LossConfig::parse("burst=1").is_err());
        assert!(LossConfig::parse("drop").is_err());
    }
}
