//! The `aurora` node binary. Everything lives in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    aurora::cli::main()
}
