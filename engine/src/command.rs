//! The driver protocol: commands that clients write to the driver's ring buffer and responses
//! the driver broadcasts back, as versioned `tern-codec` messages.
//!
//! A ring buffer record's type is the message's template id; its body is the whole message,
//! header included, so every command carries its schema version. Commands use the *reject*
//! policy: a driver that does not know one answers with [`ErrorCode::UnknownCommand`] and keeps
//! serving the client. Responses use *ignore*: a client skips events a newer driver adds.
//! Every command carries the client's id and a correlation id that its response echoes.

use tern_codec::{Schema, SemanticVersion};

/// The driver protocol's schema.
///
/// 0.2 added [`release_image`]; 0.3 added [`destination`]; 0.4 added [`receive_destination`].
pub const DRIVER_PROTOCOL: Schema = Schema::new("driver", 10, SemanticVersion::new(0, 4, 0));

/// The longest error message in a response.
pub const ERROR_MESSAGE_MAX: usize = 1024;

tern_codec::enumeration! {
    /// Why the driver refused a command.
    pub enum ErrorCode: i32 {
        /// Anything else.
        Generic = 0,
        /// The channel URI is invalid.
        InvalidChannel = 1,
        /// No such subscription.
        UnknownSubscription = 2,
        /// No such publication.
        UnknownPublication = 3,
        /// No such counter.
        UnknownCounter = 4,
        /// The command's template is unknown to this driver.
        UnknownCommand = 5,
        /// The command could not be decoded.
        MalformedCommand = 6,
        /// The channel's media is not supported yet.
        NotSupported = 7,
        /// Out of counters, files or memory.
        ResourceExhausted = 8,
    }
}

tern_codec::message! {
    /// Add a (concurrent) publication, or an exclusive one.
    pub mod add_publication (schema = DRIVER_PROTOCOL, template = 1, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The stream.
            stream_id @ 16 since 0: i32,
            /// 1 for an exclusive publication, 0 for a concurrent one.
            exclusive @ 20 since 0: u8,
        }
        groups {}
        var_data {
            /// The channel URI.
            channel (max = 4096) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Remove a publication, subscription or counter by its registration id.
    pub mod remove_resource (schema = DRIVER_PROTOCOL, template = 2, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The resource's registration id.
            registration_id @ 16 since 0: i64,
            /// What kind of resource: see [`ResourceKind`].
            kind @ 24 since 0: ResourceKind,
        }
        groups {}
        var_data {}
    }
}

tern_codec::enumeration! {
    /// What a removal removes.
    pub enum ResourceKind: u8 {
        /// A publication.
        Publication = 0,
        /// A subscription.
        Subscription = 1,
        /// A counter.
        Counter = 2,
    }
}

tern_codec::message! {
    /// Add a subscription.
    pub mod add_subscription (schema = DRIVER_PROTOCOL, template = 3, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The stream.
            stream_id @ 16 since 0: i32,
        }
        groups {}
        var_data {
            /// The channel URI.
            channel (max = 4096) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Add a counter the client owns.
    pub mod add_counter (schema = DRIVER_PROTOCOL, template = 4, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The counter's type.
            type_id @ 16 since 0: i32,
        }
        groups {}
        var_data {
            /// Key bytes.
            key (max = 112) since 0: bytes,
            /// The label.
            label (max = 380) since 0: str,
        }
    }
}

tern_codec::message! {
    /// A client-level command: keepalive, close, or terminate the driver.
    pub mod client_command (schema = DRIVER_PROTOCOL, template = 5, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response (terminate only).
            correlation_id @ 8 since 0: i64,
            /// What to do.
            action @ 16 since 0: ClientAction,
        }
        groups {}
        var_data {}
    }
}

tern_codec::enumeration! {
    /// A client-level action.
    pub enum ClientAction: u8 {
        /// The client is alive.
        Keepalive = 0,
        /// The client is closing: release its resources now.
        Close = 1,
        /// Stop the driver.
        TerminateDriver = 2,
    }
}

tern_codec::message! {
    /// A client gives up an image it cannot read (its log would not map, its position counter is
    /// not its own): the driver stops counting it in the publisher limit and records why. Added
    /// in 0.2; a 0.1 driver answers it with [`ErrorCode::UnknownCommand`].
    pub mod release_image (schema = DRIVER_PROTOCOL, template = 6, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The image.
            image_id @ 16 since 0: i64,
        }
        groups {}
        var_data {
            /// Why, for the driver's error log.
            reason (max = 1024) since 0: str,
        }
    }
}

tern_codec::enumeration! {
    /// What a [`destination`] command does.
    pub enum DestinationAction: u8 {
        /// Start sending to the destination.
        Add = 0,
        /// Stop sending to it.
        Remove = 1,
    }
}

tern_codec::message! {
    /// Adds a destination to a multi-destination publication in manual control mode
    /// (`control-mode=manual`), or removes one. Added in 0.3; a 0.2 driver answers it with
    /// [`ErrorCode::UnknownCommand`].
    pub mod destination (schema = DRIVER_PROTOCOL, template = 7, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The publication (its registration id, as the client was told).
            publication_id @ 16 since 0: i64,
            /// Add or remove ([`DestinationAction`]).
            action @ 24 since 0: DestinationAction,
        }
        groups {}
        var_data {
            /// The destination: `tern:udp?endpoint=host:port`.
            channel (max = 4096) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Adds a destination (a socket to receive on) to a multi-destination subscription
    /// (`control-mode=manual`), or removes one. Added in 0.4; a 0.3 driver answers it with
    /// [`ErrorCode::UnknownCommand`].
    pub mod receive_destination (schema = DRIVER_PROTOCOL, template = 8, policy = Reject) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The subscription (its registration id).
            subscription_id @ 16 since 0: i64,
            /// Add or remove ([`DestinationAction`]).
            action @ 24 since 0: DestinationAction,
        }
        groups {}
        var_data {
            /// The destination: `tern:udp?endpoint=host:port`, a multicast group, or an endpoint
            /// with `control=host:port|control-mode=dynamic` to join a dynamic
            /// multi-destination publication.
            channel (max = 4096) since 0: str,
        }
    }
}

tern_codec::message! {
    /// A command failed.
    pub mod on_error (schema = DRIVER_PROTOCOL, template = 101, policy = Ignore) {
        block {
            /// The command's correlation id.
            correlation_id @ 0 since 0: i64,
            /// What went wrong.
            code @ 8 since 0: ErrorCode,
        }
        groups {}
        var_data {
            /// In words.
            message (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// A command succeeded and has nothing else to say.
    pub mod on_operation_success (schema = DRIVER_PROTOCOL, template = 102, policy = Ignore) {
        block {
            /// The command's correlation id.
            correlation_id @ 0 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// A publication is ready.
    pub mod on_publication_ready (schema = DRIVER_PROTOCOL, template = 103, policy = Ignore) {
        block {
            /// The command's correlation id.
            correlation_id @ 0 since 0: i64,
            /// The publication's registration id (shared by concurrent publications of a log).
            registration_id @ 8 since 0: i64,
            /// The log's session id.
            session_id @ 16 since 0: i32,
            /// The stream.
            stream_id @ 20 since 0: i32,
            /// The counter holding the publisher limit.
            publisher_limit_counter_id @ 24 since 0: i32,
            /// 1 when exclusive.
            exclusive @ 28 since 0: u8,
        }
        groups {}
        var_data {
            /// The log buffer's file.
            log_file (max = 4096) since 0: str,
        }
    }
}

tern_codec::message! {
    /// A subscription is ready.
    pub mod on_subscription_ready (schema = DRIVER_PROTOCOL, template = 104, policy = Ignore) {
        block {
            /// The command's correlation id.
            correlation_id @ 0 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// A subscription has a new image to read.
    pub mod on_available_image (schema = DRIVER_PROTOCOL, template = 105, policy = Ignore) {
        block {
            /// The image's id (unique per subscription and publication).
            image_id @ 0 since 0: i64,
            /// The subscription it belongs to.
            subscription_registration_id @ 8 since 0: i64,
            /// The image's session.
            session_id @ 16 since 0: i32,
            /// The stream.
            stream_id @ 20 since 0: i32,
            /// The counter holding this subscriber's position.
            subscriber_position_counter_id @ 24 since 0: i32,
        }
        groups {}
        var_data {
            /// The log buffer's file.
            log_file (max = 4096) since 0: str,
            /// Where the stream comes from.
            source_identity (max = 256) since 0: str,
        }
    }
}

tern_codec::message! {
    /// An image has gone: its publication closed or was cleaned up.
    pub mod on_unavailable_image (schema = DRIVER_PROTOCOL, template = 106, policy = Ignore) {
        block {
            /// The image's id.
            image_id @ 0 since 0: i64,
            /// The subscription it belonged to.
            subscription_registration_id @ 8 since 0: i64,
            /// The stream.
            stream_id @ 16 since 0: i32,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// A counter is ready.
    pub mod on_counter_ready (schema = DRIVER_PROTOCOL, template = 107, policy = Ignore) {
        block {
            /// The command's correlation id.
            correlation_id @ 0 since 0: i64,
            /// The counter's id.
            counter_id @ 8 since 0: i32,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// The driver closed a client that stopped sending keepalives.
    pub mod on_client_timeout (schema = DRIVER_PROTOCOL, template = 108, policy = Ignore) {
        block {
            /// The client.
            client_id @ 0 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_carry_their_policy() {
        let mut buf = [0u8; 256];
        let mut encoder = add_publication::Encoder::wrap(&mut buf).unwrap();
        encoder
            .client_id(1)
            .correlation_id(2)
            .stream_id(1001)
            .exclusive(1);
        let length = encoder.channel("tern:ipc").unwrap().finish();
        let decoded = add_publication::Decoder::decode(&buf[..length]).unwrap();
        assert_eq!(decoded.channel(), "tern:ipc");
        assert_eq!(decoded.exclusive(), 1);
        assert_eq!(add_publication::POLICY, tern_codec::UnknownPolicy::Reject);
        assert_eq!(on_error::POLICY, tern_codec::UnknownPolicy::Ignore);
    }
}
