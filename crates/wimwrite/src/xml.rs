//! The XML data: image names, counts and times, in UTF-16LE.
//!
//! Encoding rules from the reference (§6): UTF-16LE with a BOM, no XML
//! declaration, stored raw. Times are FILETIMEs split in `HIGHPART` /
//! `LOWPART`, written as `0x` + 8 upper-case hex digits because wimlib parses
//! them as hexadecimal. Element order copies what wimlib 1.13 writes for a
//! fresh capture (NAME first, DESCRIPTION last, the WIM-level TOTALBYTES
//! after the image); `WIMBOOT` is omitted, as wimlib does when it is 0.

/// What `<IMAGE INDEX="1">` says about the single image.
#[derive(Clone, Debug)]
pub struct ImageInfo<'a> {
    /// Directories including the root (wimlib counts this way).
    pub dir_count: u64,
    /// Non-directories.
    pub file_count: u64,
    /// Sum of the sizes of all files (duplicates counted each time).
    pub total_bytes: u64,
    /// CREATIONTIME and LASTMODIFICATIONTIME, as a FILETIME.
    pub time: u64,
    /// `NAME`; omitted when empty.
    pub name: &'a str,
    /// `DESCRIPTION`; omitted when `None`.
    pub description: Option<&'a str>,
}

/// Characters XML 1.0 cannot carry even escaped (C0 controls other than
/// tab, LF, CR). Callers reject names containing them up front.
pub fn has_forbidden_chars(s: &str) -> bool {
    s.chars().any(|c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    })
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

fn time_element(tag: &str, filetime: u64) -> String {
    format!(
        "<{tag}><HIGHPART>0x{:08X}</HIGHPART><LOWPART>0x{:08X}</LOWPART></{tag}>",
        filetime >> 32,
        filetime & 0xFFFF_FFFF
    )
}

/// The XML document as text (before UTF-16 encoding). `xml_offset` is the
/// file offset where the XML will start, which wimlib records as the
/// WIM-level TOTALBYTES.
pub fn document(image: &ImageInfo<'_>, xml_offset: u64) -> String {
    let mut s = String::from("<WIM><IMAGE INDEX=\"1\">");
    if !image.name.is_empty() {
        s.push_str(&format!("<NAME>{}</NAME>", escape(image.name)));
    }
    s.push_str(&format!(
        "<DIRCOUNT>{}</DIRCOUNT><FILECOUNT>{}</FILECOUNT><TOTALBYTES>{}</TOTALBYTES>\
         <HARDLINKBYTES>0</HARDLINKBYTES>",
        image.dir_count, image.file_count, image.total_bytes
    ));
    s.push_str(&time_element("CREATIONTIME", image.time));
    s.push_str(&time_element("LASTMODIFICATIONTIME", image.time));
    if let Some(d) = image.description {
        s.push_str(&format!("<DESCRIPTION>{}</DESCRIPTION>", escape(d)));
    }
    s.push_str(&format!(
        "</IMAGE><TOTALBYTES>{xml_offset}</TOTALBYTES></WIM>"
    ));
    s
}

/// The on-disk bytes: BOM + UTF-16LE text.
pub fn encode(image: &ImageInfo<'_>, xml_offset: u64) -> Vec<u8> {
    let text = document(image, xml_offset);
    let mut out = Vec::with_capacity(2 + text.len() * 2);
    out.extend_from_slice(&[0xFF, 0xFE]);
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ImageInfo<'static> {
        ImageInfo {
            dir_count: 2,
            file_count: 1,
            total_bytes: 5,
            time: 0x01DA_3C45_7689_C000,
            name: "Test",
            description: None,
        }
    }

    #[test]
    fn same_length_as_reference_walkthrough() {
        // reference §13: 760 bytes for this content (element order aside).
        assert_eq!(encode(&info(), 689).len(), 760);
        let doc = document(&info(), 689);
        assert!(doc.contains("<HIGHPART>0x01DA3C45</HIGHPART><LOWPART>0x7689C000</LOWPART>"));
        assert!(doc.ends_with("<TOTALBYTES>689</TOTALBYTES></WIM>"));
    }

    #[test]
    fn escapes_and_description() {
        let mut i = info();
        i.name = "A&B <x>";
        i.description = Some("d > c");
        let doc = document(&i, 1);
        assert!(doc.contains("<NAME>A&amp;B &lt;x&gt;</NAME>"));
        assert!(doc.contains("<DESCRIPTION>d &gt; c</DESCRIPTION></IMAGE>"));
        assert!(has_forbidden_chars("a\u{1}b"));
        assert!(!has_forbidden_chars("Windows 10 Enterprise\tx64"));
    }

    #[test]
    fn starts_with_bom_and_is_utf16le() {
        let b = encode(&info(), 689);
        assert_eq!(&b[..4], &[0xFF, 0xFE, b'<', 0]);
    }
}
