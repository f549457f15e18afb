//! Small generated files: `SMS/data/TsmBootstrap.ini` and `MediaLabel.txt`.

/// `[MediaInfo]` for prestaged media. CRLF line ends, as Windows tools write INI files.
pub fn tsm_bootstrap(password_required: bool, unattended: bool) -> String {
    format!(
        "[MediaInfo]\r\nMediaType=OEMMedia\r\nPasswordRequired={password_required}\r\nUnattended={unattended}\r\n"
    )
}

pub fn media_label(label: &str) -> String {
    format!("label={label}\r\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ini_shape() {
        let s = super::tsm_bootstrap(true, false);
        assert_eq!(
            s,
            "[MediaInfo]\r\nMediaType=OEMMedia\r\nPasswordRequired=true\r\nUnattended=false\r\n"
        );
    }
}
