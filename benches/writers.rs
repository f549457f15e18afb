//! `cargo bench`: the writer benchmark (our harness, see `src/bench.rs`).
//!
//! Times mediabuild's native WIM writer, wimlib's writer through the library
//! and `wimlib-imagex capture` side by side on a generated media tree, at LZX
//! and XPRESS, 1 and 2 threads, checking every output. Environment:
//! `MEDIABUILD_BENCH_SIZE` (default 1GiB), `MEDIABUILD_BENCH_CONTENT`
//! (`mixed` or `compressible`), `MEDIABUILD_BENCH_DIR` (default target/bench-work).

use mediabuild::bench::{self, BenchOptions, Content, Writer};
use mediabuild::recipe::Compression;
use std::path::PathBuf;

fn main() {
    // `cargo test --benches` runs this with --test-ish args: skip the long run then.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let size = std::env::var("MEDIABUILD_BENCH_SIZE")
        .ok()
        .and_then(|s| mediabuild::units::parse_size(&s))
        .unwrap_or(1 << 30);
    let content = match std::env::var("MEDIABUILD_BENCH_CONTENT").as_deref() {
        Ok("compressible") => Content::Compressible,
        _ => Content::Mixed,
    };
    let dir = std::env::var_os("MEDIABUILD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-work"))
        });
    let opts = BenchOptions {
        dir,
        size,
        files: std::env::var("MEDIABUILD_BENCH_FILES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(14000),
        content,
        writers: vec![Writer::Native, Writer::Wimlib, Writer::Imagex],
        compressions: vec![Compression::Lzx, Compression::Xpress],
        threads: vec![1, 2],
        repeat: std::env::var("MEDIABUILD_BENCH_REPEAT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
        exe: PathBuf::from(env!("CARGO_BIN_EXE_mediabuild")),
    };
    match bench::run(&opts, &mut |l| eprintln!("{l}")) {
        Ok(r) => {
            print!("{}", r.render());
            if !r.all_ok() {
                eprintln!("some outputs failed their checks");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(2);
        }
    }
}
