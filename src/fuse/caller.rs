//! Who is asking: the requesting process's owner and supplementary
//! groups, as the POSIX layer's permission checks need them.

use crate::fs::Owner;
use fuser::Request;

/// The owner a request's new files get.
pub fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// The supplementary groups of process `pid` (for access(2)), with `gid`.
pub fn groups_of(pid: u32, gid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut groups: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    groups.push(gid);
    groups
}
