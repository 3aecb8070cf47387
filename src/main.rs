//! The `loyalty-bridge` command: the allocator, then the CLI (`src/cli/`) parses and dispatches.

mod cli;

use clap::Parser;

// See Cargo.toml: the request path is allocation-heavy, and glibc's allocator was a third of it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (`_RJEM_MALLOC_CONF` in the environment overrides
/// them). One arena for every thread: with jemalloc's default (4 per CPU) each worker thread
/// keeps its own share of a burst's memory. On tokio's work-stealing runtime, 2,000 requests at
/// once peaked at 47.9 MiB against 49.4, with 7 % less CPU for the burst (`benches/ab/arenas.sh`,
/// 3 alternated rounds); with the connection threads before, 55.5–57.2 against 61.6–64.4 MiB.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 10] = b"narenas:1\0";

/// Transparent huge pages put every arena the allocator touches in 2 MiB pages although the
/// bridge's heap is small and short-lived. mimalloc, the allocator before jemalloc, asked for
/// them; with 4 KiB pages the bridge's resident memory was about half (idle 31 -> 21 MiB;
/// 2,000 requests at once 131 -> 89 MiB peak in a probe), at no CPU cost measured (`benches/`,
/// issue #7). jemalloc does not ask, but a kernel set to `always` would give them all the same.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and changes only this process' page policy.
    // A kernel without it refuses the call, which changes nothing: the result is not needed.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Rust starts every program with SIGPIPE ignored, so a `println!` into a closed pipe
/// (`loyalty-bridge check | head -1`) panics with "failed printing to stdout". The commands that
/// print for a user end as any Unix tool does on a closed pipe: quietly, by the signal (status
/// 141). `serve` and `sandbox` keep it ignored: a client that goes away must cost a server one
/// connection (an error on that socket), never the process.
fn sigpipe(default: bool) {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_DFL or SIG_IGN installs no handler code; it
    // runs before any thread is started.
    unsafe {
        libc::signal(
            libc::SIGPIPE,
            if default {
                libc::SIG_DFL
            } else {
                libc::SIG_IGN
            },
        );
    }
    #[cfg(not(unix))]
    let _ = default;
}

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    // Before parsing: `--help | head -1` prints too.
    sigpipe(true);
    let cli = cli::Cli::parse();
    if cli.serves() {
        sigpipe(false);
    }
    cli.run()
}
