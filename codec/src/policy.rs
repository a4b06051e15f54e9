//! What a reader does with a message it does not know.
//!
//! The top two bits of every template id are part of the template's identity and say what a
//! reader that does not know the template must do (the seed talk's *ignore* and *terminate* bits,
//! after IPv6 option action bits, RFC 8200 §4.2):
//!
//! | bits 15..14 | policy | a reader that does not know the template |
//! |---|---|---|
//! | `00` | [`UnknownPolicy::Reject`] | does not apply it, answers with a typed error, keeps the session |
//! | `01` | [`UnknownPolicy::Ignore`] | skips it by its length and counts it |
//! | `10` | [`UnknownPolicy::Terminate`] | stops: it must not go on past state it cannot interpret |
//! | `11` | reserved | treated as terminate |
//!
//! The low 14 bits number the template within its schema. Bits are assigned once, when a template
//! is defined; changing them makes a new template. A reader matches the full `u16` on its known
//! path, so the policy costs nothing until a message is unknown, and then [`on_unknown`] is the one
//! function every consumer calls. A message of a known schema and template but another major
//! version is unknown too: its bytes mean something the reader cannot know.

use crate::header::MessageHeader;

/// Bits of a template id that number the template within its schema.
pub const TEMPLATE_NUMBER_MASK: u16 = 0x3FFF;
/// The largest template number a schema can use.
pub const TEMPLATE_NUMBER_MAX: u16 = TEMPLATE_NUMBER_MASK;
const POLICY_SHIFT: u32 = 14;

/// What a reader that does not know a template must do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnknownPolicy {
    /// Refuse it with a typed error and keep the session.
    Reject,
    /// Skip it by length and count it: optional hints and telemetry.
    Ignore,
    /// Stop reading: anything that changes replicated state.
    Terminate,
}

impl UnknownPolicy {
    /// The policy carried in a template id's top two bits; the reserved `11` reads as terminate.
    pub const fn of_template(template_id: u16) -> Self {
        match template_id >> POLICY_SHIFT {
            0 => Self::Reject,
            1 => Self::Ignore,
            _ => Self::Terminate,
        }
    }

    /// The full template id for a template number under this policy.
    ///
    /// # Panics
    /// If `number` exceeds [`TEMPLATE_NUMBER_MAX`]; schemas call this in constants, so the panic is
    /// a compile error.
    pub const fn template_id(self, number: u16) -> u16 {
        assert!(
            number <= TEMPLATE_NUMBER_MAX,
            "template numbers have 14 bits"
        );
        let bits = match self {
            Self::Reject => 0,
            Self::Ignore => 1,
            Self::Terminate => 2,
        };
        (bits << POLICY_SHIFT) | number
    }
}

/// The identity of a message a reader did not know, for errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnknownMessage {
    /// The schema id in its header.
    pub schema_id: u16,
    /// The template id in its header, policy bits included.
    pub template_id: u16,
    /// The `major << 8 | minor` version in its header.
    pub version: u16,
}

impl core::fmt::Display for UnknownMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [minor, major] = self.version.to_le_bytes();
        write!(
            f,
            "schema {} template {:#06x} version {major}.{minor}",
            self.schema_id, self.template_id
        )
    }
}

/// What a consumer must do with an unknown message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownAction {
    /// Skip it by its frame or entry length and count it; carry on.
    Ignore,
    /// Do not apply it; answer with a typed error naming it and keep the session.
    Reject(UnknownMessage),
    /// Stop: close the session, or fail a log reader, naming the message.
    Terminate(UnknownMessage),
}

/// Decides what a consumer does with a message it does not know. Every consumer of tern messages
/// calls this on its unknown path, so the rule lives in one place.
pub const fn on_unknown(header: &MessageHeader) -> UnknownAction {
    let message = UnknownMessage {
        schema_id: header.schema_id,
        template_id: header.template_id,
        version: header.version,
    };
    match UnknownPolicy::of_template(header.template_id) {
        UnknownPolicy::Ignore => UnknownAction::Ignore,
        UnknownPolicy::Reject => UnknownAction::Reject(message),
        UnknownPolicy::Terminate => UnknownAction::Terminate(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(template_id: u16) -> MessageHeader {
        MessageHeader {
            block_length: 8,
            template_id,
            schema_id: 9,
            version: 0x0102,
        }
    }

    #[test]
    fn each_bit_pattern_decides_its_action() {
        assert_eq!(
            on_unknown(&header(0x0005)),
            UnknownAction::Reject(UnknownMessage {
                schema_id: 9,
                template_id: 5,
                version: 0x0102
            })
        );
        assert_eq!(on_unknown(&header(0x4005)), UnknownAction::Ignore);
        assert!(matches!(
            on_unknown(&header(0x8005)),
            UnknownAction::Terminate(_)
        ));
        assert!(matches!(
            on_unknown(&header(0xC005)),
            UnknownAction::Terminate(_)
        ));
    }

    #[test]
    fn template_ids_carry_their_policy() {
        for policy in [
            UnknownPolicy::Reject,
            UnknownPolicy::Ignore,
            UnknownPolicy::Terminate,
        ] {
            let id = policy.template_id(0x1234);
            assert_eq!(id & TEMPLATE_NUMBER_MASK, 0x1234);
            assert_eq!(UnknownPolicy::of_template(id), policy);
        }
    }

    #[test]
    fn unknown_message_names_itself() {
        let message = UnknownMessage {
            schema_id: 9,
            template_id: 0x8005,
            version: 0x0102,
        };
        assert_eq!(message.to_string(), "schema 9 template 0x8005 version 1.2");
    }
}
