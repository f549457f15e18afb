//! Lists an image the way isoread sees it: `cargo run -p isoread --example isols -- X.iso [udf|joliet|iso9660]`.
//! Each line: `d` or `f`, size, extent count, path.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use isoread::{FsKind, Iso};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: isols IMAGE.iso [udf|joliet|iso9660]");
        return ExitCode::from(2);
    };
    let kind = match args.get(1).map(String::as_str) {
        None => None,
        Some("udf") => Some(FsKind::Udf),
        Some("joliet") => Some(FsKind::Joliet),
        Some("iso9660") => Some(FsKind::Iso9660),
        Some(other) => {
            eprintln!("unknown file system {other:?}: udf, joliet or iso9660");
            return ExitCode::from(2);
        }
    };
    let path = Path::new(path);
    let opened = match kind {
        Some(k) => Iso::open_as(path, k),
        None => Iso::open(path),
    };
    match opened {
        Ok(iso) => {
            let mut out = std::io::stdout().lock();
            let mut lines = std::iter::once(format!("# {} {:?}", iso.kind(), iso.label())).chain(
                iso.entries().iter().map(|e| {
                    let t = if e.is_dir { 'd' } else { 'f' };
                    format!("{t} {:>12} {:>3} {}", e.size, e.extents.len(), e.path)
                }),
            );
            // A closed pipe (`| head`) ends the listing quietly.
            let _ = lines.try_for_each(|l| writeln!(out, "{l}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
