//! Applications on a real mount: sqlite3 under many transactions, checked
//! after a clean remount and after kill -9 of the daemon; many processes
//! writing and reading the same files; the `.lsvfs/` control files.

mod common;

use common::mount::{Mounted, ensure_tool, lsvfs, run};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `n` transactions, each inserting a row and updating a running total.
fn transactions(from: u32, n: u32) -> String {
    let mut sql = String::new();
    for i in from..from + n {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO t(k, v) VALUES ({i}, randomblob(300)); \
             UPDATE total SET n = n + 1; COMMIT;\n"
        ));
    }
    sql
}

#[test]
fn sqlite_survives_remount_and_kill_9() {
    ensure_tool("sqlite3", "sqlite3");
    let m = Mounted::new(&["--segment-size", "4M"], "");
    let db = m.path("app.db");
    sqlite(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB); \
         CREATE TABLE total(n INTEGER); INSERT INTO total VALUES (0); \
         CREATE INDEX tv ON t(v);",
    );
    sqlite(&db, &transactions(0, 400));
    let check = "PRAGMA integrity_check; SELECT count(*) FROM t; SELECT n FROM total;";
    assert_eq!(sqlite(&db, check), "ok\n400\n400");
    m.remount();
    assert_eq!(sqlite(&db, check), "ok\n400\n400");

    // A writer in mid-stream when the daemon dies: every transaction it
    // reported committed must be there, and the database must be intact.
    let mut writer = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    let mut script = String::new();
    for i in 400..100_000 {
        script.push_str(&format!(
            "BEGIN; INSERT INTO t(k, v) VALUES ({i}, randomblob(300)); \
             UPDATE total SET n = n + 1; COMMIT; SELECT {i};\n"
        ));
    }
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    let mut stdout = writer.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.lines().count() < 300 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "sqlite3 stopped early");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    m.kill_daemon();
    let _ = writer.kill();
    let _ = writer.wait();
    let _ = feeder.join();
    let acknowledged: u32 = seen.lines().filter_map(|l| l.parse().ok()).max().unwrap();
    m.mount();
    let out = sqlite(&db, check);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("ok"), "{out}");
    let rows: u32 = lines.next().unwrap().parse().unwrap();
    let total: u32 = lines.next().unwrap().parse().unwrap();
    assert_eq!(rows, total, "rows and running total disagree");
    assert!(
        rows > acknowledged,
        "{rows} rows, but {acknowledged} was acknowledged"
    );
}

#[test]
fn many_processes_share_files() {
    let m = Mounted::new(&["--segment-size", "4M"], "");
    let shared = m.path("shared");
    std::fs::write(&shared, vec![0u8; 64 * 4096]).unwrap();
    // Each process owns every fourth block of the shared file and a file of
    // its own; it writes rounds of a pattern, reads all blocks, and checks
    // that its own hold its latest round. (Other processes' blocks may be
    // read mid-write: Linux does not make buffered reads atomic against
    // concurrent writes on any filesystem, so they are checked at the end.)
    let script = r#"
import os, sys
me, path, own = int(sys.argv[1]), sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_RDWR)
for rnd in range(40):
    for b in range(me, 64, 4):
        os.pwrite(fd, bytes([me * 50 + rnd % 50]) * 4096, b * 4096)
    for b in range(64):
        blk = os.pread(fd, 4096, b * 4096)
        if b % 4 == me and blk != bytes([me * 50 + rnd % 50]) * 4096:
            sys.exit(f"lost own write in block {b}")
    with open(own, "ab") as f:
        f.write(bytes([rnd]) * 1000)
    if rnd % 10 == 0:
        os.fsync(fd)
"#;
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new("python3")
                .args(["-c", script, &i.to_string()])
                .arg(&shared)
                .arg(m.path(&format!("own-{i}")))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let check = |m: &Mounted| {
        let data = std::fs::read(m.path("shared")).unwrap();
        for b in 0..64 {
            let owner = (b % 4) as u8;
            assert!(
                data[b * 4096..(b + 1) * 4096]
                    .iter()
                    .all(|&x| x == owner * 50 + 39)
            );
        }
        for i in 0..4 {
            let own = std::fs::read(m.path(&format!("own-{i}"))).unwrap();
            let want: Vec<u8> = (0..40u8).flat_map(|r| vec![r; 1000]).collect();
            assert_eq!(own, want, "own-{i}");
        }
    };
    check(&m);
    m.remount();
    check(&m);
}

fn write_label(path: &std::path::Path, label: &[u8]) -> std::io::Result<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    f.write_all(label)?;
    let mut answer = String::new();
    f.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn control_files() {
    let m = Mounted::new(&[], "allow_other");
    let ctl = m.path(".lsvfs/sync-point");

    std::fs::write(m.path("before"), b"in the sync point").unwrap();
    let answer = write_label(&ctl, b"nightly backup\n").unwrap();
    let fields: Vec<&str> = answer.trim_end().splitn(3, ' ').collect();
    assert_eq!(fields.len(), 3, "{answer:?}");
    let id: u64 = fields[0].parse().unwrap();
    assert!(fields[1].ends_with('Z'), "{answer:?}");
    assert_eq!(fields[2], "nightly backup");

    for bad in [
        &b"two\nlines"[..],
        &[b'x'; 257],
        &[0xff, 0xfe],
        b"tab\there",
    ] {
        let err = write_label(&ctl, bad).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{bad:?}");
    }
    assert!(write_label(&ctl, &[b'x'; 256]).is_ok());

    // Concurrent agents, each on its own handle, each get their own answer.
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let ctl = &ctl;
                s.spawn(move || write_label(ctl, format!("agent-{i}").as_bytes()).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        assert!(a.trim_end().ends_with(&format!(" agent-{i}")), "{a:?}");
        ids.push(a.split(' ').next().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "{answers:?}");

    // The CLI goes through the same file.
    let out = run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", "from cli"]));
    let cli_id: u64 = out.trim().parse().unwrap();
    assert!(cli_id > id);

    // Invisible in the root listing, refused to other users.
    let names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("before")]);
    let stats = std::fs::read_to_string(m.path(".lsvfs/stats")).unwrap();
    // `head` reads a buffer and seeks back: the snapshot files seek (when
    // they did not, head printed an error, yet exited 0).
    let out = Command::new("head")
        .arg("-2")
        .arg(m.path(".lsvfs/stats"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(head.lines().count(), 2, "{head}");
    assert!(stats.starts_with(&*head), "{head}");
    assert!(stats.contains("lsvfs_sync_points 11\n"), "{stats}");
    assert!(
        stats.contains("lsvfs_operations_total{op=\"sync_point\"} 11\n"),
        "{stats}"
    );
    for what in [
        "cat .lsvfs/stats",
        "ls .lsvfs",
        "echo x > .lsvfs/sync-point",
    ] {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
            ])
            .arg(format!("cd '{}' && {what}", m.mnt.display()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "nobody could run {what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Permission denied"), "{what}: {err}");
    }
    // Ordinary files stay usable by others under the usual permissions.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(m.path("before"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"in the sync point");

    // The sync point holds the file written just before it.
    m.unmount();
    let vol = lsvfs::Volume::open(&m.volume).unwrap();
    let view = vol.view(id).unwrap();
    let tree = view.tree();
    let e = tree.lookup(lsvfs::volume::ROOT_INO, b"before").unwrap();
    let size = tree.getattr(e.child).unwrap().unwrap().size;
    assert_eq!(
        tree.read(e.child, 0, 100, size).unwrap(),
        b"in the sync point"
    );
    vol.close().unwrap();
}

#[test]
fn writes_straddling_blocks_read_back() {
    let m = Mounted::new(&["--block-size", "4K"], "");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("f"))
        .unwrap();
    let mut model = vec![0u8; 300_000];
    let mut seed = 12345u64;
    for _ in 0..300 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (seed >> 33) as usize % 250_000;
        let len = (seed >> 13) as usize % 20_000 + 1;
        let byte = (seed >> 5) as u8;
        f.write_all_at(&vec![byte; len], off as u64).unwrap();
        model[off..off + len].fill(byte);
    }
    let end = model.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let size = f.metadata().unwrap().len() as usize;
    assert!(size >= end);
    let mut got = vec![0u8; size];
    f.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got[..], model[..size]);
}
