//! The `aurora` node binary. Everything lives in the library; see `cli.rs`.

/// mimalloc instead of glibc malloc: request handling allocates many small, short-lived buffers
/// across threads, where glibc's arenas showed up as a tenth of the node's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aurora::cli::main()
}
