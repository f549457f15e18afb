//! `diff A B`: what changed between two artefacts or two manifests — members
//! added, removed or changed, grouped by package; variables added, removed
//! or changed (by fingerprint: values are never read for this, never shown);
//! media properties; boot and OS image facts; size deltas.
//!
//! Several identities derive from the recipe digest (the media GUID, the
//! unknown-computer GUIDs, the media certificate, the GUID of every exported
//! image, the disk and volume IDs), so any recipe change changes them. They
//! are listed apart, under `derived`, so that what the admin changed stands
//! out; `SMS/data/Variables.dat` is listed there too, as its content is the
//! variables compared one by one.

use super::facts::{from_manifest, inspect, Inspection, MemberInfo};
use super::source::{sniff, Artefact, Format, Listed};
use super::{InspectError, Options};
use crate::ids::hex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Variables whose values derive from the recipe digest.
const DERIVED_VARS: &[&str] = crate::configmgr::DERIVED_VARIABLES;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberDelta {
    pub path: String,
    pub size_a: Option<u64>,
    pub size_b: Option<u64>,
}

/// The member changes of one package (or other group: boot files, media data).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupDiff {
    pub group: String,
    pub name: Option<String>,
    pub added: Vec<MemberDelta>,
    pub removed: Vec<MemberDelta>,
    pub changed: Vec<MemberDelta>,
    pub size_delta: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VarChange {
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    pub differ: bool,
    pub size_a: u64,
    pub size_b: u64,
    pub size_delta: i64,
    pub recipe_digest: Option<Change>,
    pub media: Vec<Change>,
    pub images: Vec<Change>,
    pub groups: Vec<GroupDiff>,
    pub variables: Vec<VarChange>,
    /// Variables that exist on both sides but whose fingerprints are unknown
    /// on one (no manifest, secret): not compared.
    pub not_compared: Vec<String>,
    /// Changed only because the recipe digest changed (see the module docs).
    pub derived: Vec<String>,
}

/// The facts of one side: a manifest as it is, an artefact read and hashed.
pub fn load(path: &Path, opts: &Options) -> Result<Inspection, InspectError> {
    if sniff(path)? == Format::Manifest {
        let m = super::read_manifest(path)?;
        return Ok(from_manifest(path, &m));
    }
    let mut f = inspect(path, opts)?;
    let art = Artefact::open(path)?;
    let listed: Vec<Listed> = f
        .members
        .iter()
        .map(|m| Listed {
            path: m.path.clone(),
            size: m.size,
        })
        .collect();
    let mut digests = BTreeMap::new();
    let mut failed = Vec::new();
    art.hash_all(&listed, &mut |l, r| match r {
        Ok(d) => {
            digests.insert(l.path.clone(), d);
        }
        Err(e) => failed.push(format!("{}: {e}", l.path)),
    })?;
    if !failed.is_empty() {
        return Err(InspectError::Damaged {
            path: path.to_path_buf(),
            what: format!(
                "cannot read {} (run `mediabuild verify` on it)",
                failed.join("; ")
            ),
        });
    }
    for m in &mut f.members {
        if let Some(d) = digests.get(&m.path) {
            m.sha256 = Some(hex(&d.sha256));
            m.content = d.content.map(|c| hex(&c));
        }
    }
    Ok(f)
}

fn opt_change(key: &str, a: Option<String>, b: Option<String>, out: &mut Vec<Change>) {
    if a != b {
        out.push(Change {
            key: key.into(),
            a,
            b,
        });
    }
}

/// Compares two sides.
pub fn diff(a: &Inspection, b: &Inspection) -> Diff {
    let recipe_changed = a.recipe_digest != b.recipe_digest;
    let mut derived = Vec::new();
    let mut media = Vec::new();
    opt_change(
        "name",
        Some(a.media.name.clone()),
        Some(b.media.name.clone()),
        &mut media,
    );
    opt_change(
        "label",
        Some(a.media.label.clone()),
        Some(b.media.label.clone()),
        &mut media,
    );
    let keys: BTreeSet<&String> = a
        .media
        .properties
        .keys()
        .chain(b.media.properties.keys())
        .collect();
    for k in keys {
        opt_change(
            k,
            a.media.properties.get(k).cloned(),
            b.media.properties.get(k).cloned(),
            &mut media,
        );
    }
    // Identities of the artefact itself (WIM GUID, disk and volume IDs).
    let ids = |i: &Inspection| {
        [
            ("wim GUID", i.wim.as_ref().map(|w| w.guid.clone())),
            (
                "disk id",
                i.partition_table.as_ref().map(|t| t.disk_id.clone()),
            ),
            (
                "volume id",
                i.filesystem.as_ref().map(|f| f.volume_id.clone()),
            ),
        ]
    };
    for ((k, x), (_, y)) in ids(a).into_iter().zip(ids(b)) {
        if x.is_some() && y.is_some() && x != y {
            if recipe_changed {
                derived.push(k.to_string());
            } else {
                media.push(Change {
                    key: k.into(),
                    a: x,
                    b: y,
                });
            }
        }
    }

    let mut images = Vec::new();
    for (what, x, y) in [
        ("boot_image", &a.boot_image, &b.boot_image),
        ("os_image", &a.os_image, &b.os_image),
    ] {
        let f = |i: &Option<super::ImageInfo>, field: &str| -> Option<String> {
            let i = i.as_ref()?;
            match field {
                "id" => i.id.clone(),
                "name" => i.name.clone(),
                "arch" => i.arch.clone(),
                "edition" => i.edition.clone(),
                "source_index" => i.source_index.map(|n| n.to_string()),
                _ => i.source_sha256.clone(),
            }
        };
        for field in [
            "id",
            "name",
            "arch",
            "edition",
            "source_index",
            "source_sha256",
        ] {
            opt_change(
                &format!("{what}.{field}"),
                f(x, field),
                f(y, field),
                &mut images,
            );
        }
    }

    let groups = members(a, b, recipe_changed, &mut derived);
    let (variables, mut not_compared) = variables(a, b, recipe_changed, &mut derived);
    for side in [a, b] {
        if side.variables.list.is_empty() && side.variables.note.is_some() {
            not_compared.push(format!(
                "the variables of {} (Variables.dat needs the media password and there is no manifest)",
                side.artefact
            ));
        }
    }
    let size_delta = b.size as i64 - a.size as i64;
    let differ = recipe_changed
        || size_delta != 0
        || !(media.is_empty()
            && images.is_empty()
            && groups.is_empty()
            && variables.is_empty()
            && derived.is_empty());
    Diff {
        a: a.artefact.clone(),
        b: b.artefact.clone(),
        differ,
        size_a: a.size,
        size_b: b.size,
        size_delta,
        recipe_digest: recipe_changed.then(|| Change {
            key: "recipe_digest".into(),
            a: a.recipe_digest.clone(),
            b: b.recipe_digest.clone(),
        }),
        media,
        images,
        groups,
        variables,
        not_compared,
        derived,
    }
}

/// Whether an exported image member changed only in its derived GUID.
fn image_same(x: &MemberInfo, y: &MemberInfo, a: &Inspection, b: &Inspection) -> bool {
    if x.content.is_some() && y.content.is_some() {
        return x.content == y.content;
    }
    // Manifests carry no GUID-blind digest: the same source image (digest
    // and index) exported again is the same image.
    let src = |i: &Inspection| {
        [&i.boot_image, &i.os_image]
            .into_iter()
            .flatten()
            .find(|img| img.path == x.path || (x.group == img.id.clone().unwrap_or_default()))
            .map(|img| (img.source_sha256.clone(), img.source_index))
    };
    match (src(a), src(b)) {
        (Some((Some(s1), i1)), Some((Some(s2), i2))) => s1 == s2 && i1 == i2,
        _ => false,
    }
}

fn is_image(path: &str) -> bool {
    let l = path.to_ascii_lowercase();
    l.ends_with(".wim") || l.ends_with(".swm")
}

fn members(
    a: &Inspection,
    b: &Inspection,
    recipe_changed: bool,
    derived: &mut Vec<String>,
) -> Vec<GroupDiff> {
    let map = |i: &Inspection| -> BTreeMap<String, MemberInfo> {
        i.members
            .iter()
            .map(|m| (m.path.to_ascii_lowercase(), m.clone()))
            .collect()
    };
    let (ma, mb) = (map(a), map(b));
    let mut groups: BTreeMap<String, GroupDiff> = BTreeMap::new();
    // A package's name as `b` says it, else as `a` does.
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for p in b.packages.iter().chain(&a.packages) {
        names.entry(p.id.as_str()).or_insert(p.name.as_str());
    }
    let name_of = |g: &str| names.get(g).map(|n| n.to_string());
    fn entry<'a>(
        groups: &'a mut BTreeMap<String, GroupDiff>,
        g: &str,
        name: Option<String>,
    ) -> &'a mut GroupDiff {
        groups.entry(g.to_string()).or_insert_with(|| GroupDiff {
            group: g.to_string(),
            name,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            size_delta: 0,
        })
    }
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for k in keys {
        match (ma.get(k), mb.get(k)) {
            (Some(x), None) => {
                let g = entry(&mut groups, &x.group, name_of(&x.group));
                g.size_delta -= x.size as i64;
                g.removed.push(MemberDelta {
                    path: x.path.clone(),
                    size_a: Some(x.size),
                    size_b: None,
                });
            }
            (None, Some(y)) => {
                let g = entry(&mut groups, &y.group, name_of(&y.group));
                g.size_delta += y.size as i64;
                g.added.push(MemberDelta {
                    path: y.path.clone(),
                    size_a: None,
                    size_b: Some(y.size),
                });
            }
            (Some(x), Some(y)) => {
                if x.size == y.size && x.sha256 == y.sha256 {
                    continue;
                }
                if x.path == "SMS/data/Variables.dat" {
                    derived.push(format!("{} (holds the variables compared below)", x.path));
                    continue;
                }
                if recipe_changed && x.size == y.size && is_image(&x.path) && image_same(x, y, a, b)
                {
                    derived.push(format!("{} (image GUID only)", x.path));
                    continue;
                }
                let g = entry(&mut groups, &y.group, name_of(&y.group));
                g.size_delta += y.size as i64 - x.size as i64;
                g.changed.push(MemberDelta {
                    path: y.path.clone(),
                    size_a: Some(x.size),
                    size_b: Some(y.size),
                });
            }
            (None, None) => {}
        }
    }
    groups.into_values().collect()
}

fn variables(
    a: &Inspection,
    b: &Inspection,
    recipe_changed: bool,
    derived: &mut Vec<String>,
) -> (Vec<VarChange>, Vec<String>) {
    let map = |i: &Inspection| -> BTreeMap<String, Option<String>> {
        i.variables
            .list
            .iter()
            .map(|v| (v.name.clone(), v.fingerprint.clone()))
            .collect()
    };
    let (va, vb) = (map(a), map(b));
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    let names: BTreeSet<&String> = va.keys().chain(vb.keys()).collect();
    for n in names {
        let change = match (va.get(n), vb.get(n)) {
            (Some(_), None) => "removed",
            (None, Some(_)) => "added",
            (Some(Some(x)), Some(Some(y))) if x == y => continue,
            (Some(Some(_)), Some(Some(_))) => {
                if recipe_changed && DERIVED_VARS.contains(&n.as_str()) {
                    derived.push(format!("variable {n}"));
                    continue;
                }
                "changed"
            }
            _ => {
                unknown.push(n.clone());
                continue;
            }
        };
        out.push(VarChange {
            name: n.clone(),
            change: change.into(),
        });
    }
    (out, unknown)
}

impl Diff {
    pub fn render(&self) -> String {
        use crate::units::human;
        use std::fmt::Write as _;
        let mut s = String::new();
        let sign = |d: i64| {
            if d < 0 {
                format!("-{}", human(d.unsigned_abs()))
            } else {
                format!("+{}", human(d as u64))
            }
        };
        let _ = writeln!(
            s,
            "{} → {}: {}",
            self.a,
            self.b,
            if self.differ {
                "they differ"
            } else {
                "the same"
            }
        );
        let _ = writeln!(
            s,
            "  size {} → {} ({})",
            human(self.size_a),
            human(self.size_b),
            sign(self.size_delta)
        );
        if self.recipe_digest.is_some() {
            let _ = writeln!(s, "  the recipe changed (recipe digest)");
        }
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        for (title, list) in [("media", &self.media), ("images", &self.images)] {
            if !list.is_empty() {
                let _ = writeln!(s, "{title}:");
                for c in list {
                    let _ = writeln!(s, "  {}: {} → {}", c.key, show(&c.a), show(&c.b));
                }
            }
        }
        for g in &self.groups {
            let _ = writeln!(
                s,
                "{}{}: {} added, {} removed, {} changed ({})",
                g.group,
                g.name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                g.added.len(),
                g.removed.len(),
                g.changed.len(),
                sign(g.size_delta)
            );
            for (mark, list) in [("+", &g.added), ("-", &g.removed), ("~", &g.changed)] {
                for m in list {
                    let size = |v: Option<u64>| v.map(human).unwrap_or_else(|| "-".into());
                    let _ = writeln!(
                        s,
                        "  {mark} {} ({} → {})",
                        m.path,
                        size(m.size_a),
                        size(m.size_b)
                    );
                }
            }
        }
        if !self.variables.is_empty() {
            let _ = writeln!(
                s,
                "variables (values compared by fingerprint, never shown):"
            );
            for v in &self.variables {
                let _ = writeln!(s, "  {} {}", v.name, v.change);
            }
        }
        if !self.not_compared.is_empty() {
            let _ = writeln!(
                s,
                "not compared (no fingerprint on one side): {}",
                self.not_compared.join(", ")
            );
        }
        if !self.derived.is_empty() {
            let _ = writeln!(
                s,
                "derived from the recipe digest (change with any recipe change):"
            );
            for d in &self.derived {
                let _ = writeln!(s, "  {d}");
            }
        }
        s
    }
}
