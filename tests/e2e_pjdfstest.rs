//! The pjdfstest POSIX conformance suite (the Rust rewrite from crates.io)
//! against a real mount. The suite is built into a cache outside the
//! repository on first use; its summary is printed and any failure fails
//! the test. (Skipped cases are listed in docs/SEMANTICS.md.)

mod common;

use common::mount::{Mounted, ensure_tool, run};
use std::path::PathBuf;
use std::process::Command;

const VERSION: &str = "0.2.2";

fn tools_root() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/lsvfs-tools")
}

fn pjdfstest() -> PathBuf {
    let bin = tools_root().join("bin/pjdfstest");
    if !bin.exists() {
        ensure_tool("setfacl", "acl");
        let dev = Command::new("dpkg")
            .args(["-s", "libacl1-dev"])
            .output()
            .unwrap();
        if !dev.status.success() {
            run(Command::new("apt-get").args(["install", "-y", "-qq", "libacl1-dev"]));
        }
        run(Command::new("cargo")
            .args([
                "install",
                "pjdfstest",
                "--locked",
                "--version",
                VERSION,
                "--root",
            ])
            .arg(tools_root()));
    }
    bin
}

/// The suite switches to these users; Debian has nobody:nogroup, and the
/// test creates tests:tests.
fn ensure_users() {
    if !Command::new("id")
        .arg("tests")
        .output()
        .unwrap()
        .status
        .success()
    {
        run(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "tests",
        ]));
    }
}

#[test]
fn pjdfstest_passes() {
    let bin = pjdfstest();
    ensure_users();
    let m = Mounted::new(&[], "allow_other");
    let config = m.tmp.path().join("pjdfstest.toml");
    std::fs::write(
        &config,
        "[features]\nposix_fallocate = {}\nrename_ctime = {}\nutime_now = {}\nutimensat = {}\n\n\
         [settings]\nnaptime = 0.01\nallow_remount = false\n\n\
         [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"tests\", \"tests\"]]\n",
    )
    .unwrap();
    run(Command::new("chmod").arg("0777").arg(&m.mnt));
    let out = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&m.mnt)
        .current_dir(&m.mnt)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    eprintln!("pjdfstest {VERSION}: {summary}");
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(
        failed.is_empty(),
        "pjdfstest failures: {failed:?}\n{summary}"
    );
    assert!(summary.starts_with("Summary: 0 failed"), "{summary}");
}
