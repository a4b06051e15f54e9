//! Digests of replicated state: 64-bit hashes that replicas compare to detect divergence.
//!
//! A digest is not a defence against an adversary; it catches a replica whose state drifted
//! (non-determinism, a bug, a bad disk). Set digests are order-independent (a sum of mixed
//! element hashes), so a service can update one in O(1) as elements change, and two replicas that
//! hold the same elements agree whatever order they inserted them in.

use crate::rng::mix64;

/// Hashes a byte string eight bytes a step (the simulator hashes every message it delivers
/// into its trace; byte-at-a-time FNV cost a tenth of its time), the length folded in so that
/// trailing zeros count.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325 ^ u64::try_from(bytes.len()).expect("fits");
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        hash = mix64(hash ^ word).rotate_left(23);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix64(hash ^ u64::from_le_bytes(tail))
}

/// Hashes a sequence of words.
pub fn hash_words(words: &[u64]) -> u64 {
    words.iter().fold(0x243F_6A88_85A3_08D3, |hash, &word| {
        mix64(hash ^ word).rotate_left(17)
    })
}

/// An order-independent digest of a set: add and remove element hashes in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SetDigest(u64);

impl SetDigest {
    /// Adds an element's hash.
    pub fn add(&mut self, element: u64) {
        self.0 = self.0.wrapping_add(mix64(element));
    }

    /// Removes an element's hash that was added before.
    pub fn remove(&mut self, element: u64) {
        self.0 = self.0.wrapping_sub(mix64(element));
    }

    /// The digest's value.
    pub const fn value(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_digests_ignore_order_and_undo_removals() {
        let mut a = SetDigest::default();
        let mut b = SetDigest::default();
        for element in [1, 2, 3] {
            a.add(element);
        }
        for element in [3, 9, 1, 2] {
            b.add(element);
        }
        assert_ne!(a, b);
        b.remove(9);
        assert_eq!(a, b);
    }

    #[test]
    fn hashes_see_every_byte_and_word() {
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ba"));
        assert_ne!(hash_words(&[1, 2]), hash_words(&[2, 1]));
        assert_eq!(hash_bytes(b""), hash_bytes(&[]));
        assert_ne!(hash_bytes(b"abcdefgh"), hash_bytes(b"abcdefgi"));
        assert_ne!(hash_bytes(b"abcdefghi"), hash_bytes(b"abcdefghj"));
        assert_ne!(hash_bytes(&[0; 8]), hash_bytes(&[0; 9]));
        assert_ne!(hash_bytes(&[]), hash_bytes(&[0]));
    }
}
