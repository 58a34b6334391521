//! Recovery from the S3 store alone, through the command line and real
//! mounts: a mounted volume whose store is `s3://`, files and sync points,
//! its segments sealed (and so shipped); then the volume directory is
//! deleted whole, and with only the URL and the AWS environment,
//! `sync-points` lists every sync point, `mount --at` serves each with its
//! recorded tree, `clone` makes a writable volume of the newest, and
//! `verify` reads every byte of the store and finds one flipped.

use super::common::facts::{Facts, assert_same, manifest};
use super::common::mount::{Detach, Mounted, lsvfs, run, view_tree, wait_listed};
use super::common::s3::{BUCKET, S3Server};
use lsvfs::store::BackingStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `lsvfs` with the environment that points at `server`.
fn lsvfs_on(server: &S3Server) -> Command {
    let mut cmd = lsvfs();
    cmd.envs(server.env());
    cmd
}

/// Files in a few directories, changed a little more at each step.
fn change(root: &Path, step: u32) {
    let dir = root.join(format!("d{}", step % 3));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = (0..(step * 7919) % 50_000)
        .map(|i| (i ^ step) as u8)
        .collect();
    std::fs::write(dir.join(format!("f{}", step % 5)), bytes).unwrap();
    if step % 4 == 3 {
        let _ = std::fs::remove_file(root.join(format!("d{}/f{}", (step + 1) % 3, step % 5)));
    }
}

#[test]
fn a_lost_volume_lists_mounts_and_clones_from_its_s3_url_alone() {
    let server = S3Server::start();
    let env = server.env();
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("s3://{BUCKET}/recovery");
    let args = [
        "--segment-size",
        "256K",
        "--working-set",
        "64",
        "--backing-store",
        &url,
    ];
    let m = Mounted::with_env(&args, "", &env);
    let mut recorded: BTreeMap<u64, BTreeMap<String, Facts>> = BTreeMap::new();
    for step in 0..40 {
        change(&m.mnt, step);
        if step % 8 == 7 {
            let out = run(lsvfs().arg("sync-point").arg(&m.mnt));
            recorded.insert(out.trim().parse().unwrap(), manifest(&m.mnt, true));
        }
    }
    std::fs::write(m.path("seal"), vec![7u8; 600_000]).unwrap();
    let ids: Vec<u64> = recorded.keys().copied().collect();
    let on_s3 = || lsvfs_on(&server);
    wait_listed(on_s3, Path::new(&url), None, &ids);
    m.unmount();
    std::fs::remove_dir_all(&m.volume).unwrap();

    for (id, want) in &recorded {
        let got = view_tree(on_s3, Path::new(&url), *id);
        assert_same(&got, want, &format!("sync point {id} from {url}"));
    }

    let (id, want) = recorded.iter().next_back().unwrap();
    let clone = m.tmp.path().join("clone");
    run(lsvfs_on(&server)
        .arg("clone")
        .arg(&url)
        .args(["--at", &id.to_string()])
        .arg(&clone));
    let mnt = m.tmp.path().join("clone-mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(lsvfs().arg("mount").arg(&clone).arg(&mnt));
    let _guard = Detach(&mnt);
    assert_same(
        &manifest(&mnt, true),
        want,
        "the clone of the newest, mounted",
    );
    run(lsvfs().arg("unmount").arg(&mnt));

    // The store alone verifies clean, every byte read; a byte flipped in
    // one object's frames is found and the object named.
    let verify = || {
        let out = lsvfs_on(&server)
            .arg("verify")
            .arg(&url)
            .arg("--read-data")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, said) = verify();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.trim_end().ends_with(": OK"), "{said}");
    let store = server.store("recovery");
    let mut objects = store.list().unwrap().into_iter();
    let (name, size) = objects.find(|(n, _)| n.ends_with(".lsa")).unwrap();
    let mut bytes = store.get(&name).unwrap();
    bytes[size as usize / 3] ^= 0x10;
    store.delete(&name).unwrap();
    store.put(&name, &bytes).unwrap();
    let (code, said) = verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&name), "the damaged object is named: {said}");
}
