//! The man pages in man/ are generated from the clap definitions; this test
//! fails when they are out of date. `tools/gen-man` rewrites them (it runs
//! this test with LSVFS_UPDATE_MAN=1).

use std::path::Path;

/// lsvfs.1 and one lsvfs-SUBCOMMAND.1 per subcommand.
fn pages() -> Vec<(String, Vec<u8>)> {
    let root = lsvfs::cli::command();
    let mut out = Vec::new();
    let mut render = |words: String, cmd: clap::Command| {
        let name = words.replace(' ', "-");
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.name(name.clone()).bin_name(words))
            .render(&mut buf)
            .unwrap();
        out.push((format!("{name}.1"), buf));
    };
    for sub in root.get_subcommands() {
        render(format!("lsvfs {}", sub.get_name()), sub.clone());
    }
    render("lsvfs".to_string(), root);
    out
}

#[test]
fn man_pages_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("LSVFS_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for (name, bytes) in pages() {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date: {stale:?}; run tools/gen-man and commit man/"
    );
}
