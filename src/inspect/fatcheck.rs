//! FAT32 consistency, checked by our own walk rather than trusted to the
//! reader: the FAT copies agree, every directory and file chain starts and
//! stays inside the volume, ends where the size says, never reaches a free or
//! bad cluster, never shares a cluster with another chain (cross-link, loop),
//! and no cluster is allocated without an owner (lost). `fatfs` reads the
//! names and contents; this module only looks at the allocation.
//!
//! Memory: the FAT itself plus one `u32` owner per cluster (a 32 GiB volume
//! with 16 KiB clusters: 8 MiB each).

use std::io::{Read, Seek, SeekFrom};

const EOC: u32 = 0x0FFF_FFF8;
const BAD: u32 = 0x0FFF_FFF7;
/// At most this many problems are listed; a badly damaged volume would give thousands.
const MAX_PROBLEMS: usize = 50;

struct Geometry {
    cluster: u64,
    fat_start: u64,
    fat_bytes: u64,
    fats: u64,
    data_start: u64,
    clusters: u32,
    root: u32,
}

fn geometry(boot: &[u8; 512]) -> Result<Geometry, String> {
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([boot[o], boot[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes([boot[o], boot[o + 1], boot[o + 2], boot[o + 3]]);
    if boot[510..512] != [0x55, 0xAA] || &boot[82..90] != b"FAT32   " {
        return Err("the partition does not start with a FAT32 boot sector".into());
    }
    let sector = u16_at(11);
    let per_cluster = u64::from(boot[13]);
    let (reserved, fats) = (u16_at(14), u64::from(boot[16]));
    let (total, fat_sectors) = (u64::from(u32_at(32)), u64::from(u32_at(36)));
    if ![512, 1024, 2048, 4096].contains(&sector) || per_cluster == 0 || fats == 0 {
        return Err("the FAT32 boot sector has impossible geometry".into());
    }
    let data = reserved + fats * fat_sectors;
    if data >= total {
        return Err("the FAT32 boot sector has impossible geometry".into());
    }
    Ok(Geometry {
        cluster: sector * per_cluster,
        fat_start: reserved * sector,
        fat_bytes: fat_sectors * sector,
        fats,
        data_start: data * sector,
        clusters: ((total - data) / per_cluster) as u32,
        root: u32_at(44),
    })
}

fn read_at<R: Read + Seek>(r: &mut R, at: u64, buf: &mut [u8]) -> Result<(), String> {
    r.seek(SeekFrom::Start(at))
        .and_then(|_| r.read_exact(buf))
        .map_err(|e| format!("cannot read the volume at byte {at}: {e} (truncated image?)"))
}

struct Walk<'a, R> {
    r: &'a mut R,
    g: Geometry,
    fat: Vec<u32>,
    /// 0 = no owner, else index + 1 into `names`.
    owner: Vec<u32>,
    names: Vec<String>,
    problems: Vec<String>,
}

impl<R: Read + Seek> Walk<'_, R> {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// Follows the chain from `first`, claiming each cluster for `name`.
    fn chain(&mut self, name: &str, first: u32) -> Vec<u32> {
        self.names.push(name.to_string());
        let me = self.names.len() as u32;
        let mut out = Vec::new();
        let mut c = first;
        loop {
            if c < 2 || c >= self.g.clusters + 2 {
                self.problem(format!(
                    "{name}: cluster chain leaves the volume (cluster {c})"
                ));
                break;
            }
            let prev = self.owner[c as usize];
            if prev != 0 {
                let other = self.names[prev as usize - 1].clone();
                if prev == me {
                    self.problem(format!("{name}: cluster chain loops at cluster {c}"));
                } else {
                    self.problem(format!("{name}: cross-linked with {other} at cluster {c}"));
                }
                break;
            }
            self.owner[c as usize] = me;
            out.push(c);
            let next = self.fat[c as usize] & 0x0FFF_FFFF;
            match next {
                0 => {
                    self.problem(format!("{name}: cluster chain reaches free cluster {c}"));
                    break;
                }
                BAD => {
                    self.problem(format!("{name}: cluster chain reaches bad cluster {c}"));
                    break;
                }
                n if n >= EOC => break,
                n => c = n,
            }
        }
        out
    }

    /// The bytes of `clusters`, each run of consecutive clusters in one read.
    /// A run that fails is read again cluster by cluster, so that the error
    /// names the first byte that cannot be read.
    fn read_clusters(&mut self, clusters: &[u32]) -> Result<Vec<u8>, String> {
        let n = self.g.cluster as usize;
        let at = |c: u32| self.g.data_start + u64::from(c - 2) * self.g.cluster;
        let mut bytes = vec![0u8; clusters.len() * n];
        let mut i = 0;
        while i < clusters.len() {
            let mut j = i + 1;
            while j < clusters.len() && clusters[j] == clusters[j - 1] + 1 {
                j += 1;
            }
            if read_at(&mut *self.r, at(clusters[i]), &mut bytes[i * n..j * n]).is_err() {
                for k in i..j {
                    read_at(
                        &mut *self.r,
                        at(clusters[k]),
                        &mut bytes[k * n..(k + 1) * n],
                    )?;
                }
            }
            i = j;
        }
        Ok(bytes)
    }

    fn dir(&mut self, path: &str, first: u32, depth: usize) -> Result<(), String> {
        if depth > 64 {
            self.problem(format!("{path}/: directories nested deeper than 64"));
            return Ok(());
        }
        let clusters = self.chain(&format!("{path}/"), first);
        let bytes = self.read_clusters(&clusters)?;
        let mut lfn: Vec<(u8, [u16; 13])> = Vec::new();
        for e in bytes.chunks_exact(32) {
            match e[0] {
                0 => break,
                0xE5 => {
                    lfn.clear();
                    continue;
                }
                _ => {}
            }
            let attr = e[11];
            if attr & 0x3F == 0x0F {
                let mut part = [0u16; 13];
                for (k, off) in (1..11)
                    .step_by(2)
                    .chain((14..26).step_by(2))
                    .chain((28..32).step_by(2))
                    .enumerate()
                {
                    part[k] = u16::from_le_bytes([e[off], e[off + 1]]);
                }
                lfn.push((e[0] & 0x1F, part));
                continue;
            }
            if attr & 0x08 != 0 || e[0] == b'.' {
                lfn.clear();
                continue; // volume label, "." and ".."
            }
            let name = if lfn.is_empty() {
                short_name(e)
            } else {
                lfn.sort_by_key(|(n, _)| *n);
                let units: Vec<u16> = lfn
                    .iter()
                    .flat_map(|(_, p)| p.iter().copied())
                    .take_while(|&u| u != 0 && u != 0xFFFF)
                    .collect();
                String::from_utf16_lossy(&units)
            };
            lfn.clear();
            let full = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            let first = (u32::from(u16::from_le_bytes([e[20], e[21]])) << 16)
                | u32::from(u16::from_le_bytes([e[26], e[27]]));
            let size = u64::from(u32::from_le_bytes([e[28], e[29], e[30], e[31]]));
            if attr & 0x10 != 0 {
                self.dir(&full, first, depth + 1)?;
            } else if size == 0 {
                if first != 0 {
                    self.problem(format!("{full}: empty file with a cluster chain"));
                }
            } else {
                let got = self.chain(&full, first).len() as u64;
                let want = size.div_ceil(self.g.cluster);
                if got != want {
                    self.problem(format!(
                        "{full}: {size} bytes need {want} cluster(s), the chain has {got}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An 8.3 name as Windows shows it: byte 12 flags a lower-case base (0x08)
/// or extension (0x10).
fn short_name(e: &[u8]) -> String {
    let part = |r: std::ops::Range<usize>, lower: bool| {
        let s = String::from_utf8_lossy(&e[r]).trim_end().to_string();
        if lower {
            s.to_ascii_lowercase()
        } else {
            s
        }
    };
    let base = part(0..8, e[12] & 0x08 != 0);
    let ext = part(8..11, e[12] & 0x10 != 0);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// Every allocation problem of the FAT32 volume `r` (positioned on the
/// partition), or why it could not be checked.
pub fn check<R: Read + Seek>(r: &mut R) -> Vec<String> {
    match run(r) {
        Ok(p) => p,
        Err(e) => vec![e],
    }
}

fn run<R: Read + Seek>(r: &mut R) -> Result<Vec<String>, String> {
    let mut boot = [0u8; 512];
    read_at(r, 0, &mut boot)?;
    let g = geometry(&boot)?;
    let entries = (g.clusters as usize + 2).min((g.fat_bytes / 4) as usize);
    let mut raw = vec![0u8; entries * 4];
    read_at(r, g.fat_start, &mut raw)?;
    let mut problems = Vec::new();
    for copy in 1..g.fats {
        let mut other = vec![0u8; raw.len()];
        read_at(r, g.fat_start + copy * g.fat_bytes, &mut other)?;
        if other != raw {
            problems.push(format!("FAT copy {} differs from the first", copy + 1));
        }
    }
    let fat: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if fat.len() < g.clusters as usize + 2 {
        problems.push("the FAT is smaller than the volume's cluster count".into());
        return Ok(problems);
    }
    let clusters = g.clusters;
    let root = g.root;
    let mut w = Walk {
        r,
        g,
        owner: vec![0; fat.len()],
        fat,
        names: Vec::new(),
        problems,
    };
    w.dir("", root, 0)?;
    let lost = (2..clusters as usize + 2)
        .filter(|&c| {
            w.fat[c] & 0x0FFF_FFFF != 0 && w.fat[c] & 0x0FFF_FFFF != BAD && w.owner[c] == 0
        })
        .count();
    if lost > 0 {
        w.problem(format!(
            "{lost} cluster(s) allocated in the FAT but owned by no file (lost clusters)"
        ));
    }
    Ok(w.problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fat32::{plan, write, FatFile, FatParams};
    use std::io::Cursor;

    const MIB: u64 = 1 << 20;

    /// A volume by our writer, its layout, and the two files' (first cluster, clusters).
    fn volume() -> (Vec<u8>, crate::fat32::FatLayout) {
        let files = vec![
            FatFile::from_bytes("EFI/Boot/bootx64.efi", vec![7u8; 300_000]),
            FatFile::from_bytes("SMS/PKG/PS100201/A Long File Name.bin", vec![9u8; 70_000]),
            FatFile::from_bytes("empty.txt", Vec::new()),
        ];
        let params = FatParams {
            volume_id: 1,
            label: "T".into(),
            hidden_sectors: 0,
            epoch: 0,
        };
        let layout = plan(&files, 40 * MIB, &params).unwrap();
        let mut out = Cursor::new(vec![0u8; (40 * MIB) as usize]);
        write(&layout, &files, &mut out, 0, &mut |_| {}).unwrap();
        (out.into_inner(), layout)
    }

    fn set_fat(v: &mut [u8], layout: &crate::fat32::FatLayout, copies: &[u32], c: u32, val: u32) {
        for &copy in copies {
            let at = (layout.geometry().fat_offset(copy) + 4 * u64::from(c)) as usize;
            v[at..at + 4].copy_from_slice(&val.to_le_bytes());
        }
    }

    /// (first cluster, clusters) of the file whose path ends with `name`.
    fn file(layout: &crate::fat32::FatLayout, name: &str) -> (u32, u32) {
        crate::fat32::testutil::file_clusters(layout, name)
    }

    #[test]
    fn our_writer_passes_and_damage_is_named() {
        let (v, layout) = volume();
        assert_eq!(check(&mut Cursor::new(v.clone())), Vec::<String>::new());

        // One FAT copy changed: a free cluster inside a chain, and copies differ.
        let (efi, _) = file(&layout, "bootx64.efi");
        let mut bad = v.clone();
        set_fat(&mut bad, &layout, &[0], efi, 0);
        let p = check(&mut Cursor::new(bad)).join("\n");
        assert!(p.contains("FAT copy 2 differs"), "{p}");
        assert!(
            p.contains("EFI/Boot/bootx64.efi: cluster chain reaches free cluster"),
            "{p}"
        );

        // Both copies: the long-named file's chain runs into the boot loader's.
        let (first, n) = file(&layout, "A Long File Name.bin");
        let mut bad = v.clone();
        set_fat(&mut bad, &layout, &[0, 1], first + n - 1, efi);
        let p = check(&mut Cursor::new(bad)).join("\n");
        assert!(p.contains("cross-linked"), "{p}");
        assert!(p.contains("A Long File Name.bin"), "{p}");

        // A chain cut short, and the clusters it dropped are lost.
        let mut bad = v.clone();
        set_fat(&mut bad, &layout, &[0, 1], efi, 0x0FFF_FFFF);
        let p = check(&mut Cursor::new(bad)).join("\n");
        assert!(p.contains("bootx64.efi: 300000 bytes need"), "{p}");
        assert!(p.contains("lost clusters"), "{p}");

        // Truncated: the FAT cannot be read.
        let p = check(&mut Cursor::new(v[..4096].to_vec())).join("\n");
        assert!(p.contains("truncated"), "{p}");
    }
}
