//! The command line meets bad input: every case gets one clear line on
//! stderr, a non-zero exit code, and leaves the volume's files untouched.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lsvfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lsvfs"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run lsvfs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
            }
            let bytes = if meta.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(p, (bytes, meta.modified().unwrap()));
        }
    }
    out
}

/// Asserts a failure with `code` whose stderr is one line containing `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should mention {needle:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 || (code == 2 && lines.len() <= 2 && lines[1].contains("--help")),
        "expected one line, got {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A small volume with a few sync points written by `lsvfs demo`.
fn demo_volume(dir: &Path) -> PathBuf {
    let vol = dir.join("vol");
    let out = lsvfs(&["create", path(&vol), "--segment-size", "64K"]);
    assert!(out.status.success(), "{out:?}");
    let out = lsvfs(&["demo", path(&vol)]);
    assert!(out.status.success(), "{out:?}");
    vol
}

/// Runs `args`, expects the failure, and checks that nothing under `vol`
/// changed.
fn refused(vol: &Path, args: &[&str], code: i32, needle: &str) {
    let before = snapshot(vol);
    assert_fails(&lsvfs(args), code, needle);
    assert_eq!(snapshot(vol), before, "{args:?} modified the volume");
}

#[test]
fn bad_create_values_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = tmp.path().join("v");
    let cases: &[(&[&str], &str)] = &[
        (&["--block-size", "3K"], "power of two"),
        (&["--block-size", "4Q"], "unknown unit"),
        (&["--segment-size", "lots"], "not a size"),
        (&["--segment-size", "3M"], "power of two"),
        (&["--segment-size", "2G"], "between 64K and 1G"),
        (&["--working-set", "3"], "--working-set"),
        (&["--working-set=-1"], "--working-set"),
        (&["--compression-level", "23"], "--compression-level"),
        (
            &["--block-size", "64K", "--segment-size", "64K"],
            "too small",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["create", path(&vol)];
        args.extend_from_slice(extra);
        assert_fails(&lsvfs(&args), 2, needle);
        assert!(!vol.exists(), "{extra:?} created the directory");
    }
}

#[test]
fn create_refuses_non_empty_directories_and_existing_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("precious"), b"keep me").unwrap();
    refused(&dir, &["create", path(&dir)], 1, "is not empty");

    let vol = demo_volume(tmp.path());
    refused(&vol, &["create", path(&vol)], 1, "already an lsvfs volume");
}

#[test]
fn missing_or_invalid_policy_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    let policy = vol.join("lsvfs.toml");
    let text = std::fs::read_to_string(&policy).unwrap();

    let edited = text.replace("working_set = 64", "working_set = 2");
    assert_ne!(edited, text);
    std::fs::write(&policy, &edited).unwrap();
    refused(&vol, &["demo", path(&vol)], 1, "working_set");
    refused(&vol, &["sync-points", path(&vol)], 1, "working_set");

    std::fs::write(
        &policy,
        text.replace("format_version = 1", "format_version = 7"),
    )
    .unwrap();
    refused(&vol, &["demo", path(&vol)], 1, "format version 7");

    std::fs::write(&policy, "block_size = [").unwrap();
    refused(&vol, &["demo", path(&vol)], 1, "lsvfs.toml is not valid");

    std::fs::remove_file(&policy).unwrap();
    refused(&vol, &["demo", path(&vol)], 1, "not an lsvfs volume");
    refused(&vol, &["sync-points", path(&vol)], 1, "not an lsvfs volume");
}

fn segment(vol: &Path, seq: u64) -> PathBuf {
    vol.join("segments").join(format!("{seq:016}.seg"))
}

/// Rewrites bytes of a segment header and recomputes its crc, so that the
/// field and not the checksum is what the reader rejects.
fn rewrite_header(vol: &Path, at: usize, bytes: &[u8]) {
    let p = segment(vol, 1);
    let mut seg = std::fs::read(&p).unwrap();
    seg[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&seg[..88]);
    seg[88..92].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, seg).unwrap();
}

#[test]
fn corrupt_header_is_reported_with_where() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    let p = segment(&vol, 1);
    let mut seg = std::fs::read(&p).unwrap();
    seg[40] ^= 0x10;
    std::fs::write(&p, seg).unwrap();
    refused(
        &vol,
        &["demo", path(&vol)],
        1,
        "corrupt segment header in segment 1",
    );
}

#[test]
fn unknown_segment_version_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    rewrite_header(&vol, 8, &9u16.to_le_bytes());
    refused(&vol, &["demo", path(&vol)], 1, "version 9");
}

#[test]
fn segment_of_another_volume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    rewrite_header(&vol, 16, &[0xab; 16]);
    refused(&vol, &["demo", path(&vol)], 1, "belongs to another volume");
}

#[test]
fn second_writer_is_told_who_holds_the_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    let held = lsvfs::Volume::open(&vol).unwrap();
    let pid = std::process::id().to_string();
    refused(&vol, &["demo", path(&vol)], 1, &format!("pid {pid}"));
    // Listing sync points needs no lock and works beside the writer.
    let out = lsvfs(&["sync-points", path(&vol)]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo: version one"));
    held.close().unwrap();
}

/// The rows of the table under `heading` in docs/CLI.md, as (field, type).
fn documented_rows(heading: &str) -> Vec<(String, String)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CLI.md")).unwrap();
    let section = doc
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading}"));
    section
        .lines()
        .skip_while(|l| !l.starts_with("| field"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cell = |n: usize| l.split('|').nth(n).unwrap().trim().to_string();
            (cell(1).trim_matches('`').to_string(), cell(2))
        })
        .collect()
}

/// The field names of the table under `heading` in docs/CLI.md.
fn documented_fields(heading: &str) -> Vec<String> {
    let mut fields: Vec<String> = documented_rows(heading).into_iter().map(|r| r.0).collect();
    fields.sort();
    fields
}

/// The fields under `heading` whose type column says `note`.
fn documented_fields_described(heading: &str, note: &str) -> Vec<String> {
    documented_rows(heading)
        .into_iter()
        .filter(|(_, ty)| ty.contains(note))
        .map(|r| r.0)
        .collect()
}

/// The field names of a JSON object, those of nested objects as `outer.inner`.
fn json_fields(value: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, v) in value.as_object().expect("an object") {
        out.push(key.clone());
        if v.is_object() {
            out.extend(json_fields(v).into_iter().map(|k| format!("{key}.{k}")));
        }
    }
    out.sort();
    out
}

#[test]
fn json_output_has_the_shape_docs_cli_md_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    let out = lsvfs(&["status", path(&vol), "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // A volume that is not mounted has no freeze: the fields CLI.md marks
    // "mounted volumes only" (and those under them) are absent, and only they.
    let heading = "### `lsvfs status --json`";
    let mounted_only = documented_fields_described(heading, "mounted volumes only");
    assert_eq!(mounted_only, ["freeze"]);
    let unmounted: Vec<String> = documented_fields(heading)
        .into_iter()
        .filter(|f| {
            !mounted_only
                .iter()
                .any(|m| f == m || f.starts_with(&format!("{m}.")))
        })
        .collect();
    assert_eq!(json_fields(&status), unmounted);
    let out = lsvfs(&["sync-points", path(&vol), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let points: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 2);
    for p in points {
        // A null object (a sync point never restore-tested) has no fields.
        let present: Vec<String> = documented_fields("### `lsvfs sync-points --json`")
            .into_iter()
            .filter(|f| f.split_once('.').is_none_or(|(o, _)| !p[o].is_null()))
            .collect();
        assert_eq!(json_fields(p), present);
        assert!(p["check"].is_null(), "{p}");
    }
}

/// Fields under `heading` that belong to the top-level object, and those
/// of the entries of array `array` (documented as `array[].field`).
fn split_fields(fields: Vec<String>, array: &str) -> (Vec<String>, Vec<String>) {
    let prefix = format!("{array}[].");
    let (inner, outer): (Vec<String>, Vec<String>) =
        fields.into_iter().partition(|f| f.starts_with(&prefix));
    let inner = inner
        .iter()
        .map(|f| f[prefix.len()..].to_string())
        .collect();
    (outer, inner)
}

#[test]
fn verify_exits_0_when_clean_and_1_naming_what_a_damage_breaks() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    let out = lsvfs(&["verify", path(&vol), "--read-data"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim_end().ends_with(": OK"), "{stdout}");
    let out = lsvfs(&["verify", path(&vol), "--json"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (outer, _) = split_fields(documented_fields("### `lsvfs verify --json`"), "damaged");
    assert_eq!(json_fields(&report), outer);
    assert_eq!(report["ok"], true);
    assert_eq!(report["sync_points"], 2);

    // A byte of the first record: the log now ends before both sync points.
    let seg = segment(&vol, 1);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[4096 + 20] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let out = lsvfs(&["verify", path(&vol)]);
    assert_fails(&out, 1, "1 damaged");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("damaged: segment 1, primary segment "),
        "{stdout}"
    );
    assert!(stdout.contains("breaks sync points 1, 2"), "{stdout}");
    assert!(stdout.trim_end().ends_with(": 1 damaged"), "{stdout}");
    let out = lsvfs(&["verify", path(&vol), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let (_, inner) = split_fields(documented_fields("### `lsvfs verify --json`"), "damaged");
    let damage = &report["damaged"][0];
    assert_eq!(json_fields(damage), inner);
    assert_eq!(damage["kind"], "primary");
    assert_eq!(damage["breaks"], serde_json::json!([1, 2]));

    // --repair stores objects again from primary storage: it cannot mend
    // primary storage itself, and a store alone has none.
    let out = lsvfs(&["verify", path(&vol), "--repair", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["repaired"], serde_json::json!([]));
    assert_eq!(report["damaged"][0]["kind"], "primary");
    let out = lsvfs(&["verify", "s3://bucket/prefix", "--repair"]);
    assert_fails(&out, 1, "--repair needs the volume's directory");

    // Usage errors.
    assert_eq!(lsvfs(&["verify"]).status.code(), Some(2));
    let out = lsvfs(&["verify", path(&vol), "--volume", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_volume_and_a_bad_size_read_exactly_so() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = lsvfs(&["mount", path(&missing), path(&mnt)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "lsvfs: volume {0} does not exist; create it with `lsvfs create {0}`\n",
            missing.display()
        )
    );
    let out = lsvfs(&["mount", path(tmp.path()), path(&mnt)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "lsvfs: {} is not an lsvfs volume (no lsvfs.toml); `lsvfs create` makes one in a new or empty directory\n",
            tmp.path().display()
        )
    );
    let out = lsvfs(&["create", path(&missing), "--segment-size", "3M"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "lsvfs: --segment-size: 3M must be a power of two between 64K and 1G\n"
    );
    assert!(!missing.exists());
    // Issue 12.11: a store URL this version cannot serve is refused, not
    // made into a local directory named `gs:`.
    let create_in_tmp = |store: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lsvfs"))
            .current_dir(tmp.path())
            .args(["create", path(&missing), "--backing-store", store])
            .output()
            .unwrap()
    };
    let out = create_in_tmp("gs://bucket/vols");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "lsvfs: --backing-store: gs://bucket/vols: only s3:// URLs (S3-compatible object storage) or local directories are supported\n"
    );
    assert!(!missing.exists() && !tmp.path().join("gs:").exists());
    let out = create_in_tmp("s3://Bucket/vols");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(
        "lsvfs: --backing-store: s3://Bucket/vols: bucket name \"Bucket\" is not valid"
    ));
    // Issue 15: an s3:// store is kept as its URL, and no directory is made
    // for it (nor is the store contacted: it may not be reachable yet).
    let out = create_in_tmp("s3://bucket/vols/pg");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("store s3://bucket/vols/pg)\n"));
    let policy = std::fs::read_to_string(missing.join("lsvfs.toml")).unwrap();
    assert!(
        policy.contains("backing_store = \"s3://bucket/vols/pg\"\n"),
        "{policy}"
    );
    assert!(!missing.join("archive").exists() && !tmp.path().join("s3:").exists());
}

#[test]
fn retention_is_set_pinned_and_pruned_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = demo_volume(tmp.path());
    let v = path(&vol);
    refused(&vol, &["prune", v], 1, "no retention policy");
    refused(&vol, &["set", v, "--keep-last", "0"], 2, "--keep-last");
    refused(&vol, &["set", v, "--keep-within", "0s"], 2, "at least 1s");
    refused(&vol, &["set", v, "--auto-prune", "true"], 1, "needs a rule");
    refused(&vol, &["pin", v, "9"], 1, "no sync point 9");

    let out = lsvfs(&["set", v, "--keep-last", "1", "--keep-label", "rel-*"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("keep --keep-last 1 --keep-label \"rel-*\""),
        "{stdout}"
    );
    let out = lsvfs(&["pin", v, "demo: version one"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync point 1 pinned"));

    let out = lsvfs(&["prune", v, "--dry-run", "--json"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let documented = documented_fields("### `lsvfs prune --json`");
    let (outer, points) = split_fields(documented.clone(), "sync_points");
    let (outer, _) = split_fields(outer, "deleted");
    assert_eq!(json_fields(&report), outer);
    assert_eq!(json_fields(&report["sync_points"][0]), points);
    assert_eq!(
        report["sync_points"][0]["reasons"],
        serde_json::json!(["pinned"])
    );
    assert_eq!(
        report["sync_points"][1]["reasons"],
        serde_json::json!(["last"])
    );
    assert_eq!(report["forgotten"], serde_json::json!([]));

    let out = lsvfs(&["unpin", v, "1"]);
    assert!(out.status.success(), "{out:?}");
    let out = lsvfs(&["prune", v, "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("would forget 1 of 2 sync points"),
        "{stdout}"
    );
    let out = lsvfs(&["prune", v, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["forgotten"], serde_json::json!([1]));
    let out = lsvfs(&["sync-points", v, "--json"]);
    let points: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [2], "the forgotten sync point is not listed");
    refused(&vol, &["pin", v, "1"], 1, "no sync point 1");
    let out = lsvfs(&["status", v]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("retention              keep --keep-last 1"),
        "{stdout}"
    );
}
