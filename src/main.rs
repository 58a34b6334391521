//! The `lsvfs` command: parses arguments and calls the engine. One line per
//! failure on stderr; exit code 1 for operational failures, 2 for usage.

mod cli;

fn main() {
    let code = cli::run();
    std::process::exit(code);
}
