//! The WIM compression formats (serde and JSON Schema: the product's recipes name them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// WIM compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Xpress,
    #[default]
    Lzx,
    Lzms,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xpress => "xpress",
            Compression::Lzx => "lzx",
            Compression::Lzms => "lzms",
        }
    }
}
