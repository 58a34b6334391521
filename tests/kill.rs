//! kill -9 of a process writing through the engine: after reopening, every
//! write it was answered for is there (the page cache survives a killed
//! process), every fsync'd one of course, and every sync point it was
//! answered for rebuilds to exactly the files made before it.

mod common;

use lsvfs::Volume;
use lsvfs::fs::{Fs, ROOT_OWNER};
use lsvfs::volume::ROOT_INO;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHILD_VOLUME: &str = "LSVFS_TEST_KILL_VOLUME";
const CHILD_START: &str = "LSVFS_TEST_KILL_START";

fn content(i: u64) -> Vec<u8> {
    let len = 100 + (i as usize * 397) % 1500;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// The child: creates files f{start}, f{start+1}, … forever, printing what
/// it was answered for. Run only by the test below, as a separate process.
#[test]
#[ignore = "child process of kill_9_loses_nothing_that_was_answered"]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_VOLUME) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let fs = Fs::new(Volume::open(dir.as_ref()).unwrap()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in start.. {
        let name = format!("f{i}");
        let (ino, _) = fs
            .create_file(ROOT_INO, name.as_bytes(), 0o644, ROOT_OWNER)
            .unwrap();
        fs.write(ino, 0, &content(i)).unwrap();
        writeln!(out, "written {i}").unwrap();
        if i % 3 == 0 {
            fs.fsync().unwrap();
            writeln!(out, "durable {i}").unwrap();
        }
        if i % 10 == 0 {
            let p = fs.volume().sync_point(&name, "kill test").unwrap();
            writeln!(out, "sync {} {i}", p.info.id).unwrap();
        }
        out.flush().unwrap();
    }
}

fn file_index(fs: &Fs) -> Vec<u64> {
    let mut v: Vec<u64> = fs
        .readdir(ROOT_INO)
        .unwrap()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name)[1..].parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn kill_9_loses_nothing_that_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v");
    let mut policy = common::small_policy();
    policy.segment_size = 1 << 20;
    // Room for the files of four rounds under the capacity rule, and few
    // enough segments that the archiver retires some during the run.
    policy.working_set = 16;
    common::create(&vol, &policy).close().unwrap();
    let mut start = 0;
    let mut syncs: Vec<(u64, u64)> = Vec::new();
    let mut total_syncs = 0;
    for round in 0..4u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_VOLUME, &vol)
            .env(CHILD_START, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(400 + round * 250));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let lines = lines.lock().unwrap().clone();
        let written: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("written ")?.parse().ok())
            .collect();
        assert!(
            written.len() > 10,
            "round {round}: child wrote only {} files",
            written.len()
        );
        // This round's sync points, and the very first one again.
        let checked = syncs.len().min(1);
        syncs.truncate(checked);
        syncs.extend(lines.iter().filter_map(|l| {
            let mut p = l.strip_prefix("sync ")?.split(' ');
            Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
        }));
        total_syncs += syncs.len() - checked;

        let fs = Fs::new(Volume::open(&vol).unwrap()).unwrap();
        let present = file_index(&fs);
        for i in &written {
            let (ino, attrs) = fs.lookup(ROOT_INO, format!("f{i}").as_bytes()).unwrap();
            assert_eq!(attrs.size, content(*i).len() as u64, "f{i}");
            assert_eq!(fs.read(ino, 0, 4096).unwrap(), content(*i), "f{i}");
        }
        // Views of older rounds read archived segments; check a dozen
        // spread over the round.
        let step = (syncs.len() / 12).max(1);
        for (id, upto) in syncs.iter().step_by(step) {
            let view = fs.volume().view(*id).unwrap();
            let names: Vec<u64> = view
                .tree()
                .list_dir(ROOT_INO, None)
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n)[1..].parse().unwrap())
                .collect();
            let want: Vec<u64> = present.iter().copied().filter(|i| i <= upto).collect();
            let mut names = names;
            names.sort_unstable();
            assert_eq!(names, want, "sync point {id}");
        }
        start = present.last().map_or(0, |l| l + 1);
        fs.into_volume().close().unwrap();
    }
    assert!(
        total_syncs >= 4,
        "only {total_syncs} sync points were taken"
    );
}
