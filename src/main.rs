//! The `lsvfs` command: see [`lsvfs::cli`]. One line per failure on stderr;
//! exit code 1 for operational failures, 2 for usage errors.

fn main() {
    std::process::exit(lsvfs::cli::run());
}
