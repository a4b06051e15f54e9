//! The nemesis: the faults the world injects during the fault phase, and the heal that ends them.

use super::{Event, World};
use crate::sim::network::NetworkFaults;
use crate::sim::storage::InFlight;

impl World<'_> {
    pub(super) fn crash(&mut self, member: usize) {
        self.crash_in(member, InFlight::Nothing);
    }

    /// A crash in the middle of a disk operation (or of none).
    pub(super) fn crash_in(&mut self, member: usize, in_flight: InFlight) {
        let tear_snapshot = self.fault_rng.chance(100_000);
        let slot = &mut self.members[member];
        slot.node = None;
        slot.incarnation += 1;
        let damage = slot
            .storage
            .crash(&mut self.storage_rng, in_flight, tear_snapshot);
        self.faults.crashes += 1;
        self.faults.lost_writes += damage.lost_operations;
        self.faults.torn_writes += u64::from(damage.torn);
        self.faults.torn_snapshots += u64::from(damage.snapshot_torn);
        let incarnation = slot.incarnation;
        self.note(|| {
            format!(
                "m{member} crashes ({} pending writes lost, torn {})",
                damage.lost_operations, damage.torn
            )
        });
        let downtime = self.fault_rng.between(100_000_000, 2_000_000_000);
        self.schedule(
            downtime,
            Event::Restart {
                member,
                incarnation,
            },
        );
    }

    pub(super) fn nemesis(&mut self) {
        let members = self.member_count();
        let live: Vec<usize> = (0..members)
            .filter(|&m| self.members[m].node.is_some())
            .collect();
        if self.swarm.crash_per_million > 0
            && !live.is_empty()
            && self.fault_rng.chance(self.swarm.crash_per_million)
        {
            let victim = live[usize::try_from(
                self.fault_rng
                    .below(u64::try_from(live.len()).expect("fits")),
            )
            .expect("fits")];
            self.crash(victim);
        }
        // A one-member cluster has no links between members to cut or clog.
        if self.fault_rng.chance(self.swarm.partition_per_million) && members > 1 {
            self.partition();
        }
        if self.fault_rng.chance(self.swarm.clog_per_million) && members > 1 {
            let from = self.pick_member();
            let to = (from + 1 + self.pick_below(members - 1)) % members;
            let until = self.now_ns + self.fault_rng.between(100_000_000, 2_000_000_000);
            self.network.clog(from, to, until);
            self.faults.clogs += 1;
            self.note(|| format!("link m{from} -> m{to} clogged"));
        }
        if self.fault_rng.chance(self.swarm.pause_per_million) {
            let member = self.pick_member();
            let until = self.now_ns + self.fault_rng.between(200_000_000, 3_000_000_000);
            self.members[member].paused_until_ns = until;
            self.faults.pauses += 1;
            self.note(|| format!("m{member} pauses until {until}"));
        }
        if self.fault_rng.chance(self.swarm.clock_jump_per_million) {
            let member = self.pick_member();
            let delta = if self.fault_rng.chance(500_000) {
                i64::try_from(self.fault_rng.between(100_000_000, 3_000_000_000)).expect("fits")
            } else {
                -i64::try_from(self.fault_rng.between(100_000_000, 1_000_000_000)).expect("fits")
            };
            self.members[member].clock.jump(delta);
            self.faults.clock_jumps += 1;
            self.note(|| format!("m{member}'s clock jumps {delta} ns"));
        }
    }

    pub(super) fn pick_below(&mut self, bound: usize) -> usize {
        usize::try_from(self.fault_rng.below(u64::try_from(bound).expect("fits"))).expect("fits")
    }

    pub(super) fn pick_member(&mut self) -> usize {
        self.pick_below(self.member_count())
    }

    pub(super) fn partition(&mut self) {
        let members = self.member_count();
        let mut links = Vec::new();
        match self.fault_rng.below(3) {
            0 => {
                let isolated = self.pick_member();
                self.isolate(isolated);
                return;
            }
            1 => {
                let member = self.pick_member();
                let outgoing = self.fault_rng.chance(500_000);
                for other in (0..members).filter(|&other| other != member) {
                    links.push(if outgoing {
                        (member, other)
                    } else {
                        (other, member)
                    });
                }
                self.faults.asymmetric_partitions += 1;
                self.note(|| format!("partition: m{member} one-way (outgoing cut: {outgoing})"));
            }
            _ => {
                let minority = 1 + self.pick_below(members / 2);
                let mut order: Vec<usize> = (0..members).collect();
                for index in (1..members).rev() {
                    let swap = self.pick_below(index + 1);
                    order.swap(index, swap);
                }
                let (side, rest) = order.split_at(minority);
                for &a in side {
                    for &b in rest {
                        links.push((a, b));
                        links.push((b, a));
                    }
                }
                self.faults.symmetric_partitions += 1;
                let side = side.to_vec();
                self.note(|| format!("partition: {side:?} split from the rest"));
            }
        }
        self.cut(links);
    }

    /// Cuts the given directions for a random while.
    pub(super) fn cut(&mut self, links: Vec<(usize, usize)>) {
        for &(from, to) in &links {
            self.network.block(from, to);
        }
        // Under leader churn partitions last longer: the figure-8 schedule needs a struck
        // leader to stay away while two more terms come and go.
        let longest = if self.swarm.leader_churn {
            6_000_000_000
        } else {
            3_000_000_000
        };
        let duration = self.fault_rng.between(200_000_000, longest);
        self.schedule(duration, Event::EndPartition { links });
    }

    /// Cuts a member off from every other member, both ways, for a random while.
    pub(super) fn isolate(&mut self, isolated: usize) {
        let members = self.member_count();
        assert!(members > 1, "a lone member has no links to cut");
        let mut links = Vec::new();
        for other in (0..members).filter(|&other| other != isolated) {
            links.push((isolated, other));
            links.push((other, isolated));
        }
        self.faults.symmetric_partitions += 1;
        self.note(|| format!("partition: m{isolated} isolated"));
        self.cut(links);
    }

    pub(super) fn heal(&mut self) {
        self.healed_at_ns = Some(self.now_ns);
        self.network.set_faults(NetworkFaults::CALM);
        self.network.heal();
        self.note(|| "heal: faults stop, crashed members restart".to_string());
        for member in 0..self.member_count() {
            self.members[member].paused_until_ns = 0;
            if self.members[member].node.is_none() {
                self.members[member].incarnation += 1;
                self.start_member(member);
            }
        }
        for client in 0..self.clients.len() {
            if self.clients[client].outstanding.is_none() {
                self.schedule_client(client, 0);
            }
        }
    }

    /// A targeted fault on a member that has just become leader: crash it or isolate it.
    pub(super) fn strike_leader(&mut self, member: usize, incarnation: u64) {
        let slot = &self.members[member];
        let live = slot.incarnation == incarnation && slot.node.is_some();
        if !live || self.healed_at_ns.is_some() {
            return;
        }
        if self.fault_rng.chance(500_000) {
            self.faults.leader_strikes += 1;
            self.crash(member);
        } else if self.member_count() > 1 {
            self.faults.leader_strikes += 1;
            self.isolate(member);
        }
    }

    /// Restores the directions one partition cut.
    pub(super) fn end_partition(&mut self, links: Vec<(usize, usize)>) {
        for (from, to) in links {
            self.network.unblock(from, to);
        }
        self.note(|| "partition healed".to_string());
    }
}
