//! The `s3tap` proxy as a library (feature `proxy`): settings, the server and
//! the embedded store, so tests and other binaries can run it in-process.
//!
//! ```no_run
//! use clap::Parser;
//! use s3tap::proxy::{Args, Config, Proxy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let args = Args::parse_from(["s3tap", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
//! let config = Config::load(&args, |name| std::env::var(name).ok())?;
//! let proxy = Proxy::bind(config).await?;
//! println!("listening on {}", proxy.local_addr());
//! proxy.serve(s3tap::proxy::shutdown_signal()).await;
//! # Ok(())
//! # }
//! ```

// The TOML schema and the server's parts are not semver surface: only what
// is re-exported below is.
mod admin;
mod admin_listener;
mod bucket_notifications;
mod cli;
mod clients_reload;
mod config;
mod embedded;
mod error;
mod head;
mod limits;
mod metrics;
mod notify;
mod outbox;
mod request_log;
mod schema;
mod server;
mod tls;
mod workers;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Args;
pub use config::Config;
pub use embedded::EmbeddedStore;
pub use error::{ConfigError, StartError};
pub use outbox::OutboxSettings;
pub use schema::LogFormat;
pub use server::{shutdown_signal, Proxy};

/// Exit code for a setting that keeps the proxy from starting.
pub const EXIT_BAD_SETTINGS: u8 = 2;

#[doc(hidden)]
/// The `s3tap` binary: parses flags, reads the configuration, starts
/// logging and serves until SIGTERM/SIGINT. Startup errors print one line on
/// stderr and exit with code 2.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = &args.command {
        return cli::run(command, &args);
    }
    let config = match Config::load(&args, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    init_logging(config.log_format);
    for note in &config.notes {
        tracing::info!("{note}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.shared_threads)
        .thread_name("s3tap-shared")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    runtime.block_on(async {
        let proxy = match Proxy::bind(config).await {
            Ok(proxy) => proxy,
            Err(error) => return fail(&error),
        };
        if let Some(banner) = proxy.banner() {
            println!("{banner}");
        }
        proxy.serve(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("s3tap: {error}");
    ExitCode::from(EXIT_BAD_SETTINGS)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
