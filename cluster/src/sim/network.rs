//! The simulated network: delay, loss, duplication, reordering, partitions and clogged links.
//!
//! Endpoints are numbered: members first, then clients. Every message draws its fate from the
//! seed: lost with the configured probability, else delivered after a random delay (so messages
//! on one link overtake each other: reordering), and sometimes delivered twice. Partitions block
//! member-to-member directions (symmetric or one-way); a clogged link holds its messages until the
//! clog clears. Client links see loss, duplication and delay but not partitions.

use crate::rng::Rng;

/// How one message fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped by a partition.
    Partitioned,
    /// Dropped by random loss.
    Lost,
    /// Delivered at these times (one, or two when duplicated).
    Delivered {
        /// The first delivery.
        at_ns: u64,
        /// A duplicate's delivery.
        duplicate_at_ns: Option<u64>,
    },
}

/// The network's fault settings, drawn per seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Loss probability, per million.
    pub loss_per_million: u32,
    /// Duplication probability, per million.
    pub duplicate_per_million: u32,
    /// The shortest one-way delay.
    pub delay_min_ns: u64,
    /// Added random delay, uniform in `0..=delay_jitter_ns`.
    pub delay_jitter_ns: u64,
    /// Chance, per million, that a message is held in a delay spike (a stalled queue, a route
    /// flap) and arrives long after the messages sent after it.
    pub spike_per_million: u32,
    /// The longest delay spike.
    pub spike_max_ns: u64,
}

impl NetworkFaults {
    /// A network that loses and duplicates nothing, with a small delay.
    pub const CALM: NetworkFaults = NetworkFaults {
        loss_per_million: 0,
        duplicate_per_million: 0,
        delay_min_ns: 100_000,
        delay_jitter_ns: 400_000,
        spike_per_million: 0,
        spike_max_ns: 0,
    };
}

/// The network between `members` members and some clients.
#[derive(Debug, Clone)]
pub struct Network {
    members: usize,
    faults: NetworkFaults,
    /// `blocked[from * members + to]`: how many partitions cut the direction (partitions may
    /// overlap; each one restores only what it cut).
    blocked: Vec<u32>,
    /// `clogged_until[from * members + to]`: messages wait until then.
    clogged_until: Vec<u64>,
    /// The latest delivery time scheduled per member link, to count reordering.
    last_delivery: Vec<u64>,
    /// Messages delivered out of send order so far.
    pub reordered: u64,
    /// Messages held in a delay spike so far.
    pub spikes: u64,
    /// Duplicates delivered seconds after the original.
    pub stale_duplicates: u64,
}

impl Network {
    /// A network of `members` members with `faults`.
    pub fn new(members: usize, faults: NetworkFaults) -> Self {
        Self {
            members,
            faults,
            blocked: vec![0; members * members],
            clogged_until: vec![0; members * members],
            last_delivery: vec![0; members * members],
            reordered: 0,
            spikes: 0,
            stale_duplicates: 0,
        }
    }

    /// Replaces the fault settings (the heal at the end of the fault phase).
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    fn link(&self, from: usize, to: usize) -> Option<usize> {
        (from < self.members && to < self.members).then_some(from * self.members + to)
    }

    /// Cuts one direction between two members (once more, if it is already cut).
    pub fn block(&mut self, from: usize, to: usize) {
        if let Some(link) = self.link(from, to) {
            self.blocked[link] += 1;
        }
    }

    /// Undoes one [`Network::block`] of a direction.
    pub fn unblock(&mut self, from: usize, to: usize) {
        if let Some(link) = self.link(from, to) {
            self.blocked[link] = self.blocked[link].saturating_sub(1);
        }
    }

    /// Restores every direction and clears every clog.
    pub fn heal(&mut self) {
        self.blocked.fill(0);
        self.clogged_until.fill(0);
    }

    /// How many directions are cut.
    pub fn blocked_directions(&self) -> usize {
        self.blocked.iter().filter(|&&count| count > 0).count()
    }

    /// Holds messages on a link until `until_ns`.
    pub fn clog(&mut self, from: usize, to: usize, until_ns: u64) {
        if let Some(link) = self.link(from, to) {
            self.clogged_until[link] = until_ns;
        }
    }

    /// Decides the fate of a message sent at `now_ns`.
    pub fn send(&mut self, rng: &mut Rng, now_ns: u64, from: usize, to: usize) -> Fate {
        let link = self.link(from, to);
        if link.is_some_and(|link| self.blocked[link] > 0) {
            return Fate::Partitioned;
        }
        if rng.chance(self.faults.loss_per_million) {
            return Fate::Lost;
        }
        let mut at_ns =
            now_ns + self.faults.delay_min_ns + rng.below(self.faults.delay_jitter_ns + 1);
        if rng.chance(self.faults.spike_per_million) {
            at_ns += rng.below(self.faults.spike_max_ns + 1);
            self.spikes += 1;
        }
        if let Some(link) = link {
            at_ns = at_ns.max(self.clogged_until[link]);
            if at_ns < self.last_delivery[link] {
                self.reordered += 1;
            }
            self.last_delivery[link] = self.last_delivery[link].max(at_ns);
        }
        let duplicate_at_ns = rng.chance(self.faults.duplicate_per_million).then(|| {
            // One duplicate in twenty is a stale copy, replayed seconds later (a retransmitting
            // middlebox, a route flap): it arrives terms after it was sent.
            if rng.chance(50_000) {
                self.stale_duplicates += 1;
                at_ns + rng.between(500_000_000, 5_000_000_000)
            } else {
                at_ns + rng.below(self.faults.delay_jitter_ns + 1_000_000)
            }
        });
        Fate::Delivered {
            at_ns,
            duplicate_at_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_block_one_direction_and_clogs_delay() {
        let mut network = Network::new(3, NetworkFaults::CALM);
        let mut rng = Rng::new(1);
        network.block(0, 1);
        assert_eq!(network.send(&mut rng, 0, 0, 1), Fate::Partitioned);
        assert!(matches!(
            network.send(&mut rng, 0, 1, 0),
            Fate::Delivered { .. }
        ));
        assert!(matches!(
            network.send(&mut rng, 0, 0, 5),
            Fate::Delivered { .. }
        ));
        network.clog(2, 0, 5_000_000_000);
        let Fate::Delivered { at_ns, .. } = network.send(&mut rng, 0, 2, 0) else {
            panic!("a clog delays, it does not drop");
        };
        assert_eq!(at_ns, 5_000_000_000);
        network.block(0, 1);
        network.unblock(0, 1);
        assert_eq!(network.blocked_directions(), 1, "the first cut still holds");
        network.heal();
        assert_eq!(network.blocked_directions(), 0);
    }

    #[test]
    fn loss_and_duplication_follow_their_probabilities() {
        let faults = NetworkFaults {
            loss_per_million: 300_000,
            duplicate_per_million: 200_000,
            ..NetworkFaults::CALM
        };
        let mut network = Network::new(2, faults);
        let mut rng = Rng::new(9);
        let (mut lost, mut duplicated) = (0, 0);
        for _ in 0..10_000 {
            match network.send(&mut rng, 0, 0, 1) {
                Fate::Lost => lost += 1,
                Fate::Delivered {
                    duplicate_at_ns: Some(_),
                    ..
                } => duplicated += 1,
                _ => {}
            }
        }
        assert!((2_700..3_300).contains(&lost), "{lost}");
        assert!((1_200..1_600).contains(&duplicated), "{duplicated}");
        assert!(network.reordered > 0);
    }
}
