//! The `aurora` node binary. Everything lives in the library; see `cli.rs`.

/// mimalloc instead of glibc malloc: request handling allocates many small, short-lived buffers
/// across threads, where glibc's arenas showed up as a tenth of the node's CPU in profiles.
/// Built without transparent huge pages (the crate's `no_thp`): mimalloc asks the kernel for
/// huge pages on its arenas, and every first touch of one then zeroes 2 MiB at once; while
/// live sessions grew that was a fifth of the node's CPU (turn dispatch: 8k new sessions/s
/// with them, 11k without). Wrapped to note refused allocations (see `aurora::alloc`).
#[global_allocator]
static GLOBAL: aurora::alloc::Noting = aurora::alloc::Noting;

fn main() -> std::process::ExitCode {
    aurora::cli::main()
}
