//! The `oodcert` binary: a thin layer over the library.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc keeps freed pages for reuse: candle allocates a fresh buffer for every op, and glibc's
/// allocator returned the large ones to the kernel each time (page faults were ~15% of a GReg
/// training step; BENCHMARKS.md), and it is told to keep them (`oodcert::allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: first statement of main, before any thread exists.
    unsafe { oodcert::train::second_order::configure_at_startup() };
    oodcert::allocator::keep_freed_memory();
    // clap prints its own message; usage errors exit 2, --help/--version exit 0.
    let cli = match oodcert::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match oodcert::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oodcert: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
