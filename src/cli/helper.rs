//! `mount.lsvfs` / `mount.fuse.lsvfs`: the lsvfs binary called by mount(8)
//! under one of those names (a symlink in /sbin), so that a volume mounts
//! from /etc/fstab:
//!
//! ```text
//! /var/lib/lsvfs/pg  /srv/pg  fuse.lsvfs  allow_other  0 0
//! ```
//!
//! mount(8) calls `mount.fuse.lsvfs VOLUME MOUNTPOINT [-sfnv] [-o OPTIONS]`.
//! Options that only mount(8), systemd or the kernel's generic mount flags
//! care about are accepted and ignored; `at=SYNC` mounts a view.

use super::{Usage, mount};
use crate::fuse::MountOptions;
use anyhow::Result;
use std::path::PathBuf;

/// The names under which the binary acts as a mount helper.
pub const NAMES: [&str; 2] = ["mount.lsvfs", "mount.fuse.lsvfs"];

/// Options mount(8) passes on that mean nothing to lsvfs.
fn generic(option: &str) -> bool {
    const IGNORED: [&str; 22] = [
        "defaults",
        "auto",
        "noauto",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "nofail",
        "_netdev",
        "async",
        "sync",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "atime",
        "noatime",
        "relatime",
        "strictatime",
    ];
    IGNORED.contains(&option)
        || option.starts_with("x-")
        || option.starts_with("comment=")
        || option.starts_with("nodiratime")
}

/// A parsed helper command line.
#[derive(Debug, PartialEq)]
struct Call {
    volume: PathBuf,
    mountpoint: PathBuf,
    options: String,
    at: Option<String>,
    fake: bool,
}

fn parse(args: &[String]) -> Result<Call, Usage> {
    let usage = || Usage("usage: mount.lsvfs VOLUME MOUNTPOINT [-sfnv] [-o OPTIONS]".into());
    let mut positional = Vec::new();
    let mut raw = Vec::new();
    let (mut sloppy, mut fake) = (false, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-o" => raw.push(args.next().ok_or_else(usage)?.clone()),
            "-t" | "-N" => {
                args.next().ok_or_else(usage)?;
            }
            flags if flags.starts_with('-') && flags.len() > 1 => {
                for flag in flags[1..].chars() {
                    match flag {
                        's' => sloppy = true,
                        'f' => fake = true,
                        'n' | 'v' => {}
                        _ => return Err(usage()),
                    }
                }
            }
            _ => positional.push(arg.clone()),
        }
    }
    let [volume, mountpoint] = <[String; 2]>::try_from(positional).map_err(|_| usage())?;
    let mut options = Vec::new();
    let mut at = None;
    for option in raw.iter().flat_map(|o| o.split(',')).map(str::trim) {
        if option.is_empty() || generic(option) {
            continue;
        }
        if let Some(sync) = option.strip_prefix("at=") {
            at = Some(sync.to_string());
        } else if MountOptions::parse(option).is_ok() {
            options.push(option);
        } else if !sloppy {
            return Err(Usage(format!(
                "unknown mount option '{option}' (lsvfs knows allow_other, default_permissions, no_writeback_cache, ro, rw, at=SYNC; mount's generic options are ignored)"
            )));
        }
    }
    Ok(Call {
        volume: volume.into(),
        mountpoint: mountpoint.into(),
        options: options.join(","),
        at,
        fake,
    })
}

/// Mounts as mount(8) asked.
pub fn run(args: &[String]) -> Result<()> {
    let call = parse(args)?;
    if call.fake {
        return Ok(());
    }
    let opts = MountOptions::parse(&call.options).map_err(Usage)?;
    let served = mount::Served {
        path: &call.volume,
        at: call.at.as_deref(),
        volume_id: None,
    };
    mount::mount(&served, &call.mountpoint, &opts, false, &call.options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> Result<Call, Usage> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn fstab_options_are_sorted_into_ours_and_ignored_ones() {
        let c = call(&[
            "/v",
            "/m",
            "-n",
            "-o",
            "rw,nofail,x-systemd.automount,_netdev,allow_other,noatime",
        ])
        .unwrap();
        assert_eq!(c.volume, PathBuf::from("/v"));
        assert_eq!(c.mountpoint, PathBuf::from("/m"));
        assert_eq!(c.options, "rw,allow_other");
        assert_eq!(c.at, None);
        assert!(!c.fake);
        let view = call(&["/v", "/m", "-o", "ro,at=before upgrade"]).unwrap();
        assert_eq!(view.at.as_deref(), Some("before upgrade"));
        assert_eq!(view.options, "ro");
        assert!(call(&["/v", "/m", "-fv"]).unwrap().fake);
    }

    #[test]
    fn unknown_options_and_bad_calls_are_refused_unless_sloppy() {
        let e = call(&["/v", "/m", "-o", "rw,compress=zstd"]).unwrap_err();
        assert!(e.0.contains("'compress=zstd'"), "{}", e.0);
        assert_eq!(
            call(&["/v", "/m", "-s", "-o", "compress=zstd"])
                .unwrap()
                .options,
            ""
        );
        assert!(call(&["/v"]).is_err());
        assert!(call(&["/v", "/m", "/x"]).is_err());
        assert!(call(&["/v", "/m", "-o"]).is_err());
        assert!(call(&["/v", "/m", "-q"]).is_err());
    }
}
