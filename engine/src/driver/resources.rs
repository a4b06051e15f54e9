//! Driver-managed resources and their one lifecycle: made by a client's command, aged by time at
//! each duty cycle, ended by a command, by time or by the end of what they depend on, and then
//! dropped by the conductor in one place ([`super::conductor`]'s `check_resources`), which first
//! carries out what the end means for others. Dropping a resource releases what it holds in
//! shared memory and on disk ([`super::reclaim`]).
//!
//! | resource | made by | ends when | its end releases |
//! |---|---|---|---|
//! | [`ClientSession`] | a client's first command | it closes, or its keepalives stop for the liveness timeout | its links (they end with it) |
//! | [`PublicationLink`] | add publication | removed, or its client ends | a reference on its publication (the last starts the drain) |
//! | [`SubscriptionLink`] | add subscription | removed, or its client ends | its images: their subscriber positions |
//! | [`CounterLink`] | add counter | removed, or its client ends | the counter |
//! | [`IpcPublication`](super::ipc_publication::IpcPublication) | add publication (the first for a stream) | drained, or its linger passed, after its last link ended | its counters, its subscribers' positions, its log buffer file |
//!
//! The network publication and the publication image join this table with UDP. All of it is
//! owned and aged by the conductor's thread.

use super::reclaim::CounterLease;
use crate::channel::ChannelUri;

/// What a duty cycle tells resources about time and about the resources they depend on.
#[derive(Debug)]
pub(crate) struct Aging<'a> {
    pub(crate) now_ns: i64,
    /// Whether client liveness is checked this cycle (on the conductor's timer).
    pub(crate) check_liveness: bool,
    pub(crate) client_liveness_timeout_ns: i64,
    /// Client silence counts from here at the earliest (the command ring was last unblocked).
    pub(crate) keepalive_grace_from_ns: i64,
    /// Keepalives are stuck behind a blocked command ring: no client times out now.
    pub(crate) keepalives_blocked: bool,
    /// Clients that ended this cycle: their links end with them.
    pub(crate) ended_clients: &'a [i64],
}

/// A resource with the driver's lifecycle.
pub(crate) trait ManagedResource {
    /// Time passed, or something it depends on ended: update its life.
    fn on_time_event(&mut self, aging: &Aging<'_>);

    /// Whether its life is over: the conductor carries out its end and drops it.
    fn has_reached_end_of_life(&self) -> bool;
}

/// Ages `resources` and takes out those whose life is over, in order.
pub(crate) fn age<R: ManagedResource>(resources: &mut Vec<R>, aging: &Aging<'_>) -> Vec<R> {
    for resource in resources.iter_mut() {
        resource.on_time_event(aging);
    }
    resources
        .extract_if(.., |resource| resource.has_reached_end_of_life())
        .collect()
}

/// How a client's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    Live,
    /// The client said it is closing.
    Closed,
    /// The client stopped sending keepalives.
    TimedOut,
}

/// A client the driver knows.
#[derive(Debug)]
pub(crate) struct ClientSession {
    pub(crate) client_id: i64,
    pub(crate) last_keepalive_ns: i64,
    pub(crate) state: ClientState,
}

impl ManagedResource for ClientSession {
    fn on_time_event(&mut self, aging: &Aging<'_>) {
        let silent_ns = aging.now_ns - self.last_keepalive_ns.max(aging.keepalive_grace_from_ns);
        if self.state == ClientState::Live
            && aging.check_liveness
            && !aging.keepalives_blocked
            && silent_ns > aging.client_liveness_timeout_ns
        {
            self.state = ClientState::TimedOut;
        }
    }

    fn has_reached_end_of_life(&self) -> bool {
        self.state != ClientState::Live
    }
}

/// A link's life: it ends when removed or when its client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LinkState {
    ended: bool,
}

impl LinkState {
    /// The client removed the resource.
    pub(crate) fn end(&mut self) {
        self.ended = true;
    }

    fn on_time_event(&mut self, client_id: i64, aging: &Aging<'_>) {
        if aging.ended_clients.contains(&client_id) {
            self.ended = true;
        }
    }
}

/// A client's handle on a publication.
#[derive(Debug)]
pub(crate) struct PublicationLink {
    pub(crate) registration_id: i64,
    pub(crate) client_id: i64,
    pub(crate) publication_id: i64,
    pub(crate) state: LinkState,
}

/// A subscription.
#[derive(Debug)]
pub(crate) struct SubscriptionLink {
    pub(crate) registration_id: i64,
    pub(crate) client_id: i64,
    pub(crate) stream_id: i32,
    /// What the subscription asked for: which publications it admits, and whether tethered.
    pub(crate) channel: ChannelUri,
    /// The receive endpoint of a UDP subscription.
    pub(crate) endpoint_id: Option<i64>,
    pub(crate) state: LinkState,
}

/// A counter a client added.
#[derive(Debug)]
pub(crate) struct CounterLink {
    pub(crate) client_id: i64,
    pub(crate) counter: CounterLease,
    pub(crate) state: LinkState,
}

macro_rules! link_lifecycle {
    ($($link:ident),*) => {
        $(
            impl ManagedResource for $link {
                fn on_time_event(&mut self, aging: &Aging<'_>) {
                    self.state.on_time_event(self.client_id, aging);
                }

                fn has_reached_end_of_life(&self) -> bool {
                    self.state.ended
                }
            }
        )*
    };
}

link_lifecycle!(PublicationLink, SubscriptionLink, CounterLink);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn aging(now_ns: i64, ended_clients: &[i64]) -> Aging<'_> {
        Aging {
            now_ns,
            check_liveness: true,
            client_liveness_timeout_ns: 100,
            keepalive_grace_from_ns: 0,
            keepalives_blocked: false,
            ended_clients,
        }
    }

    fn session(client_id: i64) -> ClientSession {
        ClientSession {
            client_id,
            last_keepalive_ns: 0,
            state: ClientState::Live,
        }
    }

    #[test]
    fn a_client_times_out_only_past_its_timeout_and_only_when_liveness_is_checked() {
        let mut clients = vec![session(1)];
        assert!(
            age(&mut clients, &aging(100, &[])).is_empty(),
            "at the timeout, not past"
        );
        let unchecked = Aging {
            check_liveness: false,
            ..aging(500, &[])
        };
        assert!(age(&mut clients, &unchecked).is_empty());
        let blocked = Aging {
            keepalives_blocked: true,
            ..aging(500, &[])
        };
        assert!(
            age(&mut clients, &blocked).is_empty(),
            "keepalives may be stuck"
        );
        let graced = Aging {
            keepalive_grace_from_ns: 450,
            ..aging(500, &[])
        };
        assert!(
            age(&mut clients, &graced).is_empty(),
            "silence counts from the grace"
        );
        let ended = age(&mut clients, &aging(101, &[]));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].state, ClientState::TimedOut);
        assert!(clients.is_empty());
    }

    #[test]
    fn links_end_when_removed_or_when_their_client_ends_and_keep_their_order() {
        let link = |registration_id, client_id| PublicationLink {
            registration_id,
            client_id,
            publication_id: 9,
            state: LinkState::default(),
        };
        let mut links = vec![link(1, 10), link(2, 20), link(3, 10), link(4, 30)];
        links[3].state.end();
        let ended = age(&mut links, &aging(0, &[10]));
        let ids = |links: &[PublicationLink]| {
            links
                .iter()
                .map(|link| link.registration_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&ended), [1, 3, 4]);
        assert_eq!(ids(&links), [2]);
        assert!(
            age(&mut links, &aging(1_000_000, &[])).is_empty(),
            "links do not time out"
        );
    }
}
