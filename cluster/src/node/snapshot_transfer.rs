//! Snapshot transfers between members: a leader sends its snapshot and term history to a member
//! whose log ends below the leader's log start (the log there was purged after a snapshot), and
//! that member gathers the chunks and installs them (Raft's InstallSnapshot, carried over the
//! consensus stream as `protocol::snapshot_chunk` messages).
//!
//! A transfer is [`transfer_bytes`]: the term history up to the snapshot (`u32` count, then
//! `term u64, base u64` each, little-endian), then the snapshot's bytes. The leader sends it in
//! order, a few chunks a duty cycle ([`Sending`]), to one member at a time; the member takes
//! chunks only from its leader in its current term (the core says,
//! `Consensus::on_snapshot_chunk`, which also counts them as hearing from the leader), keeps one
//! transfer at a time ([`Receiving`]), drops it on any chunk out of place, and refuses one
//! longer than [`TRANSFER_LENGTH_MAX`]. A transfer dropped is not resumed: while the member
//! stays behind, the core asks again after a leader heartbeat timeout, and once the transfer
//! under way has ended the leader sends a new one from offset 0.
//!
//! Memory and threads: the member agent's thread owns both; a transfer's bytes are held whole
//! (a snapshot is the service's state, which the member holds in memory anyway).

use crate::protocol::{SNAPSHOT_CHUNK_BYTES_MAX, snapshot_chunk};
use crate::term_history::{TermHistory, TermStart};

/// The longest transfer a member accepts: term history and snapshot together.
pub(super) const TRANSFER_LENGTH_MAX: u64 = 1 << 30;
/// Chunks a leader offers to one member per duty cycle at most, so that a transfer shares the
/// consensus stream with the log's appends instead of holding it.
pub(super) const CHUNKS_PER_CYCLE: usize = 4;

/// The transfer of `snapshot` at `position` with the `history` entries below it.
pub(super) fn transfer_bytes(history: &[TermStart], position: u64, snapshot: &[u8]) -> Vec<u8> {
    let terms: Vec<TermStart> = history
        .iter()
        .copied()
        .filter(|start| start.base < position)
        .collect();
    let mut out = Vec::with_capacity(4 + terms.len() * 16 + snapshot.len());
    out.extend_from_slice(
        &u32::try_from(terms.len())
            .expect("a term history fits u32")
            .to_le_bytes(),
    );
    for start in &terms {
        out.extend_from_slice(&start.term.to_le_bytes());
        out.extend_from_slice(&start.base.to_le_bytes());
    }
    out.extend_from_slice(snapshot);
    out
}

/// A whole transfer read back: the term history and the snapshot's bytes, checked against the
/// snapshot's `position` (the history must cover the byte before it).
pub(super) fn parse_transfer(bytes: &[u8], position: u64) -> Result<(TermHistory, &[u8]), String> {
    let count = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
        .ok_or("shorter than its term count")?;
    let count = usize::try_from(count).map_err(|_| "term count out of range")?;
    let history_end = count
        .checked_mul(16)
        .and_then(|length| length.checked_add(4))
        .filter(|&end| end <= bytes.len())
        .ok_or("term history longer than the transfer")?;
    let terms = bytes[4..history_end]
        .chunks_exact(16)
        .map(|entry| TermStart {
            term: u64::from_le_bytes(entry[..8].try_into().expect("eight bytes")),
            base: u64::from_le_bytes(entry[8..].try_into().expect("eight bytes")),
        })
        .collect();
    let history = TermHistory::from_entries(terms).map_err(|error| error.to_string())?;
    match history.entries().last() {
        Some(last) if last.base < position => Ok((history, &bytes[history_end..])),
        _ => Err(format!(
            "the term history does not cover the byte before the snapshot at {position}"
        )),
    }
}

/// A leader's transfer to one member, sent in order.
#[derive(Debug)]
pub(super) struct Sending {
    /// The member.
    pub(super) to: u32,
    /// The leader's term when the transfer began; it ends with it.
    pub(super) term: u64,
    /// The snapshot's log position.
    pub(super) position: u64,
    bytes: Vec<u8>,
    offset: usize,
}

impl Sending {
    /// A transfer of `bytes` ([`transfer_bytes`]) to member `to`.
    pub(super) fn new(to: u32, term: u64, position: u64, bytes: Vec<u8>) -> Self {
        Self {
            to,
            term,
            position,
            bytes,
            offset: 0,
        }
    }

    /// Whether every chunk was sent.
    pub(super) fn done(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    /// Encodes the next chunk into `buf` (resized to hold it) as leader `leader_id`; returns
    /// its length, or `None` when every chunk was sent.
    pub(super) fn next_chunk(&self, leader_id: u32, buf: &mut Vec<u8>) -> Option<usize> {
        if self.done() {
            return None;
        }
        let end = self.bytes.len().min(self.offset + SNAPSHOT_CHUNK_BYTES_MAX);
        buf.resize(SNAPSHOT_CHUNK_BYTES_MAX + 128, 0);
        let mut encoder = snapshot_chunk::Encoder::wrap(buf).expect("the buffer holds a chunk");
        encoder
            .term(self.term)
            .snapshot_position(self.position)
            .transfer_length(widen(self.bytes.len()))
            .offset(widen(self.offset))
            .leader_id(leader_id);
        let encoder = encoder
            .bytes(&self.bytes[self.offset..end])
            .expect("a chunk is within its limit");
        Some(encoder.finish())
    }

    /// The chunk [`Sending::next_chunk`] encoded was sent.
    pub(super) fn advance(&mut self) {
        self.offset = self.bytes.len().min(self.offset + SNAPSHOT_CHUNK_BYTES_MAX);
    }
}

/// A transfer a member gathers.
#[derive(Debug)]
pub(super) struct Receiving {
    /// The leader's term.
    pub(super) term: u64,
    /// The leader.
    pub(super) leader: u32,
    /// The snapshot's log position.
    pub(super) position: u64,
    length: u64,
    bytes: Vec<u8>,
}

/// What a chunk did to the transfer being gathered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ChunkOutcome {
    /// Taken; more to come.
    More,
    /// The transfer is whole.
    Whole,
    /// Out of place (not the next chunk of the transfer held): the transfer is dropped.
    Dropped,
    /// A transfer longer than [`TRANSFER_LENGTH_MAX`], or a chunk past its length: refused.
    Refused,
}

impl Receiving {
    /// Takes `chunk` into `slot`: offset 0 starts a transfer (replacing any other), a chunk at
    /// the end of the one held continues it.
    pub(super) fn on_chunk(
        slot: &mut Option<Self>,
        chunk: &snapshot_chunk::Decoder<'_>,
    ) -> ChunkOutcome {
        let bytes = chunk.bytes();
        let length = chunk.transfer_length();
        if length > TRANSFER_LENGTH_MAX
            || chunk
                .offset()
                .checked_add(widen(bytes.len()))
                .is_none_or(|end| end > length)
        {
            *slot = None;
            return ChunkOutcome::Refused;
        }
        if chunk.offset() == 0 {
            *slot = Some(Self {
                term: chunk.term(),
                leader: chunk.leader_id(),
                position: chunk.snapshot_position(),
                length,
                bytes: Vec::with_capacity(
                    usize::try_from(length.min(64 << 20)).expect("at most 64 MiB"),
                ),
            });
        }
        let Some(receiving) = slot.as_mut() else {
            return ChunkOutcome::Dropped;
        };
        let continues = receiving.term == chunk.term()
            && receiving.leader == chunk.leader_id()
            && receiving.position == chunk.snapshot_position()
            && receiving.length == length
            && widen(receiving.bytes.len()) == chunk.offset();
        if !continues {
            *slot = None;
            return ChunkOutcome::Dropped;
        }
        receiving.bytes.extend_from_slice(bytes);
        if widen(receiving.bytes.len()) == receiving.length {
            ChunkOutcome::Whole
        } else {
            ChunkOutcome::More
        }
    }

    /// The whole transfer's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn widen(length: usize) -> u64 {
    u64::try_from(length).expect("lengths fit u64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<TermStart> {
        vec![
            TermStart { term: 1, base: 0 },
            TermStart {
                term: 3,
                base: 4096,
            },
            TermStart {
                term: 5,
                base: 9000,
            },
        ]
    }

    fn chunks(sending: &mut Sending) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(length) = sending.next_chunk(2, &mut buf) {
            out.push(buf[..length].to_vec());
            sending.advance();
        }
        out
    }

    fn decode(bytes: &[u8]) -> snapshot_chunk::Decoder<'_> {
        snapshot_chunk::Decoder::decode(bytes).unwrap()
    }

    #[test]
    fn a_transfer_round_trips_through_its_chunks() {
        let snapshot: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = transfer_bytes(&history(), 8192, &snapshot);
        let mut sending = Sending::new(1, 7, 8192, bytes);
        let chunks = chunks(&mut sending);
        assert!(sending.done() && chunks.len() == 3);
        let mut slot = None;
        for (index, chunk) in chunks.iter().enumerate() {
            let outcome = Receiving::on_chunk(&mut slot, &decode(chunk));
            let expected = if index == 2 {
                ChunkOutcome::Whole
            } else {
                ChunkOutcome::More
            };
            assert_eq!(outcome, expected);
        }
        let receiving = slot.unwrap();
        assert_eq!((receiving.term, receiving.leader), (7, 2));
        let (history, received) = parse_transfer(receiving.bytes(), 8192).unwrap();
        assert_eq!(history.entries(), &self::history()[..2], "terms below 8192");
        assert_eq!(received, &snapshot[..]);
    }

    #[test]
    fn chunks_out_of_place_drop_the_transfer_and_offset_zero_starts_again() {
        let bytes = transfer_bytes(&history(), 9600, &vec![1u8; 200_000]);
        let chunks = chunks(&mut Sending::new(1, 7, 9600, bytes));
        let mut slot = None;
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&chunks[1])),
            ChunkOutcome::Dropped,
            "no transfer started"
        );
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&chunks[0])),
            ChunkOutcome::More
        );
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&chunks[2])),
            ChunkOutcome::Dropped,
            "a gap"
        );
        assert!(slot.is_none());
        for chunk in &chunks[..chunks.len() - 1] {
            assert_eq!(
                Receiving::on_chunk(&mut slot, &decode(chunk)),
                ChunkOutcome::More
            );
        }
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(chunks.last().unwrap())),
            ChunkOutcome::Whole
        );
    }

    /// A new transfer (offset 0) replaces one under way; the old one's next chunk is then out
    /// of place, and the new one completes.
    #[test]
    fn a_new_transfer_replaces_the_one_under_way() {
        let old = chunks(&mut Sending::new(
            1,
            7,
            9600,
            transfer_bytes(&history(), 9600, &vec![1u8; 200_000]),
        ));
        let new = chunks(&mut Sending::new(
            1,
            7,
            12_800,
            transfer_bytes(&history(), 12_800, &vec![2u8; 70_000]),
        ));
        let mut slot = None;
        for chunk in [&old[0], &old[1], &new[0]] {
            assert_eq!(
                Receiving::on_chunk(&mut slot, &decode(chunk)),
                ChunkOutcome::More
            );
        }
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&old[2])),
            ChunkOutcome::Dropped
        );
        assert!(
            slot.is_none(),
            "the new one went with it: the leader starts again"
        );
        for chunk in [&old[0], &new[0]] {
            let _ = Receiving::on_chunk(&mut slot, &decode(chunk));
        }
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&new[1])),
            ChunkOutcome::Whole
        );
        let receiving = slot.unwrap();
        let (_, snapshot) = parse_transfer(receiving.bytes(), 12_800).unwrap();
        assert_eq!(snapshot, &vec![2u8; 70_000][..]);
    }

    #[test]
    fn hostile_lengths_and_histories_are_refused() {
        let mut buf = vec![0u8; 256];
        let mut encoder = snapshot_chunk::Encoder::wrap(&mut buf).unwrap();
        encoder
            .term(1)
            .snapshot_position(64)
            .transfer_length(TRANSFER_LENGTH_MAX + 1)
            .offset(0)
            .leader_id(0);
        let length = encoder.bytes(&[0; 8]).unwrap().finish();
        let mut slot = None;
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&buf[..length])),
            ChunkOutcome::Refused
        );
        let mut encoder = snapshot_chunk::Encoder::wrap(&mut buf).unwrap();
        encoder
            .term(1)
            .snapshot_position(64)
            .transfer_length(4)
            .offset(u64::MAX - 2)
            .leader_id(0);
        let length = encoder.bytes(&[0; 8]).unwrap().finish();
        assert_eq!(
            Receiving::on_chunk(&mut slot, &decode(&buf[..length])),
            ChunkOutcome::Refused,
            "an offset that overflows"
        );
        // A term count past the bytes, a history that does not reach the snapshot, a bad one.
        assert!(parse_transfer(&u32::MAX.to_le_bytes(), 64).is_err());
        assert!(parse_transfer(&[1, 0], 64).is_err());
        assert!(parse_transfer(&transfer_bytes(&[], 64, b"x"), 64).is_err());
        let late = transfer_bytes(&history(), 20_000, b"x");
        assert!(
            parse_transfer(&late, 4096).is_err(),
            "the last base is past 4096"
        );
        let mut unordered = transfer_bytes(&history(), 20_000, b"x");
        unordered[4..12].copy_from_slice(&9u64.to_le_bytes());
        assert!(parse_transfer(&unordered, 20_000).is_err());
    }
}
