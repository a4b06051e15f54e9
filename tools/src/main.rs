//! `tern`: the operator CLI.
//!
//! | command | what it does |
//! |---|---|
//! | `tern driver` | runs a standalone media driver until SIGINT or SIGTERM (`--archive-dir`: with an archive) |
//! | `tern archive` | runs an archive, drives a running one, inspects an archive directory |
//! | `tern stat [--watch]` | prints every counter of a running driver |
//! | `tern errors` | prints a running driver's distinct error log |
//! | `tern pub` / `tern sub` | publish standard input line by line / print what arrives |
//! | `tern bench ping` / `tern bench throughput` | IPC round trip and throughput benchmarks |
//! | `tern decode` | decodes the Aeron frames of a captured datagram |
//! | `tern position` | position math between a stream position and term coordinates |
//! | `tern cluster sim` | the deterministic consensus simulator: many seeds, or one replayed with its trace |
//! | `tern cluster bench [--network]` | commands committed per second and commit round trip of the consensus core; with `--network`, of a real cluster beside a UDP ping |
//! | `tern cluster node` | runs a cluster member (with the sample KV service) until SIGINT or SIGTERM |
//! | `tern cluster client` | `add`, `get` and `load` as client sessions of a cluster |
//! | `tern cluster snapshot` | asks the cluster for a snapshot at one log position |
//! | `tern cluster describe` / `is-leader` / `list-members` / `recording-log` / `recovery-plan` / `errors` | a member's state, from its directory |

mod archive;
mod bench;
mod cluster;
mod cluster_bench;
mod cluster_node;
mod cluster_ops;
mod decode;
mod driver;
mod inspect;
mod pubsub;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tern: low-latency messaging, archive and cluster engine.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a standalone media driver until SIGINT or SIGTERM.
    // Boxed: its many flags would make every command as large as it.
    Driver(Box<driver::DriverArgs>),
    /// Archive tools: serve, record, list, describe, dump, verify, replay, truncate, purge,
    /// mark-valid, mark-invalid, migrate.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Print the counters of a running driver.
    Stat(inspect::StatArgs),
    /// Print the distinct error log of a running driver.
    Errors(inspect::ErrorsArgs),
    /// Print the loss report of a driver: per stream and source, the loss its receiver saw.
    Loss(inspect::LossArgs),
    /// Publish each line of standard input (or generated messages) to a stream.
    Pub(pubsub::PubArgs),
    /// Print each message of a stream on its own line.
    Sub(pubsub::SubArgs),
    /// Benchmarks with HDR percentiles or throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Decode the Aeron protocol frames of one datagram, given as hex.
    Decode(decode::DecodeArgs),
    /// Convert between a stream position and its term id and offset.
    Position(decode::PositionArgs),
    /// Consensus tools: the deterministic simulator and the core benchmark.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// The driver directory option every client command shares.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DirArg {
    /// The driver directory (default: $TERN_DIR, else /dev/shm/tern-<user>).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

impl DirArg {
    pub(crate) fn resolve(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(tern_engine::directory::default_directory)
    }
}

fn main() -> ExitCode {
    // Control-plane events (the archive's, for one) go to standard error, filtered by RUST_LOG
    // (default: warnings and errors).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Driver(args) => driver::run(&args),
        Command::Archive(command) => archive::run(&command),
        Command::Stat(args) => inspect::stat(&args),
        Command::Errors(args) => inspect::errors(&args),
        Command::Loss(args) => inspect::loss(&args),
        Command::Pub(args) => pubsub::publish(&args),
        Command::Sub(args) => pubsub::subscribe(&args),
        Command::Bench(command) => bench::run(&command),
        Command::Decode(args) => decode::decode(&args),
        Command::Position(args) => decode::position(&args),
        Command::Cluster(command) => cluster::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tern: {error:#}");
            ExitCode::FAILURE
        }
    }
}
