//! The listing both file-system walkers fill: it checks every name before it becomes a path, and it
//! holds the budgets that keep a hostile image from looping or exhausting memory.

use crate::image::Image;
use crate::{Entry, IsoError};

/// Deepest folder nesting accepted; real media stay under 20, a loop hits this at once.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most files and folders in one image (a Windows image has about a thousand).
pub(crate) const MAX_ENTRIES: usize = 1_000_000;
/// Most extents over all files (each a few bytes of memory).
pub(crate) const MAX_EXTENTS: usize = 4_000_000;
/// Largest single directory read into memory (about 500,000 names).
pub(crate) const MAX_DIR_BYTES: u64 = 64 << 20;
/// Most directory bytes read over the whole walk, so many large directories cannot add up.
pub(crate) const MAX_TOTAL_DIR_BYTES: u64 = 1 << 30;

/// The entries found so far and what the walk has spent.
#[derive(Default)]
pub(crate) struct Tree {
    pub entries: Vec<Entry>,
    extents: usize,
    dir_bytes: u64,
}

impl Tree {
    /// The path of `name` inside the folder `parent` ("" for the root), after checking the name
    /// cannot escape or confuse a '/'-separated path.
    pub fn child(img: &Image, offset: u64, parent: &str, name: &str) -> Result<String, IsoError> {
        let bad =
            name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
        if bad {
            return Err(img.corrupt(
                Some(offset),
                format!(
                    "the folder {} holds an entry named {name:?}, which no file system allows",
                    shown(parent)
                ),
            ));
        }
        Ok(if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        })
    }

    pub fn push(&mut self, img: &Image, entry: Entry) -> Result<(), IsoError> {
        if self.entries.len() >= MAX_ENTRIES {
            return Err(img.corrupt(
                None,
                format!("it lists more than {MAX_ENTRIES} files and folders"),
            ));
        }
        debug_assert_eq!(
            entry.extents.iter().map(|e| e.len).sum::<u64>(),
            if entry.is_dir { 0 } else { entry.size }
        );
        self.entries.push(entry);
        Ok(())
    }

    /// Counts one more extent against the image-wide budget.
    pub fn spend_extent(&mut self, img: &Image, path: &str) -> Result<(), IsoError> {
        self.extents += 1;
        if self.extents > MAX_EXTENTS {
            return Err(img.corrupt(
                None,
                format!("more than {MAX_EXTENTS} extents by the time {path} is reached"),
            ));
        }
        Ok(())
    }

    /// Counts a directory's bytes before they are read.
    pub fn spend_dir(
        &mut self,
        img: &Image,
        offset: u64,
        path: &str,
        len: u64,
    ) -> Result<(), IsoError> {
        if len > MAX_DIR_BYTES {
            return Err(img.corrupt(
                Some(offset),
                format!(
                    "the folder {} claims {len} bytes of entries, more than the {MAX_DIR_BYTES} accepted",
                    shown(path)
                ),
            ));
        }
        self.dir_bytes += len;
        if self.dir_bytes > MAX_TOTAL_DIR_BYTES {
            return Err(img.corrupt(
                Some(offset),
                format!(
                    "its folders hold more than {MAX_TOTAL_DIR_BYTES} bytes of entries by the time {} is reached",
                    shown(path)
                ),
            ));
        }
        Ok(())
    }
}

/// A folder path as shown in messages: the root is "/".
pub(crate) fn shown(path: &str) -> String {
    format!("/{path}")
}
