//! SHA-256 of every member and every WIM input, in parallel, streaming.

use super::{BuildError, Ctx, Resolved};
use crate::progress::Event;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Streams `path` through SHA-256 (1 MiB reads), reporting bytes as it goes.
pub(crate) fn sha256_file(
    path: &Path,
    on_bytes: &dyn Fn(u64),
    cancel: &dyn Fn() -> bool,
) -> Result<[u8; 32], BuildError> {
    let mut f = std::fs::File::open(path).map_err(|e| BuildError::io("read", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel() {
            return Err(BuildError::Cancelled);
        }
        let n = f
            .read(&mut buf)
            .map_err(|e| BuildError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        on_bytes(n as u64);
    }
    Ok(h.finalize().into())
}

fn hash_all(
    ctx: &Ctx,
    files: &[(&Path, u64)],
    phase: &'static str,
) -> Result<Vec<[u8; 32]>, BuildError> {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let done = AtomicU64::new(0);
    let started = Instant::now();
    ctx.rep.event(Event::Begin { phase, total });
    let on_bytes = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        ctx.rep.event(Event::Progress {
            phase,
            done: d,
            total,
        });
    };
    let cancel = || ctx.cancel.is_cancelled();
    let out = files
        .par_iter()
        .map(|(p, _)| sha256_file(p, &on_bytes, &cancel))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.rep.event(Event::End {
        phase,
        elapsed: started.elapsed(),
    });
    Ok(out)
}

pub(super) fn hash_members(ctx: &Ctx, members: &[Resolved]) -> Result<Vec<[u8; 32]>, BuildError> {
    let files: Vec<(&Path, u64)> = members.iter().map(|m| (m.file.as_path(), m.size)).collect();
    hash_all(ctx, &files, "hash members")
}

/// SHA-256 of each WIM input file (the boot and OS images).
pub(super) fn hash_inputs(ctx: &Ctx) -> Result<BTreeMap<PathBuf, [u8; 32]>, BuildError> {
    let mut paths: Vec<PathBuf> = vec![
        ctx.plan.boot_image.source.clone(),
        ctx.plan.os_image.source.clone(),
    ];
    paths.sort();
    paths.dedup();
    if let Some(c) = &ctx.cache {
        // Through the input hash cache: a rebuild does not read them again.
        let digests = paths
            .par_iter()
            .map(|p| {
                crate::cache::hashes::file_digests(Some(c), p)
                    .map(|d| (p.clone(), d.sha256))
                    .map_err(|e| BuildError::io("read", p, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(digests.into_iter().collect());
    }
    let sized: Vec<(&Path, u64)> = paths
        .iter()
        .map(|p| {
            (
                p.as_path(),
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    let hashes = hash_all(ctx, &sized, "hash inputs")?;
    Ok(paths.into_iter().zip(hashes).collect())
}
