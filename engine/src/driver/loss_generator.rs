//! Seeded loss for tests and experiments (Aeron's debug loss generators): drops at a rate,
//! drops a fixed gap of every term once, duplicates and holds back datagrams at the sender's or
//! receiver's socket; off unless configured.
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
    /// A fixed gap: the first datagram whose DATA frame starts in [offset, offset + length) of
    /// a term is dropped, once per term of each session (its repair passes).
    pub gap: Option<(u32, u32)>,
    /// The seed of the decisions.
    pub seed: u64,
}

impl LossConfig {
    /// Parses `drop=R[,duplicate=R][,reorder=R][,gap=OFFSET/LENGTH][,seed=N]`, the form of the
    /// `*_loss` driver settings.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config = Self {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            gap: None,
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
                "gap" => {
                    let gap = value
                        .split_once('/')
                        .and_then(|(offset, length)| {
                            Some((offset.parse().ok()?, length.parse().ok()?))
                        })
                        .filter(|(_, length): &(u32, u32)| *length > 0)
                        .ok_or_else(|| format!("gap={value}: OFFSET/LENGTH in bytes of a term"))?;
                    config.gap = Some(gap);
                }
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

/// Terms whose fixed gap was dropped, remembered at most (the oldest is forgotten first).
const GAPS_REMEMBERED: usize = 64;

/// A seeded loss generator.
#[derive(Debug, Clone)]
pub struct LossGenerator {
    config: LossConfig,
    state: u64,
    dropped: u64,
    /// (session, term id) whose fixed gap was dropped, in a ring.
    gapped: [(i32, i32); GAPS_REMEMBERED],
    gapped_count: usize,
}

impl LossGenerator {
    /// A generator for `config`.
    pub fn new(config: LossConfig) -> Self {
        Self {
            config,
            state: config.seed | 1,
            dropped: 0,
            gapped: [(0, 0); GAPS_REMEMBERED],
            gapped_count: 0,
        }
    }

    fn next_unit(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        // 53 random bits as a fraction in [0, 1).
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What happens to `datagram`: its fixed gap first, then the rates.
    pub fn fate_of(&mut self, datagram: &[u8]) -> Fate {
        if let Some((offset, length)) = self.config.gap
            && let Ok(tern_codec::frame::Frame::Data(data)) =
                tern_codec::frame::Frame::decode(datagram)
            && let Ok(term_offset) = u32::try_from(data.header.term_offset)
            && data.header.frame_length > 0
            && term_offset >= offset
            && term_offset - offset < length
        {
            let key = (data.header.session_id, data.header.term_id);
            let remembered = self.gapped_count.min(GAPS_REMEMBERED);
            if !self.gapped[..remembered].contains(&key) {
                self.gapped[self.gapped_count % GAPS_REMEMBERED] = key;
                self.gapped_count += 1;
                self.dropped += 1;
                return Fate::Drop;
            }
        }
        self.fate()
    }

    /// What happens to the next datagram, by the rates alone.
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
        assert!(LossConfig::parse("gap=1024").is_err());
        assert!(LossConfig::parse("gap=1024/0").is_err());
    }

    #[test]
    fn a_fixed_gap_drops_its_first_datagram_once_per_term() {
        use tern_codec::frame::{DataHeader, FrameType, data_flags};
        let config = LossConfig::parse("gap=4096/1024").unwrap();
        let mut generator = LossGenerator::new(config);
        let datagram = |term_id: i32, term_offset: i32| {
            let header = DataHeader {
                frame_length: 64,
                flags: data_flags::UNFRAGMENTED,
                frame_type: FrameType::Data,
                term_offset,
                session_id: 5,
                stream_id: 1,
                term_id,
                reserved_value: 0,
            };
            let mut bytes = vec![0u8; 64];
            header.encode(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(generator.fate_of(&datagram(1, 0)), Fate::Pass);
        assert_eq!(generator.fate_of(&datagram(1, 4096)), Fate::Drop);
        assert_eq!(
            generator.fate_of(&datagram(1, 4096)),
            Fate::Pass,
            "its repair passes"
        );
        assert_eq!(
            generator.fate_of(&datagram(1, 4160)),
            Fate::Pass,
            "once per term"
        );
        assert_eq!(
            generator.fate_of(&datagram(2, 4608)),
            Fate::Drop,
            "the next term's"
        );
        assert_eq!(
            generator.fate_of(&datagram(2, 5120)),
            Fate::Pass,
            "past the gap"
        );
        assert_eq!(generator.dropped(), 2);
    }
}
