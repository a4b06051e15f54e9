//! Driver configuration: every setting, its default, and where it can be set.
//!
//! | setting | CLI flag | environment | TOML key | default |
//! |---|---|---|---|---|
//! | directory | `--dir` | `TERN_DIR` | `dir` | `/dev/shm/tern-<user>` |
//! | threading mode | `--threading-mode` | `TERN_THREADING_MODE` | `threading_mode` | `shared` |
//! | idle strategy | `--idle` | `TERN_IDLE` | `idle` | `backoff` |
//! | IPC term length | `--ipc-term-length` | `TERN_IPC_TERM_LENGTH` | `ipc_term_length` | `16m` |
//! | UDP term length | `--udp-term-length` | `TERN_UDP_TERM_LENGTH` | `udp_term_length` | `16m` |
//! | UDP receive socket buffer | `--so-rcvbuf` | `TERN_SO_RCVBUF` | `so_rcvbuf` | `2m` |
//! | longest image term (a SETUP asking more is refused) | `--max-image-term-length` | `TERN_MAX_IMAGE_TERM_LENGTH` | `max_image_term_length` | `128m` |
//! | image liveness timeout | `--image-liveness-timeout` | `TERN_IMAGE_LIVENESS_TIMEOUT` | `image_liveness_timeout` | `10s` |
//! | publication connection timeout | `--publication-connection-timeout` | `TERN_PUBLICATION_CONNECTION_TIMEOUT` | `publication_connection_timeout` | `5s` |
//! | sender loss (testing) | `--sender-loss` | `TERN_SENDER_LOSS` | `sender_loss` | off; `drop=0.1,duplicate=0.01,reorder=0.01,gap=8192/1024,seed=7` |
//! | receiver loss (testing) | `--receiver-loss` | `TERN_RECEIVER_LOSS` | `receiver_loss` | off; as sender loss |
//! | UDP system calls: `mmsg` (`sendmmsg`/`recvmmsg`), `io_uring`, or `io_uring_sqpoll` (a kernel thread polls each ring; never the default) | `--udp-io` | `TERN_UDP_IO` | `udp_io` | `mmsg` |
//! | connected unicast send sockets (`false`: hear control frames from any source) | `--udp-connect` | `TERN_UDP_CONNECT` | `udp_connect` | `true` |
//! | MTU | `--mtu` | `TERN_MTU` | `mtu` | `1408` |
//! | client liveness timeout | `--client-liveness-timeout` | `TERN_CLIENT_LIVENESS_TIMEOUT` | `client_liveness_timeout` | `10s` |
//! | publication unblock timeout | `--unblock-timeout` | `TERN_UNBLOCK_TIMEOUT` | `unblock_timeout` | `15s` |
//! | publication linger | `--linger` | `TERN_LINGER` | `linger` | `5s` |
//! | untethered window limit timeout | `--untethered-window-limit-timeout` | `TERN_UNTETHERED_WINDOW_LIMIT_TIMEOUT` | `untethered_window_limit_timeout` | `5s` |
//! | untethered resting timeout | `--untethered-resting-timeout` | `TERN_UNTETHERED_RESTING_TIMEOUT` | `untethered_resting_timeout` | `10s` |
//! | driver timeout (stale directory) | `--driver-timeout` | `TERN_DRIVER_TIMEOUT` | `driver_timeout` | `10s` |
//! | counters | `--counters` | `TERN_COUNTERS` | `counters` | `8192` |
//!
//! Precedence: CLI flag, then environment, then the TOML file (`--config`), then the default.
//! Sizes accept `k`, `m` and `g`; durations `ns`, `us`, `ms` and `s`.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use crate::agent::{Clock, IdleStrategy, SystemClock};
use crate::cnc::CncLayout;

/// How the driver's agents (conductor, sender, receiver) are spread over threads; see
/// [`crate::driver`] for the threads each mode starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadingMode {
    /// Conductor, sender and receiver on three threads.
    Dedicated,
    /// Conductor on one thread, sender and receiver on another.
    SharedNetwork,
    /// Everything on one thread.
    #[default]
    Shared,
    /// No thread: the embedding application calls the driver's duty cycle itself.
    Invoker,
}

impl std::str::FromStr for ThreadingMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "dedicated" => Ok(Self::Dedicated),
            "shared-network" => Ok(Self::SharedNetwork),
            "shared" => Ok(Self::Shared),
            "invoker" => Ok(Self::Invoker),
            other => Err(format!(
                "threading mode {other:?} is not dedicated, shared-network, shared or invoker"
            )),
        }
    }
}

/// Everything a driver needs to start.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The driver directory.
    pub dir: PathBuf,
    /// How agents map to threads.
    pub threading_mode: ThreadingMode,
    /// What idle threads do.
    pub idle_strategy: IdleStrategy,
    /// Term length of IPC publications that do not name one.
    pub ipc_term_length: u32,
    /// MTU of publications that do not name one.
    pub mtu: u32,
    /// Page size log buffers are aligned to.
    pub page_size: u32,
    /// A client silent this long is closed and its resources released.
    pub client_liveness_timeout: Duration,
    /// A publication whose consumers have not moved this long while its tail is ahead is
    /// unblocked (a publisher died mid-claim).
    pub publication_unblock_timeout: Duration,
    /// How long a closed publication waits for its subscribers to drain.
    pub publication_linger: Duration,
    /// How long an untethered subscriber may hold the publisher at its limit before it is left
    /// behind.
    pub untethered_window_limit_timeout: Duration,
    /// How long a left-behind untethered subscriber rests before it rejoins at the tail.
    pub untethered_resting_timeout: Duration,
    /// A driver directory whose driver has not stamped its heartbeat this long is stale.
    pub driver_timeout: Duration,
    /// How often the conductor runs its timers.
    pub timer_interval: Duration,
    /// Sizes of the CnC file's sections.
    pub cnc_layout: CncLayout,
    /// Remove the directory's files when the driver stops.
    pub delete_on_shutdown: bool,
    /// `SO_RCVBUF` asked for a UDP subscription's socket whose channel names no `so-rcvbuf`
    /// (the kernel grants at most `net.core.rmem_max`). A receiver window is never more than
    /// the granted buffer holds: what overflows the socket is lost and must be asked for again.
    pub socket_receive_buffer: u32,
    /// The longest term a publication image may have: a SETUP asking for more (a file of three
    /// such terms in the driver directory) is refused and logged. Senders are input.
    pub max_image_term_length: u32,
    /// A publication image that receives nothing this long goes away (Aeron: 10 s).
    pub image_liveness_timeout: Duration,
    /// A network publication without a status message this long is not connected (Aeron: 5 s).
    pub publication_connection_timeout: Duration,
    /// Bytes per term of a UDP publication whose channel names no `term-length`.
    pub udp_term_length: u32,
    /// Loss the sender applies to the datagrams it sends (tests and experiments; off unless
    /// set, as `drop=R[,duplicate=R][,seed=N]`).
    pub sender_loss: Option<super::loss_generator::LossConfig>,
    /// Loss the receiver applies to the datagrams it reads (as `sender_loss`).
    pub receiver_loss: Option<super::loss_generator::LossConfig>,
    /// How UDP sockets send and receive: `sendmmsg`/`recvmmsg`, or io_uring.
    pub udp_io: crate::udp_transport::UdpIo,
    /// Whether a unicast publication's socket is connected to its endpoint (as Aeron's are by
    /// default): the kernel keeps the route and drops control frames from other sources.
    /// `false` for receivers whose replies leave from another address than the endpoint.
    pub udp_connect: bool,
    /// Where the driver's agents read the time (once per duty cycle): the system clock, or a
    /// [`ManualClock`](crate::agent::ManualClock) that tests step. Not a setting operators make.
    pub clock: Arc<dyn Clock>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            dir: crate::directory::default_directory(),
            threading_mode: ThreadingMode::default(),
            idle_strategy: IdleStrategy::default(),
            ipc_term_length: 16 * 1024 * 1024,
            udp_term_length: 16 * 1024 * 1024,
            socket_receive_buffer: 2 * 1024 * 1024,
            max_image_term_length: 128 * 1024 * 1024,
            image_liveness_timeout: Duration::from_secs(10),
            publication_connection_timeout: Duration::from_secs(5),
            sender_loss: None,
            receiver_loss: None,
            udp_io: crate::udp_transport::UdpIo::default(),
            udp_connect: true,
            mtu: tern_codec::frame::MTU_DEFAULT,
            page_size: 4096,
            client_liveness_timeout: Duration::from_secs(10),
            publication_unblock_timeout: Duration::from_secs(15),
            publication_linger: Duration::from_secs(5),
            untethered_window_limit_timeout: Duration::from_secs(5),
            untethered_resting_timeout: Duration::from_secs(10),
            driver_timeout: Duration::from_secs(10),
            timer_interval: Duration::from_millis(1),
            cnc_layout: CncLayout::default(),
            delete_on_shutdown: true,
            clock: Arc::new(SystemClock),
        }
    }
}

impl DriverConfig {
    /// Applies one setting by its TOML key (also used for environment variables and flags).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let size = || {
            crate::channel::parse_size(value)
                .and_then(|size| u32::try_from(size).ok())
                .ok_or_else(|| format!("{key} = {value:?} is not a size such as 64k or 16m"))
        };
        let duration = || {
            crate::channel::parse_duration_ns(value)
                .map(Duration::from_nanos)
                .ok_or_else(|| format!("{key} = {value:?} is not a duration such as 10s or 5ms"))
        };
        match key {
            "dir" => self.dir = PathBuf::from(value),
            "threading_mode" => self.threading_mode = value.parse()?,
            "idle" => self.idle_strategy = value.parse()?,
            "ipc_term_length" => {
                let length = size()?;
                tern_codec::position::validate_log_term_length(length)
                    .map_err(|error| format!("{key}: {error}"))?;
                self.ipc_term_length = length;
            }
            "udp_term_length" => {
                let length = size()?;
                tern_codec::position::validate_log_term_length(length)
                    .map_err(|error| format!("{key}: {error}"))?;
                self.udp_term_length = length;
            }
            "so_rcvbuf" => self.socket_receive_buffer = size()?,
            "max_image_term_length" => {
                let length = size()?;
                tern_codec::position::validate_log_term_length(length)
                    .map_err(|error| format!("{key}: {error}"))?;
                self.max_image_term_length = length;
            }
            "image_liveness_timeout" => self.image_liveness_timeout = duration()?,
            "publication_connection_timeout" => {
                self.publication_connection_timeout = duration()?;
            }
            "sender_loss" => {
                self.sender_loss = Some(
                    super::loss_generator::LossConfig::parse(value)
                        .map_err(|error| format!("{key}: {error}"))?,
                );
            }
            "receiver_loss" => {
                self.receiver_loss = Some(
                    super::loss_generator::LossConfig::parse(value)
                        .map_err(|error| format!("{key}: {error}"))?,
                );
            }
            "udp_io" => self.udp_io = value.parse()?,
            "udp_connect" => {
                self.udp_connect = match value {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("{key} = {other:?} is not true or false")),
                };
            }
            "mtu" => {
                let mtu = size()?;
                tern_codec::frame::validate_mtu(mtu).map_err(|error| format!("{key}: {error}"))?;
                self.mtu = mtu;
            }
            "client_liveness_timeout" => self.client_liveness_timeout = duration()?,
            "unblock_timeout" => self.publication_unblock_timeout = duration()?,
            "linger" => self.publication_linger = duration()?,
            "untethered_window_limit_timeout" => self.untethered_window_limit_timeout = duration()?,
            "untethered_resting_timeout" => self.untethered_resting_timeout = duration()?,
            "driver_timeout" => self.driver_timeout = duration()?,
            "counters" => {
                let counters = usize::try_from(size()?).unwrap_or(0);
                if !(16..=1_000_000).contains(&counters) {
                    return Err(format!("{key} = {value:?}: from 16 to 1000000 counters"));
                }
                self.cnc_layout.counters = counters;
            }
            other => return Err(format!("unknown driver setting {other:?}")),
        }
        Ok(())
    }

    /// The settings' keys, in the order of the table above.
    pub const KEYS: [&'static str; 21] = [
        "dir",
        "threading_mode",
        "idle",
        "ipc_term_length",
        "udp_term_length",
        "so_rcvbuf",
        "max_image_term_length",
        "image_liveness_timeout",
        "publication_connection_timeout",
        "sender_loss",
        "receiver_loss",
        "udp_io",
        "udp_connect",
        "mtu",
        "client_liveness_timeout",
        "unblock_timeout",
        "linger",
        "untethered_window_limit_timeout",
        "untethered_resting_timeout",
        "driver_timeout",
        "counters",
    ];

    /// Applies `TERN_<KEY>` environment variables.
    pub fn apply_environment(&mut self) -> Result<(), String> {
        for key in Self::KEYS {
            let variable = format!("TERN_{}", key.to_uppercase());
            if let Ok(value) = std::env::var(&variable) {
                self.set(key, &value)
                    .map_err(|error| format!("{variable}: {error}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_refuse_bad_values() {
        let mut config = DriverConfig::default();
        config.set("ipc_term_length", "64k").unwrap();
        config.set("linger", "10ms").unwrap();
        config.set("threading_mode", "dedicated").unwrap();
        assert_eq!(config.ipc_term_length, 65536);
        assert_eq!(config.publication_linger, Duration::from_millis(10));
        assert_eq!(config.threading_mode, ThreadingMode::Dedicated);
        assert!(config.set("ipc_term_length", "1000").is_err());
        assert!(config.set("linger", "soon").is_err());
        config.set("udp_io", "io_uring").unwrap();
        assert_eq!(config.udp_io, crate::udp_transport::UdpIo::IoUring);
        assert!(config.set("udp_io", "epoll").unwrap_err().contains("mmsg"));
        config.set("udp_connect", "false").unwrap();
        assert!(!config.udp_connect);
        assert!(config.set("udp_connect", "maybe").is_err());
        assert!(
            config
                .set("colour", "blue")
                .unwrap_err()
                .contains("unknown")
        );
    }
}
