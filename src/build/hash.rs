//! SHA-256 of every member and every WIM input, in parallel, streaming.

use super::{BuildError, Ctx, Resolved};
use crate::progress::Event;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub(crate) use crate::exec::sha256_file;

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

/// SHA-256 of every member: known ones (a restored export, a recorded boot
/// file) and content files the input hash cache knows are not read; the
/// others are read, content files through the hash cache (both digests, so
/// that the next build knows them).
pub(super) fn hash_members(ctx: &Ctx, members: &[Resolved]) -> Result<Vec<[u8; 32]>, BuildError> {
    let cache = ctx.cache.as_deref();
    let through_cache = |m: &Resolved| cache.is_some() && !m.in_tree && !m.never_cache;
    let known = |m: &Resolved| -> Option<[u8; 32]> {
        if let Some(k) = m.known {
            return Some(k.sha256);
        }
        let c = cache.filter(|_| through_cache(m))?;
        crate::cache::hashes::lookup(c, &m.file)
            .filter(|d| d.size == m.size)
            .map(|d| d.sha256)
    };
    let mut out: Vec<Option<[u8; 32]>> = members.iter().map(known).collect();
    let todo: Vec<usize> = (0..members.len()).filter(|&i| out[i].is_none()).collect();
    let (cached, plain): (Vec<usize>, Vec<usize>) =
        todo.into_iter().partition(|&i| through_cache(&members[i]));
    let files: Vec<(&Path, u64)> = plain
        .iter()
        .map(|&i| (members[i].file.as_path(), members[i].size))
        .collect();
    for (i, h) in plain.iter().zip(hash_all(ctx, &files, "hash members")?) {
        out[*i] = Some(h);
    }
    let read = cached
        .par_iter()
        .map(|&i| {
            let f = &members[i].file;
            crate::cache::hashes::file_digests(cache, f)
                .map(|d| (i, d.sha256))
                .map_err(|e| BuildError::io("read", f, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, h) in read {
        out[i] = Some(h);
    }
    Ok(out.into_iter().flatten().collect())
}

/// SHA-256 of each WIM input file (the boot and OS images).
pub(super) fn hash_inputs(ctx: &Ctx) -> Result<BTreeMap<PathBuf, [u8; 32]>, BuildError> {
    let mut paths: Vec<PathBuf> = vec![
        ctx.plan.boot_image.source.clone(),
        ctx.plan.os_image.source.clone(),
    ];
    paths.extend(ctx.plan.boot_image.parts.iter().cloned());
    paths.extend(ctx.plan.os_image.parts.iter().cloned());
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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::{Seek, SeekFrom, Write};

    fn plain(path: &Path) -> [u8; 32] {
        Sha256::digest(std::fs::read(path).unwrap()).into()
    }

    #[test]
    fn sparse_files_hash_as_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse.img");
        // Holes at the start, between two data runs and at the end.
        let mut f = std::fs::File::create(&p).unwrap();
        f.set_len(40 << 20).unwrap();
        for (at, byte) in [(9u64 << 20, 0xA5u8), (25 << 20, 0x3C)] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&vec![byte; 3 << 20]).unwrap();
        }
        f.sync_all().unwrap();
        let got = sha256_file(&p, &|_| {}, &|| false).unwrap();
        assert_eq!(got, plain(&p));
        let regions = crate::fsutil::regions(&std::fs::File::open(&p).unwrap(), 40 << 20);
        assert_eq!(regions.first().map(|r| r.0), Some(0));
        assert_eq!(regions.last().map(|r| r.1), Some(40 << 20));
        for pair in regions.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "regions tile the file: {regions:?}");
        }
        // Dense and empty files too.
        let d = dir.path().join("dense");
        std::fs::write(&d, (0..3_000_017u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
        assert_eq!(sha256_file(&d, &|_| {}, &|| false).unwrap(), plain(&d));
        let e = dir.path().join("empty");
        std::fs::write(&e, b"").unwrap();
        assert_eq!(sha256_file(&e, &|_| {}, &|| false).unwrap(), plain(&e));
    }
}
