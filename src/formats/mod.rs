//! The output formats as the model sees them: for each, the validation of a
//! planned output (registered in [`checks`]). Their renderers are in
//! `render/`, one per format, registered in `render::for_output`.

pub mod disk;

use crate::diag::Diagnostic;
use crate::media::MediaTree;
use crate::recipe::Outputs;

/// Every format's validation of the planned outputs.
pub fn checks(
    outputs: &Outputs,
    media: &MediaTree,
    vol: &disk::Volume,
    total_size: u64,
) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    if let Some(o) = &outputs.disk {
        d.extend(disk::check(o, media, vol, total_size));
    }
    d
}
