//! `tern driver`: a standalone media driver.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tern_engine::agent::Idler;
use tern_engine::driver::{DriverConfig, MediaDriver, ThreadingMode};

/// Arguments of `tern driver`. Each setting may also come from `TERN_<SETTING>` or the TOML
/// file; see `tern_engine::driver::config` for the table of settings.
#[derive(Debug, clap::Args)]
pub(crate) struct DriverArgs {
    /// The driver directory (default: $TERN_DIR, else /dev/shm/tern-<user>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A TOML file of settings (keys as in the settings table: ipc_term_length = "64m", ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep the directory's files when the driver stops.
    #[arg(long)]
    keep: bool,
    /// dedicated (conductor, sender, receiver: three threads), shared-network (two), shared
    /// (one), or invoker (no driver thread: this process's main thread runs the agents).
    #[arg(long)]
    threading_mode: Option<String>,
    /// busy-spin, yield, backoff or sleep-<duration>.
    #[arg(long)]
    idle: Option<String>,
    /// Term length of IPC publications (e.g. 16m).
    #[arg(long)]
    ipc_term_length: Option<String>,
    /// Term length of UDP publications whose channel names none (e.g. 16m).
    #[arg(long)]
    udp_term_length: Option<String>,
    /// SO_RCVBUF asked for UDP subscription sockets (e.g. 2m; the kernel caps it at
    /// net.core.rmem_max).
    #[arg(long)]
    so_rcvbuf: Option<String>,
    /// The longest term a publication image may have; a SETUP asking for more is refused
    /// (e.g. 128m).
    #[arg(long)]
    max_image_term_length: Option<String>,
    /// A publication image that hears nothing this long goes away (e.g. 10s).
    #[arg(long)]
    image_liveness_timeout: Option<String>,
    /// A UDP publication without a status message this long is not connected (e.g. 5s).
    #[arg(long)]
    publication_connection_timeout: Option<String>,
    /// Loss the sender injects, for testing: drop=R[,duplicate=R][,seed=N].
    #[arg(long)]
    sender_loss: Option<String>,
    /// Loss the receiver injects, for testing: drop=R[,duplicate=R][,seed=N].
    #[arg(long)]
    receiver_loss: Option<String>,
    /// How UDP sockets reach the kernel: mmsg (sendmmsg/recvmmsg, the default), io_uring, or
    /// io_uring_sqpoll (a kernel thread polls each socket's ring).
    #[arg(long)]
    udp_io: Option<String>,
    /// Whether unicast publication sockets are connected to their endpoint: true (default, as
    /// Aeron) or false (hear control frames from any source address).
    #[arg(long)]
    udp_connect: Option<String>,
    /// Default MTU.
    #[arg(long)]
    mtu: Option<String>,
    /// Close a client silent this long (e.g. 10s).
    #[arg(long)]
    client_liveness_timeout: Option<String>,
    /// Unblock a log stuck this long behind a dead publisher (e.g. 15s).
    #[arg(long)]
    unblock_timeout: Option<String>,
    /// How long a closed publication waits for its subscribers (e.g. 5s).
    #[arg(long)]
    linger: Option<String>,
    /// How long an untethered subscriber may hold publishers at the limit.
    #[arg(long)]
    untethered_window_limit_timeout: Option<String>,
    /// How long a left-behind untethered subscriber rests before rejoining.
    #[arg(long)]
    untethered_resting_timeout: Option<String>,
    /// A directory whose driver is silent this long is stale.
    #[arg(long)]
    driver_timeout: Option<String>,
    /// How many counters the CnC file holds.
    #[arg(long)]
    counters: Option<String>,
    /// Run an archive in this process, keeping its catalog and segment files here.
    #[arg(long)]
    archive_dir: Option<PathBuf>,
    /// The archive's settings (with --archive-dir).
    #[command(flatten)]
    archive: crate::archive::ArchiveSettings,
}

/// Builds the configuration: defaults, then the TOML file, then the environment, then flags.
pub(crate) fn config(args: &DriverArgs) -> Result<DriverConfig> {
    let mut config = DriverConfig::default();
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", path.display()))?;
        for (key, value) in &table {
            let value = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                other => bail!(
                    "{}: {key} = {other:?} is not a string or number",
                    path.display()
                ),
            };
            config
                .set(key, &value)
                .map_err(anyhow::Error::msg)
                .with_context(|| path.display().to_string())?;
        }
    }
    config.apply_environment().map_err(anyhow::Error::msg)?;
    let flags = [
        ("threading_mode", &args.threading_mode),
        ("idle", &args.idle),
        ("ipc_term_length", &args.ipc_term_length),
        ("udp_term_length", &args.udp_term_length),
        ("so_rcvbuf", &args.so_rcvbuf),
        ("max_image_term_length", &args.max_image_term_length),
        ("image_liveness_timeout", &args.image_liveness_timeout),
        (
            "publication_connection_timeout",
            &args.publication_connection_timeout,
        ),
        ("sender_loss", &args.sender_loss),
        ("receiver_loss", &args.receiver_loss),
        ("udp_io", &args.udp_io),
        ("udp_connect", &args.udp_connect),
        ("mtu", &args.mtu),
        ("client_liveness_timeout", &args.client_liveness_timeout),
        ("unblock_timeout", &args.unblock_timeout),
        ("linger", &args.linger),
        (
            "untethered_window_limit_timeout",
            &args.untethered_window_limit_timeout,
        ),
        (
            "untethered_resting_timeout",
            &args.untethered_resting_timeout,
        ),
        ("driver_timeout", &args.driver_timeout),
        ("counters", &args.counters),
    ];
    for (key, value) in flags {
        if let Some(value) = value {
            config
                .set(key, value)
                .map_err(|error| anyhow::anyhow!("--{}: {error}", key.replace('_', "-")))?;
        }
    }
    if let Some(dir) = &args.dir {
        config.dir.clone_from(dir);
    }
    config.delete_on_shutdown = !args.keep;
    Ok(config)
}

pub(crate) fn run(args: &DriverArgs) -> Result<()> {
    let config = config(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let invoked = config.threading_mode == ThreadingMode::Invoker;
    let mut idler = Idler::new(config.idle_strategy);
    let mut driver = MediaDriver::launch(config).context("starting the driver")?;
    let mut archive = match &args.archive_dir {
        Some(dir) => {
            let config = args.archive.config(dir.clone())?;
            match crate::archive::start_archive(driver.dir(), config) {
                Ok(runner) => Some(runner),
                Err(error) => {
                    driver.close();
                    return Err(error);
                }
            }
        }
        None => None,
    };
    let composition: Vec<String> = driver
        .composition()
        .iter()
        .map(|(thread, agents)| format!("{thread} [{}]", agents.join(", ")))
        .collect();
    eprintln!(
        "tern driver {} running in {} (pid {}): {}{}{}",
        env!("CARGO_PKG_VERSION"),
        driver.dir().display(),
        std::process::id(),
        composition.join(", "),
        if invoked { " on the main thread" } else { "" },
        args.archive_dir
            .as_ref()
            .map(|dir| format!(", archive [{}]", dir.display()))
            .unwrap_or_default()
    );
    let archive_alive = |archive: &Option<tern_engine::agent::AgentRunner>| {
        archive
            .as_ref()
            .is_none_or(tern_engine::agent::AgentRunner::is_running)
    };
    while !stop.load(Ordering::Acquire)
        && !driver.is_terminated()
        && driver.failure().is_none()
        && archive_alive(&archive)
    {
        if invoked {
            // Invoker mode: this thread is the driver's, under the configured idle strategy.
            idler.idle(driver.invoke());
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The archive is a client of the driver: it stops first.
    let archive_failure = archive
        .as_ref()
        .and_then(|runner| runner.failure().map(str::to_owned));
    if let Some(runner) = archive.as_mut() {
        runner.close();
    }
    if let Some(failure) = archive_failure {
        driver.close();
        anyhow::bail!("the archive stopped because {failure}");
    }
    if let Some(failure) = driver.failure() {
        // A dead agent must not look alive: stop, and say why with a non-zero exit. The error
        // log (`tern errors`) holds the same text until the directory is removed.
        driver.close();
        anyhow::bail!("the driver stopped because {failure}");
    }
    let reason = if driver.is_terminated() {
        "terminated by a client"
    } else {
        "signalled"
    };
    driver.close();
    eprintln!("tern driver stopped ({reason})");
    Ok(())
}
