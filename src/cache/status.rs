//! `mediabuild plan` with a cache: for each media member, will the cache
//! serve it, and if not, why (which input changed). Lookups only: nothing is
//! read beyond entry headers and small hash entries; the only writes are the
//! access times of the entries looked at (and the removal of a damaged one).

use super::hashes;
use super::resources::{export_key, resource_key};
use super::Cache;
use crate::media::Source;
use crate::plan::Plan;
use serde::Serialize;

/// The cache's answer for one member.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberStatus {
    pub path: String,
    pub group: String,
    /// Served from the cache.
    pub cached: bool,
    /// Why (not).
    pub why: String,
}

fn wim_compression(c: crate::recipe::Compression) -> crate::wimwrite::Compression {
    use crate::recipe::Compression as R;
    use crate::wimwrite::Compression as W;
    match c {
        R::None => W::None,
        R::Xpress => W::Xpress,
        R::Lzx => W::Lzx,
        R::Lzms => W::Lzms,
    }
}

fn has_entry(cache: &Cache, key: &super::Key) -> bool {
    // The header is checked; the body is checked when the build uses it.
    cache.open_entry(key).is_some()
}

/// The status of every member of `plan` (for the native WIM writer).
pub fn member_status(plan: &Plan, cache: &Cache) -> Vec<MemberStatus> {
    let params = crate::wimwrite::resource_params_for(&crate::wimwrite::WriteOptions {
        compression: wim_compression(plan.compression),
        ..Default::default()
    })
    .unwrap_or_default();
    plan.media
        .members
        .iter()
        .map(|m| {
            let (cached, why) = match &m.source {
                Source::File { path } => match hashes::lookup(cache, path) {
                    None => (
                        false,
                        format!("{}: {}", path.display(), hashes::why_unknown(cache, path)),
                    ),
                    Some(d) if has_entry(cache, &resource_key(&d.sha1, d.size, &params)) => {
                        (true, "content unchanged, compressed resource stored".into())
                    }
                    Some(_) => (
                        false,
                        format!(
                            "content known, but not stored with {} compression",
                            plan.compression.as_str()
                        ),
                    ),
                },
                Source::WimExport {
                    wim,
                    index,
                    bootable,
                    parts,
                    convert,
                    ..
                } => match (
                    hashes::lookup(cache, wim),
                    parts
                        .iter()
                        .map(|p| hashes::lookup(cache, p).map(|d| d.sha256))
                        .collect::<Option<Vec<_>>>(),
                ) {
                    (None, _) | (_, None) => {
                        let unknown = std::iter::once(wim)
                            .chain(parts)
                            .find(|p| hashes::lookup(cache, p).is_none())
                            .unwrap_or(wim);
                        (
                            false,
                            format!(
                                "{}: {}",
                                unknown.display(),
                                hashes::why_unknown(cache, unknown)
                            ),
                        )
                    }
                    (Some(d), Some(rest)) => {
                        let guid =
                            crate::ids::derive16(&plan.digest, &format!("export:{}", m.path));
                        let input = crate::cache::resources::ExportInput {
                            sha256: &d.sha256,
                            parts: &rest,
                            convert: *convert,
                        };
                        if has_entry(
                            cache,
                            &export_key(&input, *index, *bootable, &guid, plan.epoch),
                        ) {
                            (true, format!("export of index {index} stored"))
                        } else {
                            (
                                false,
                                format!(
                                    "index {index} of {} not exported with this recipe before",
                                    wim.display()
                                ),
                            )
                        }
                    }
                },
                Source::WimFile { .. } => (
                    false,
                    "boot file: extracted and compressed every build (small)".into(),
                ),
                Source::Generated { .. } => (
                    false,
                    "generated from the recipe every build (small)".into(),
                ),
                Source::MediaVariables => (
                    false,
                    "never cached: encrypted from the secrets every build".into(),
                ),
            };
            MemberStatus {
                path: m.path.clone(),
                group: m.group.clone(),
                cached,
                why,
            }
        })
        .collect()
}
