//! Raw bootable disk images of N partitions that UEFI firmware boots.
//!
//! A [`Layout`] lists the partitions: each one's table entry ([`PartitionType`]), size
//! rule ([`SizeRule`]) and file system ([`FileSystem`], today FAT32). Phases: [`layout`]
//! is pure geometry (where each partition goes for a disk size), [`plan_image`]
//! validates the files of each partition and plans its volume without touching the
//! disk, and [`write_image`] creates the sparse image file, streams the volumes into it
//! and writes the partition table with one entry per partition. Only metadata and file
//! data are written; free space stays a hole, so a 32 GiB image with a few MiB of
//! content allocates a few MiB.
//!
//! # The media layout
//!
//! [`Layout::single`], the layout of every image the product builds today, is one
//! FAT32 partition filling the disk, of type [`PartitionType::media`]:
//!
//! - [`Scheme::Mbr`]: one primary partition of type `0x0C` (FAT32, LBA), marked active,
//!   as Microsoft's media tools write USB media.
//! - [`Scheme::Gpt`]: protective MBR plus GPT with one partition of type **Microsoft
//!   basic data** (`EBD0A0A2-B9E5-4433-87C0-68B6B72699C7`), named `MEDIA`. Not the EFI
//!   System Partition type, on purpose: Windows (and WinPE) gives no drive letter to an
//!   ESP, yet WinPE must find `sources\boot.wim` and the rest of the media on this
//!   volume. Rufus makes FAT32 Windows media the same way, and OVMF boots
//!   `\EFI\BOOT\BOOTX64.EFI` from a basic-data partition as from an ESP (the removable
//!   media path is searched on every FAT volume it can mount). The one risk is firmware
//!   that only searches ESP-typed partitions; the MBR scheme does not have that problem.
//!
//! Every identifier (disk GUID, partition GUIDs, MBR signature) comes from [`DiskIds`],
//! so equal inputs give byte-identical images.

#![deny(unsafe_code)]

mod image;
mod layout;
mod table;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use mediabuild_fat32::{self as fat32, FatError};

pub use image::{plan_image, write_image};
pub use layout::{
    layout, DiskLayout, FileSystem, Layout, PartitionSpec, PartitionType, PlacedPartition,
    SizeRule, ALIGNMENT, GPT_ESP_TYPE, GPT_MAX_PARTITIONS, GPT_PARTITION_NAME, GPT_PARTITION_TYPE,
    MBR_ESP_TYPE, MBR_MAX_PARTITIONS, MBR_PARTITION_TYPE,
};

/// Partition table scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Classic MBR: up to four primary partitions.
    Mbr,
    /// Protective MBR + GPT: up to 128 partitions.
    Gpt,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Mbr => "MBR",
            Scheme::Gpt => "GPT",
        })
    }
}

/// Identifiers written to the partition table, all derived from one seed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiskIds {
    /// GPT disk GUID, in the byte order of its text form (RFC 4122 / big-endian):
    /// `00112233-4455-…` is `[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, …]`.
    pub disk_guid: [u8; 16],
    /// MBR disk signature (bytes 440–443, little-endian); also in the protective MBR.
    pub mbr_signature: u32,
    /// The seed the partition GUIDs derive from.
    seed: Vec<u8>,
}

impl DiskIds {
    /// Derives all identifiers from a seed (e.g. the recipe digest): SHA-256 with a
    /// label per field, GUIDs marked as version 4 / RFC 4122 variant so that they look
    /// like any other GUID, and a non-zero MBR signature (Windows replaces zero).
    pub fn from_seed(seed: &[u8]) -> DiskIds {
        let s = derive(seed, b"mbr signature");
        let signature = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        DiskIds {
            disk_guid: guid(seed, b"disk guid"),
            mbr_signature: if signature == 0 { 1 } else { signature },
            seed: seed.to_vec(),
        }
    }

    /// GPT partition GUID of partition `number` (from 1), same byte order as
    /// [`DiskIds::disk_guid`]. Partition 1 derives with the label `partition guid`, as
    /// when images had one partition; partition `n > 1` with `partition guid n`.
    pub fn partition_guid(&self, number: u32) -> [u8; 16] {
        if number <= 1 {
            guid(&self.seed, b"partition guid")
        } else {
            guid(&self.seed, format!("partition guid {number}").as_bytes())
        }
    }
}

fn derive(seed: &[u8], label: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mediabuild disk id\0");
    h.update(label);
    h.update([0]);
    h.update(seed);
    h.finalize().into()
}

fn guid(seed: &[u8], label: &[u8]) -> [u8; 16] {
    let d = derive(seed, label);
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g[6] = (g[6] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// Everything that can go wrong when laying out or writing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A problem with the files or the FAT32 volume.
    #[error(transparent)]
    Fat(#[from] FatError),

    /// The content does not fit on a disk of this size.
    #[error(
        "content does not fit: the FAT32 partition of a {} disk is {} too small for it; \
         use a disk of at least {}",
        fat32_bytes(*disk_bytes), fat32_bytes(*short_by), fat32_bytes(*min_disk_bytes)
    )]
    DoesNotFit {
        /// The disk size given.
        disk_bytes: u64,
        /// Bytes of clusters beyond what the partition holds.
        short_by: u64,
        /// Smallest disk (whole MiB) that holds the content.
        min_disk_bytes: u64,
    },

    /// The disk cannot hold a FAT32 partition that UEFI firmware accepts.
    #[error(
        "a {scheme} disk of {} is too small for a FAT32 partition with the 65525 clusters \
         UEFI firmware requires; use a disk of at least {}",
        fat32_bytes(*disk_bytes), fat32_bytes(*min_disk_bytes)
    )]
    TooSmall {
        /// The partition scheme.
        scheme: Scheme,
        /// The disk size given.
        disk_bytes: u64,
        /// Smallest disk that works (and holds the content, when it is known).
        min_disk_bytes: u64,
    },

    /// The disk size is not a whole number of 512-byte sectors.
    #[error(
        "disk size {disk_bytes} bytes is not a multiple of 512-byte sectors; \
         use {} or {} bytes",
        disk_bytes / 512 * 512, disk_bytes.div_ceil(512) * 512
    )]
    NotSectorMultiple {
        /// The disk size given.
        disk_bytes: u64,
    },

    /// The disk cannot hold the fixed-size partitions of the layout.
    #[error(
        "a {scheme} disk of {} cannot hold the {partitions} partitions of its layout; \
         use a disk of at least {}",
        fat32_bytes(*disk_bytes), fat32_bytes(*min_disk_bytes)
    )]
    TooSmallForLayout {
        /// The partition scheme.
        scheme: Scheme,
        /// The disk size given.
        disk_bytes: u64,
        /// Partitions of the layout.
        partitions: usize,
        /// Smallest disk that holds them.
        min_disk_bytes: u64,
    },

    /// The content of a fixed-size partition does not fit it: no disk size helps.
    #[error(
        "partition {number} of the layout is {} but its FAT32 volume needs at least {} \
         for its content; the layout must make it larger",
        fat32_bytes(*partition_bytes), fat32_bytes(*min_partition_bytes)
    )]
    PartitionTooSmall {
        /// The partition's number, from 1.
        number: u32,
        /// Its size.
        partition_bytes: u64,
        /// Smallest partition that holds its content.
        min_partition_bytes: u64,
    },

    /// The layout itself is invalid, whatever the disk size.
    #[error("invalid {scheme} disk layout: {reason}")]
    InvalidLayout {
        /// The partition scheme.
        scheme: Scheme,
        /// What is wrong.
        reason: String,
    },

    /// The files were not given one list per partition.
    #[error("the layout has {partitions} partition(s), but files were given for {given}")]
    FilesPerPartition {
        /// Partitions of the layout.
        partitions: usize,
        /// File lists given.
        given: usize,
    },

    /// An MBR cannot describe a partition this large.
    #[error(
        "an MBR partition table describes at most {max_disk_bytes} bytes (2 TiB), \
         the disk is {disk_bytes} bytes; use GPT or a smaller disk"
    )]
    TooLargeForMbr {
        /// The disk size given.
        disk_bytes: u64,
        /// Largest disk an MBR describes.
        max_disk_bytes: u64,
    },

    /// A file-system call on the image failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The partition-table crate refused the table.
    #[error("cannot write the {scheme} partition table to {}: {message}", path.display())]
    PartitionTable {
        /// The partition scheme.
        scheme: Scheme,
        /// The image path.
        path: PathBuf,
        /// The crate's message.
        message: String,
    },
}

fn fat32_bytes(n: u64) -> String {
    fat32::bytes(n)
}
