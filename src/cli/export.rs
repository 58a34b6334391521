//! `lsvfs export`: a sync point as a pax tar archive, whole or since an
//! older sync point (see `crate::export`).

use super::sync_point::volume_of;
use crate::export::export;
use crate::format::VolumeId;
use crate::view::{Selector, View};
use anyhow::{Context, Result, bail};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to export and where.
pub struct Args<'a> {
    pub source: &'a Path,
    pub volume_id: Option<VolumeId>,
    pub at: &'a str,
    pub since: Option<&'a str>,
    /// A file, or `-` / none for standard output.
    pub output: Option<&'a Path>,
}

pub fn run(args: Args) -> Result<()> {
    let source = match crate::policy::store_url(args.source) {
        Some(_) => args.source.to_path_buf(),
        None => volume_of(args.source)?,
    };
    let open = |s: &str| View::open(&source, args.volume_id, &Selector::parse(s), &|_, _| {});
    let view = open(args.at)?;
    let since = args.since.map(open).transpose()?;
    let started = Instant::now();
    let to_file = args.output.filter(|p| *p != Path::new("-"));
    let report = match to_file {
        Some(path) => to_path(&view, since.as_ref(), path)?,
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal; give -o FILE or redirect it");
            }
            let w = BufWriter::with_capacity(1 << 20, stdout.lock());
            let (report, mut w) = export(&view, since.as_ref(), w)?;
            w.flush().context("cannot write the archive")?;
            report
        }
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "exported sync point {}{}: {} inodes, {} hard links, {} bytes of data, {} paths to remove; {} bytes in {secs:.2} s ({:.0} MiB/s)",
        view.point.info.id,
        since
            .as_ref()
            .map(|s| format!(" since {}", s.point.info.id))
            .unwrap_or_default(),
        report.inodes,
        report.links,
        report.data_bytes,
        report.deleted,
        report.archive_bytes,
        report.archive_bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
    );
    if report.skipped > 0 {
        eprintln!("{} sockets skipped (tar cannot hold them)", report.skipped);
    }
    Ok(())
}

/// Exports into the file `path`, made durable; a failure removes it.
fn to_path(view: &View, since: Option<&View>, path: &Path) -> Result<crate::export::Report> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let written = export(view, since, BufWriter::with_capacity(1 << 20, file))
        .map_err(anyhow::Error::from)
        .and_then(|(report, w)| {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(report)
        });
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written.with_context(|| {
        format!(
            "cannot export into {} (removed)",
            PathBuf::from(path).display()
        )
    })
}
