//! Small generated files: `SMS/data/TsmBootstrap.ini` and `MediaLabel.txt`.

/// `[MediaInfo]` for prestaged media. CRLF line ends, as Windows tools write INI files.
pub fn tsm_bootstrap(password_required: bool, unattended: bool) -> String {
    format!(
        "[MediaInfo]\r\nMediaType=OEMMedia\r\nPasswordRequired={password_required}\r\nUnattended={unattended}\r\n"
    )
}

/// `MediaLabel.txt`: `label=<label>` and CRLF. ASCII as it is; a label with
/// other characters is written as UTF-16LE with a byte-order mark, the one
/// encoding every Windows reader takes without guessing — Windows PowerShell
/// 5.1 reads a BOM-less file in the ANSI code page (Microsoft's
/// about_Character_Encoding), and the INI profile API reads Unicode only
/// from UTF-16LE files with a BOM.
pub fn media_label(label: &str) -> Vec<u8> {
    let text = format!("label={label}\r\n");
    if text.is_ascii() {
        return text.into_bytes();
    }
    let mut out = vec![0xFF, 0xFE];
    out.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn media_label_is_ascii_or_utf16_with_a_bom() {
        assert_eq!(super::media_label("MEDIA"), b"label=MEDIA\r\n");
        let u = super::media_label("Médias");
        assert_eq!(&u[..4], &[0xFF, 0xFE, b'l', 0]);
        let back: Vec<u16> = u[2..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&back).unwrap(), "label=Médias\r\n");
    }

    #[test]
    fn ini_shape() {
        let s = super::tsm_bootstrap(true, false);
        assert_eq!(
            s,
            "[MediaInfo]\r\nMediaType=OEMMedia\r\nPasswordRequired=true\r\nUnattended=false\r\n"
        );
    }
}
