//! Bridge from the media tree to our own parallel WIM writer (`crate::wimwrite`).

use crate::exec::{BuildError, Resolved};
use crate::recipe::Compression;
use crate::wimwrite::{self, Content, EntryKind, WimEntry, WimReport, WimWriteError, WriteOptions};
use std::path::Path;
use std::sync::atomic::AtomicBool;

impl From<WimWriteError> for BuildError {
    fn from(e: WimWriteError) -> Self {
        match e {
            WimWriteError::Cancelled => BuildError::Cancelled,
            WimWriteError::CacheCorrupt(id) => BuildError::CacheCorrupt(id),
            e => BuildError::WimWrite(e),
        }
    }
}

fn compression(c: Compression) -> wimwrite::Compression {
    match c {
        Compression::None => wimwrite::Compression::None,
        Compression::Xpress => wimwrite::Compression::Xpress,
        Compression::Lzx => wimwrite::Compression::Lzx,
        Compression::Lzms => wimwrite::Compression::Lzms,
    }
}

/// One entry per media member, read from wherever the member's bytes are.
pub fn entries(members: &[Resolved]) -> Vec<WimEntry> {
    members
        .iter()
        .map(|m| WimEntry {
            path: m.path.clone(),
            kind: EntryKind::File {
                size: m.size,
                content: Content::Path(m.file.clone()),
            },
        })
        .collect()
}

/// One entry per file under `dir` (the benchmark's input).
pub fn entries_from_dir(dir: &Path) -> Result<Vec<WimEntry>, BuildError> {
    let files = crate::fsutil::walk(dir).map_err(|e| BuildError::io("read", dir, e))?;
    Ok(files
        .into_iter()
        .map(|f| WimEntry {
            path: f.rel,
            kind: EntryKind::File {
                size: f.size,
                content: Content::Path(f.abs),
            },
        })
        .collect())
}

/// What to write.
pub struct NativeSpec<'a> {
    pub compression: Compression,
    pub threads: usize,
    pub guid: [u8; 16],
    pub epoch: i64,
    pub name: &'a str,
    pub description: Option<&'a str>,
}

/// Writes `entries` as a one-image WIM to `out`.
pub fn write(
    entries: &[WimEntry],
    out: &Path,
    spec: &NativeSpec,
    report: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<WimReport, BuildError> {
    write_with(entries, out, spec, None, report, cancel).map(|r| r.0)
}

/// The media members as a WIM at `out`, through the build cache when there
/// is one: stored resources are reused, new ones stored after the write.
/// A corrupted entry found while copying is dropped and the WIM written
/// again (at most a few times; each retry has one entry fewer to trust).
pub fn write_members(
    ctx: &crate::exec::Ctx,
    members: &[Resolved],
    out: &Path,
    spec: &NativeSpec,
    report: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<WimReport, BuildError> {
    use crate::cache::{hashes::Stamp, resources};
    let mut entries = entries(members);
    entries.extend(ctx.plan.media.dirs.iter().map(|d| WimEntry {
        path: d.clone(),
        kind: EntryKind::Dir,
    }));
    let Some(cache) = ctx.cache.as_ref() else {
        return write(&entries, out, spec, report, cancel);
    };
    let known = members
        .iter()
        .filter_map(|m| m.known.map(|k| (m.file.clone(), k)))
        .collect();
    let never = members
        .iter()
        .filter(|m| m.never_cache)
        .map(|m| m.file.clone())
        .collect();
    let never_paths: std::collections::BTreeSet<String> = members
        .iter()
        .filter(|m| m.never_cache)
        .map(|m| m.path.clone())
        .collect();
    // Stamps before reading: digests computed by this write are recorded
    // only for files whose stamp did not move meanwhile.
    let stamps: Vec<(String, std::path::PathBuf, Stamp)> = members
        .iter()
        .filter(|m| !m.in_tree && !m.never_cache)
        .filter_map(|m| Some((m.path.clone(), m.file.clone(), Stamp::of(&m.file).ok()?)))
        .collect();
    let shared = members
        .iter()
        .filter(|m| m.shared)
        .map(|m| m.file.clone())
        .collect();
    let by_file = stamps
        .iter()
        .map(|(_, file, st)| (file.clone(), st.clone()))
        .collect();
    let wim_store = std::sync::Arc::new(
        resources::WimStore::new(
            std::sync::Arc::clone(cache),
            known,
            shared,
            never,
            never_paths.clone(),
        )
        .with_stamps(by_file),
    );
    let store = wimwrite::StoreHandle(wim_store.clone());
    // A damaged entry found while copying fails the write: the store is
    // then swept (every entry it would serve read through and checked, the
    // bad ones dropped) and the WIM written again; should that meet another
    // (a race with another build), the last attempt uses no store at all.
    let mut rep = write_with(&entries, out, spec, Some(store.clone()), report, cancel);
    if matches!(rep, Err(BuildError::CacheCorrupt(_))) {
        let params = wimwrite::resource_params_for(&WriteOptions {
            compression: compression(spec.compression),
            ..Default::default()
        })?;
        let sources: Vec<(std::path::PathBuf, u64)> =
            members.iter().map(|m| (m.file.clone(), m.size)).collect();
        wim_store.sweep(&sources, &params);
        rep = write_with(&entries, out, spec, Some(store.clone()), report, cancel);
    }
    if matches!(rep, Err(BuildError::CacheCorrupt(_))) {
        rep = write_with(&entries, out, spec, None, report, cancel);
    }
    let rep = rep?;
    let (rep, sha) = rep;
    if let Some(sha) = sha {
        ctx.remember_sha256(out, sha);
    }
    cache
        .counters
        .chunks_reused
        .fetch_add(rep.chunks_reused, std::sync::atomic::Ordering::Relaxed);
    // Only resources of a verified WIM enter the cache. Storing them (a
    // read of the new resources and a write of each entry) runs beside
    // wimlib's check and the rest of the build with more than one job: the
    // entries are written to the cache's `tmp/` while wimlib reads the WIM,
    // and renamed into place only once it passed (else removed). The build
    // waits for it before it ends.
    let (passed, verdict) = std::sync::mpsc::channel::<bool>();
    let store = {
        let cache = std::sync::Arc::clone(cache);
        let file = std::fs::File::open(out).ok();
        let rep = rep.clone();
        move |verdict: Option<std::sync::mpsc::Receiver<bool>>| {
            let staging = crate::cache::Staging::new(&cache);
            resources::store_from(
                &staging,
                file.as_ref(),
                &rep,
                &rep.resource_params,
                &never_paths,
                &stamps,
            );
            if verdict.is_none_or(|v| v.recv() == Ok(true)) {
                staging.commit();
            }
        }
    };
    if ctx.jobs > 1 {
        ctx.background(move || store(Some(verdict)));
        let checked = verify_fresh(ctx, cache, out, &rep);
        let _ = passed.send(checked.is_ok());
        checked?;
    } else {
        verify_fresh(ctx, cache, out, &rep)?;
        store(None);
    }
    // Exports linked into the cache now get their entries, with the digests
    // this write computed.
    let by_path: std::collections::BTreeMap<&str, &wimwrite::FileDigest> =
        rep.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let known: std::collections::BTreeMap<std::path::PathBuf, wimwrite::KnownDigests> = members
        .iter()
        .filter_map(|m| {
            let f = by_path.get(m.path.as_str())?;
            Some((
                m.file.clone(),
                wimwrite::KnownDigests {
                    sha1: f.sha1,
                    sha256: f.sha256,
                },
            ))
        })
        .collect();
    ctx.complete_exports(Some(&known));
    for m in members {
        if let (Some(key), Some(d)) = (&m.remember, known.get(&m.file)) {
            resources::remember_digests(cache, key, m.size, d);
        }
    }
    Ok(rep)
}

/// wimlib's check of a WIM written through the cache, limited to what is
/// new. A resource served from the cache was checked by wimlib's full
/// verify in the build that stored it (resources are stored only after
/// that) and by its SHA-256 while being copied here; so wimlib opens the
/// new WIM (header, blob table, XML), lists the image (the metadata
/// resource, compared with what we wrote) and extracts every file whose
/// resource was compressed now, checking each blob's SHA-1 as it reads. A
/// WIM with nothing from the cache gets the full verify. Either way the
/// result is recorded as a verification mark, so the renderer's verify
/// step does not repeat it.
fn verify_fresh(
    ctx: &crate::exec::Ctx,
    cache: &crate::cache::Cache,
    out: &Path,
    rep: &WimReport,
) -> Result<(), BuildError> {
    use crate::cache::resources;
    let fail = |e: String| BuildError::Verify(e);
    let mut wim = crate::wim::Wim::open(out)?;
    if rep.resources.iter().all(|r| !r.from_store) {
        wim.verify().map_err(|e| fail(e.to_string()))?;
    } else {
        let listed = wim.list(1)?;
        let files: std::collections::BTreeMap<&str, &crate::wim::DirEntry> = listed
            .iter()
            .filter(|e| !e.is_dir)
            .map(|e| (e.path.as_str(), e))
            .collect();
        for f in &rep.files {
            match files.get(f.path.as_str()) {
                Some(e) if e.size == f.size && (f.size == 0 || e.sha1 == f.sha1) => {}
                _ => return Err(fail(format!("{} does not read back as written", f.path))),
            }
        }
        if files.len() != rep.files.len() {
            return Err(fail("the image lists other files than were written".into()));
        }
        let fresh: std::collections::BTreeSet<[u8; 20]> = rep
            .resources
            .iter()
            .filter(|r| !r.from_store)
            .map(|r| r.sha1)
            .collect();
        let paths: Vec<&str> = rep
            .files
            .iter()
            .filter(|f| f.size > 0 && fresh.contains(&f.sha1))
            .map(|f| f.path.as_str())
            .collect();
        if !paths.is_empty() {
            let dir = crate::exec::TempPath::new(ctx.staging.join("verify-fresh"));
            wim.extract(1, dir.path(), &paths)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    let sha = ctx.artefact_sha256(out)?;
    let size = std::fs::metadata(out)
        .map_err(|e| BuildError::io("read", out, e))?
        .len();
    resources::mark_verified(cache, "wimlib-verify", &sha, size);
    Ok(())
}

fn write_with(
    entries: &[WimEntry],
    out: &Path,
    spec: &NativeSpec,
    store: Option<wimwrite::StoreHandle>,
    report: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<(WimReport, Option<[u8; 32]>), BuildError> {
    let mut opts = WriteOptions {
        compression: compression(spec.compression),
        threads: spec.threads,
        guid: spec.guid,
        epoch: spec.epoch,
        image_name: spec.name.to_string(),
        image_description: spec.description.map(str::to_string),
        store,
        ..Default::default()
    };
    // A rebuild whose resources are nearly all stored writes the WIM front
    // to back, so that it is hashed on the way out instead of read again.
    opts.replay = wimwrite::replay_pays(entries, &opts);
    // Around the page cache: the WIM is not read again except to hash it.
    // `--jobs 1`: no I/O thread either.
    let mut f =
        crate::fsutil::direct::DirectFile::create_with(out, 0, opts.replay, spec.threads != 1)
            .map_err(|e| BuildError::io("create", out, e))?;
    let rep = wimwrite::write_wim(entries, &mut f, &opts, report, cancel)?;
    let sha = f.finish().map_err(|e| BuildError::io("write", out, e))?;
    Ok((rep, sha.map(|h| h.digest())))
}
