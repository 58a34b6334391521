//! kill -9 of a process writing through the engine: after reopening, every
//! write and delete it was answered for is there (the page cache survives a
//! killed process), every fsync'd one of course, and every sync point it
//! was answered for rebuilds to exactly the files that existed when it was
//! taken.

mod common;

use lsvfs::Volume;
use lsvfs::fs::{Fs, FsError, ROOT_OWNER};
use lsvfs::volume::ROOT_INO;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_VOLUME: &str = "LSVFS_TEST_KILL_VOLUME";
const CHILD_START: &str = "LSVFS_TEST_KILL_START";
/// The child keeps this many files, deleting the oldest as it goes, so that
/// however fast it writes, live data stays within the capacity rule while
/// the log keeps growing (and the archiver retiring).
const WINDOW: u64 = 400;

fn content(i: u64) -> Vec<u8> {
    let len = 100 + (i as usize * 397) % 1500;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// The child: creates files f{start}, f{start+1}, … forever, deleting
/// f{i - WINDOW} after f{i}, printing what it was answered for. Run only by
/// the test below, as a separate process.
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
        if let Some(old) = i.checked_sub(WINDOW) {
            match fs.unlink(ROOT_INO, format!("f{old}").as_bytes()) {
                Ok(()) => writeln!(out, "deleted {old}").unwrap(),
                Err(FsError::NotFound) => {}
                Err(e) => panic!("unlink f{old}: {e}"),
            }
        }
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

fn file_index(tree: Vec<(Vec<u8>, lsvfs::index::DirEntry)>) -> BTreeSet<u64> {
    tree.iter()
        .map(|(n, _)| String::from_utf8_lossy(n)[1..].parse().unwrap())
        .collect()
}

/// Runs one child on `vol` until it has printed `lines` lines (so that how
/// much is written does not depend on the machine's speed), kills it in the
/// middle of its work, and returns the lines it printed.
fn run_child(vol: &std::path::Path, start: u64, lines_wanted: usize) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VOLUME, vol)
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines.lock().unwrap().len() < lines_wanted {
        assert!(Instant::now() < deadline, "the child stopped writing");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    lines.lock().unwrap().clone()
}

#[test]
fn kill_9_loses_nothing_that_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v");
    let mut policy = common::small_policy();
    policy.segment_size = 1 << 20;
    // Few enough segments that the archiver retires some during the run.
    policy.working_set = 8;
    common::create(&vol, &policy).close().unwrap();
    // The files that exist, as the child was answered; and each sync
    // point with the files that existed when it was taken.
    let mut alive: BTreeSet<u64> = BTreeSet::new();
    let mut syncs: Vec<(u64, BTreeSet<u64>)> = Vec::new();
    let mut total_syncs = 0;
    let mut next = 0;
    for round in 0..6u64 {
        let lines = run_child(&vol, next, 2000 + round as usize * 1000);
        let mut written = 0;
        // This round's sync points, and the very first one again.
        syncs.truncate(syncs.len().min(1));
        let checked = syncs.len();
        for line in &lines {
            // The first line follows libtest's "test child_writer ... ".
            let line = line.rsplit("... ").next().unwrap_or(line);
            let mut words = line.split(' ');
            match (
                words.next(),
                words.next().and_then(|w| w.parse::<u64>().ok()),
            ) {
                (Some("written"), Some(i)) => {
                    alive.insert(i);
                    written += 1;
                }
                (Some("deleted"), Some(i)) => assert!(alive.remove(&i), "f{i} deleted twice"),
                (Some("sync"), Some(id)) => syncs.push((id, alive.clone())),
                _ => {}
            }
        }
        assert!(
            written > 10,
            "round {round}: child wrote only {written} files"
        );
        total_syncs += syncs.len() - checked;

        let fs = Fs::new(Volume::open(&vol).unwrap()).unwrap();
        let present = file_index(fs.volume().tree().list_dir(ROOT_INO, None));
        // Beyond what was answered, at most the file being created and the
        // one being deleted when the kill came differ.
        let last = alive.last().copied().unwrap_or(0);
        let extra: Vec<u64> = present.difference(&alive).copied().collect();
        assert!(
            extra.iter().all(|&i| i == last + 1),
            "unanswered files present: {extra:?} (last answered f{last})"
        );
        let missing: Vec<u64> = alive.difference(&present).copied().collect();
        assert!(
            missing.iter().all(|&i| i + WINDOW == last),
            "answered files missing: {missing:?} (last answered f{last})"
        );
        for i in alive.intersection(&present) {
            let (ino, attrs) = fs.lookup(ROOT_INO, format!("f{i}").as_bytes()).unwrap();
            assert_eq!(attrs.size, content(*i).len() as u64, "f{i}");
            assert_eq!(fs.read(ino, 0, 4096).unwrap(), content(*i), "f{i}");
        }
        // Views of older rounds read archived segments; check a dozen
        // spread over the round.
        let step = (syncs.len() / 12).max(1);
        for (id, want) in syncs.iter().step_by(step) {
            let view = fs.volume().view(*id).unwrap();
            let names = file_index(view.tree().list_dir(ROOT_INO, None));
            assert_eq!(&names, want, "sync point {id}");
        }
        // The next child goes on from what is there.
        next = present.last().map_or(0, |l| l + 1);
        alive = present;
        fs.into_volume().close().unwrap();
    }
    assert!(
        total_syncs >= 6,
        "only {total_syncs} sync points were taken"
    );
    let vol = Volume::open(&vol).unwrap();
    let archived = vol.status().archived_segments;
    vol.close().unwrap();
    assert!(archived > 0, "the archiver retired nothing");
}
