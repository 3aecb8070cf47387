//! The `loyalty-bridge` command: the allocator, then the CLI (`src/cli/`) parses and dispatches.

mod cli;

use clap::Parser;

// See Cargo.toml: the request path is allocation-heavy, and glibc's allocator was a third of it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (`_RJEM_MALLOC_CONF` in the environment overrides
/// them). One arena for every thread: with an arena per thread, each connection thread
/// (`server::lanes`) kept its own share of a burst's memory, and the two together peaked
/// 6–8 MiB higher (2,000 requests at once: 61.6–64.4 MiB against 55.5–57.2); no CPU cost per
/// recalc measured at saturation (rounds alternated with the default, 2 runs).
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

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    cli::Cli::parse().run()
}
