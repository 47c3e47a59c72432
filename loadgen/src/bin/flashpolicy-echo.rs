//! `flashpolicy-echo`: an echo server (one epoll loop) for the gateway and
//! bridge benchmarks; see [`flashpolicy_loadgen::echo_server`].
//!
//! Prints `listening on ADDR` on stderr once it accepts connections, then
//! serves until it is stopped.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use flashpolicy_loadgen::size::parse_size;
use flashpolicy_loadgen::{echo_server, sys};

/// The largest `--buffer`.
const MAX_BUFFER: usize = 64 << 20;

/// Echoes every byte on each TCP connection; half-closes when the client does.
#[derive(Parser, Debug)]
#[command(name = "flashpolicy-echo", version)]
struct Args {
    /// Address to listen on (port 0: one the OS picks, printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Each connection's buffer (`16KiB`, `64KiB`): at most this much is
    /// held per connection; while it is full the client is not read.
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    buffer: u64,
    /// The listen backlog.
    #[arg(long, default_value_t = 4096)]
    backlog: i32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = sys::raise_nofile_limit() {
        eprintln!("flashpolicy-echo: cannot raise the descriptor limit: {e}");
    }
    let listener = match echo_server::bind(args.listen, args.backlog) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flashpolicy-echo: bind {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("flashpolicy-echo: listening on {a}"),
        Err(e) => {
            eprintln!("flashpolicy-echo: {e}");
            return ExitCode::from(1);
        }
    }
    let cap = match usize::try_from(args.buffer) {
        Ok(c) if (1..=MAX_BUFFER).contains(&c) => c,
        _ => {
            eprintln!("flashpolicy-echo: --buffer must be 1 byte to 64 MiB");
            return ExitCode::from(2);
        }
    };
    match echo_server::serve(listener, cap) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashpolicy-echo: {e}");
            ExitCode::from(1)
        }
    }
}
