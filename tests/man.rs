//! The man pages in man/ and the shell completions in completions/ are
//! generated: the commands' pages and the completions from the clap
//! definitions, lsvfs-format(5) from docs/FORMAT.md. This test fails when
//! the committed files are out of date; `tools/gen-man` rewrites them (it
//! runs this test with LSVFS_UPDATE_MAN=1).

mod common;

use clap_complete::Shell;
use common::mount::ensure_tool;
use std::path::Path;

/// Every subcommand, nested ones too (`lsvfs agent postgres`), with the
/// words that call it.
fn subcommands() -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    let mut todo = vec![("lsvfs".to_string(), lsvfs::cli::command())];
    while let Some((words, cmd)) = todo.pop() {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let words = format!("{words} {}", sub.get_name());
            out.push((words.clone(), sub.clone()));
            todo.push((words, sub.clone()));
        }
    }
    out
}

/// lsvfs.1, one lsvfs-SUBCOMMAND.1 per subcommand (lsvfs-agent-postgres.1
/// for a nested one), and lsvfs-format.5.
fn pages() -> Vec<(String, Vec<u8>)> {
    let root = lsvfs::cli::command();
    let mut out = Vec::new();
    let mut render = |words: String, cmd: clap::Command| {
        let name = words.replace(' ', "-");
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.name(name.clone()).bin_name(words))
            .render(&mut buf)
            .unwrap();
        out.push((format!("man/{name}.1"), buf));
    };
    for (words, cmd) in subcommands() {
        render(words, cmd);
    }
    render("lsvfs".to_string(), root);
    let format = std::fs::read_to_string(root_dir().join("docs/FORMAT.md")).unwrap();
    out.push((
        "man/lsvfs-format.5".into(),
        roff_of_markdown(&format).into_bytes(),
    ));
    out
}

/// Bash and zsh completions.
fn completions() -> Vec<(String, Vec<u8>)> {
    [(Shell::Bash, "lsvfs.bash"), (Shell::Zsh, "_lsvfs")]
        .into_iter()
        .map(|(shell, file)| {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut lsvfs::cli::command(), "lsvfs", &mut buf);
            (format!("completions/{file}"), buf)
        })
        .collect()
}

fn root_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

/// Inline markup: `code` and **strong** in bold.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut rest = escape(text);
    rest = rest.replace("**", "`");
    for ch in rest.chars() {
        if ch == '`' {
            out.push_str(if bold { "\\fR" } else { "\\fB" });
            bold = !bold;
        } else {
            out.push(ch);
        }
    }
    out
}

/// The subset of markdown docs/FORMAT.md uses, as a man page: headings,
/// paragraphs, bullet lists (continued by indented lines), fenced code and
/// tables (through tbl).
fn roff_of_markdown(md: &str) -> String {
    let mut out = String::from("'\\\" t\n.TH LSVFS-FORMAT 5 \"\" \"lsvfs\" \"File Formats\"\n");
    out.push_str(".SH NAME\nlsvfs-format \\- the on-disk format of lsvfs volumes\n");
    // Ragged right: table cells are too narrow to justify.
    out.push_str(".na\n");
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("# ") {
            out.push_str(&format!(".SH DESCRIPTION\n{}\n.PP\n", inline(title)));
        } else if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!(".SH \"{}\"\n", inline(&h.to_uppercase())));
        } else if let Some(h) = line.strip_prefix("### ") {
            out.push_str(&format!(".SS \"{}\"\n", inline(h)));
        } else if line.starts_with("```") {
            out.push_str(".PP\n.nf\n");
            for code in lines.by_ref().take_while(|l| !l.starts_with("```")) {
                out.push_str(&format!("{}\n", escape(code)));
            }
            out.push_str(".fi\n");
        } else if line.starts_with('|') {
            let mut rows = vec![line];
            while let Some(next) = lines.next_if(|l| l.starts_with('|')) {
                rows.push(next);
            }
            let cells = |row: &str| -> Vec<String> {
                row.trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|c| inline(c.trim()))
                    .collect()
            };
            let columns = cells(rows[0]).len();
            out.push_str(".TS\nallbox tab(\t);\n");
            out.push_str(&format!("{}.\n", vec!["lx"; columns].join(" ")));
            for row in rows.iter().filter(|r| !r.contains("---")) {
                let cells: Vec<String> = cells(row)
                    .into_iter()
                    .map(|c| format!("T{{\n{c}\nT}}"))
                    .collect();
                out.push_str(&format!("{}\n", cells.join("\t")));
            }
            out.push_str(".TE\n");
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(&format!(".IP \\(bu 2\n{}\n", inline(item)));
            while let Some(more) = lines.next_if(|l| l.starts_with("  ")) {
                out.push_str(&format!("{}\n", inline(more.trim())));
            }
        } else if line.trim().is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&format!("{}\n", inline(line)));
        }
    }
    out
}

#[test]
fn generated_files_are_up_to_date() {
    let update = std::env::var_os("LSVFS_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for (name, bytes) in pages().into_iter().chain(completions()) {
        let path = root_dir().join(&name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "generated files out of date: {stale:?}; run tools/gen-man and commit man/ and completions/"
    );
}

/// Every page renders without a warning from groff (what `man -l` runs).
#[test]
fn man_pages_render_cleanly() {
    ensure_tool("man", "man-db");
    for (name, bytes) in pages() {
        let path = std::env::temp_dir().join(format!(
            "lsvfs-man-{}-{}",
            std::process::id(),
            name.replace('/', "-")
        ));
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(out.status.success(), "{name}: man failed");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "{name}: {warnings}");
        assert!(!out.stdout.is_empty(), "{name} rendered nothing");
    }
}

/// Every subcommand's --help shows at least one example.
#[test]
fn every_subcommand_has_an_example() {
    for (words, sub) in subcommands() {
        let help = sub.clone().render_long_help().to_string();
        assert!(
            help.contains("Example: lsvfs "),
            "{words} --help has no example"
        );
    }
}
