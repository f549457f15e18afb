//! `mediabuild site fetch`: what a management point publishes to media
//! clients, written as the recipe's `site:` section for the admin to review
//! and commit (docs/configmgr.md says which replies and why).
//!
//! Read: `GET /SMS_MP/.sms_aut?MPKEYINFORMATIONMEDIA` — the site code
//! (`SITECODE`), the site's unknown-computer resources (`UnknownMachines`,
//! attributes `x64UnknownMachineGUID` / `x86UnknownMachineGUID`) and, where
//! present, the trusted root key (`TRUSTEDROOTKEY`); then `?SITESIGNCERT`, the
//! site signing certificate as hex of its DER. Nothing is written unless every
//! required fact was read and parsed; files are written aside and renamed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The largest reply read (a real one is a few KiB).
const MAX_REPLY: u64 = 4 << 20;

/// What `site fetch` does.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The management point, `http://FQDN` or `https://FQDN` (a port is allowed).
    pub mp: String,
    /// A root CA (DER or PEM) to trust besides the system's, for an HTTPS point.
    pub ca_cert: Option<PathBuf>,
    /// Connect and read timeout of each request.
    pub timeout: Duration,
}

/// The facts read from a management point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFacts {
    pub code: String,
    pub x64: String,
    pub x86: String,
    pub trusted_root_key: Option<String>,
    /// DER of the site signing certificate, when the point published one.
    pub signing_certificate: Option<Vec<u8>>,
    /// Why there is no signing certificate, when there is none.
    pub signing_note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("--mp {0:?}: {1}")]
    Url(String, String),
    #[error("--ca-cert {0}: {1}")]
    CaCert(PathBuf, String),
    #[error("cannot reach {url}: {msg}")]
    Connect { url: String, msg: String },
    #[error("{url} answered HTTP {status}: {hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{url} is not a ConfigMgr management point's reply: {what}")]
    NotConfigMgr { url: String, what: String },
    #[error("{url}: malformed XML ({msg}); the reply was cut short or is not a ConfigMgr reply")]
    Xml { url: String, msg: String },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

/// The management point's base URL, checked: scheme http(s), a host, no
/// path, query or credentials.
pub fn base_url(mp: &str) -> Result<String, FetchError> {
    let bad = |m: &str| FetchError::Url(mp.into(), m.into());
    let rest = mp
        .strip_prefix("http://")
        .or_else(|| mp.strip_prefix("https://"))
        .ok_or_else(|| bad("write the management point as http://FQDN or https://FQDN"))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', '@']) || host.contains(char::is_whitespace)
    {
        return Err(bad(
            "write only the scheme and the host (and a port), e.g. http://mp1.corp.example",
        ));
    }
    Ok(mp.trim_end_matches('/').to_string())
}

fn agent(opts: &FetchOptions) -> Result<ureq::Agent, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(p) = &opts.ca_cert {
        let der = crate::security::cert::read_certificate_file(p)
            .map_err(|e| FetchError::CaCert(p.clone(), e))?;
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| FetchError::CaCert(p.clone(), e.to_string()))?;
    }
    // The crate's one provider (ring, the only one enabled).
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(opts.timeout)
        .timeout(opts.timeout)
        .redirects(3)
        .tls_config(Arc::new(tls))
        .build())
}

/// GET `url`: the body of a 200 reply, or a clear error.
fn get(agent: &ureq::Agent, url: &str) -> Result<(Option<String>, Vec<u8>), FetchError> {
    let resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, _)) => {
            let hint = match status {
                403 => "forbidden: the point may require client certificates (HTTPS-only site systems) — fetch from an HTTP point, or write the `site:` section by hand",
                404 => "not found: is this a management point (the ConfigMgr MP role installs /SMS_MP)?",
                _ => "the management point did not answer this request",
            };
            return Err(FetchError::Status {
                url: url.into(),
                status,
                hint: hint.into(),
            });
        }
        Err(ureq::Error::Transport(t)) => {
            let mut msg = t.to_string();
            if matches!(t.kind(), ureq::ErrorKind::Io)
                && msg.to_ascii_lowercase().contains("timed out")
            {
                msg.push_str(" (raise --timeout, or check the firewall)");
            }
            if msg.contains("UnknownIssuer") || msg.contains("invalid peer certificate") {
                msg.push_str(" — give the site's root CA with --ca-cert FILE");
            }
            return Err(FetchError::Connect {
                url: url.into(),
                msg,
            });
        }
    };
    let ctype = resp.header("content-type").map(str::to_ascii_lowercase);
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_REPLY)
        .read_to_end(&mut body)
        .map_err(|e| FetchError::Connect {
            url: url.into(),
            msg: format!("reading the reply: {e}"),
        })?;
    Ok((ctype, body))
}

/// Text of an XML reply: UTF-16 (with a byte-order mark) or UTF-8; a
/// trailing NUL is dropped.
fn reply_text(body: &[u8]) -> Option<String> {
    let text = if let Some(b) = body.strip_prefix(&[0xFF, 0xFE]) {
        let u: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&u).ok()?
    } else if let Some(b) = body.strip_prefix(&[0xFE, 0xFF]) {
        let u: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&u).ok()?
    } else {
        String::from_utf8(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body).to_vec()).ok()?
    };
    Some(text.trim_end_matches(['\0', '\r', '\n', ' ']).to_string())
}

fn parse_xml<'a>(url: &str, text: &'a str) -> Result<roxmltree::Document<'a>, FetchError> {
    roxmltree::Document::parse(text).map_err(|e| FetchError::Xml {
        url: url.into(),
        msg: e.to_string(),
    })
}

/// A child element of the root, by name (ASCII case-insensitive).
fn child<'a, 'i>(root: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    root.children()
        .find(|n| n.is_element() && n.tag_name().name().eq_ignore_ascii_case(name))
}

/// Parses a reply to `?MPKEYINFORMATIONMEDIA`.
pub fn parse_key_information(
    url: &str,
    ctype: Option<&str>,
    body: &[u8],
) -> Result<SiteFacts, FetchError> {
    let not = |what: String| FetchError::NotConfigMgr {
        url: url.into(),
        what,
    };
    let text = reply_text(body).ok_or_else(|| not("the reply is not text".into()))?;
    let start = text.trim_start();
    if ctype.is_some_and(|c| c.starts_with("text/html"))
        || start.len() >= 5 && start[..5].eq_ignore_ascii_case("<html")
        || start.len() >= 9 && start[..9].eq_ignore_ascii_case("<!doctype")
    {
        return Err(not(format!(
            "a web page ({} bytes of HTML), not the XML a management point sends",
            body.len()
        )));
    }
    if !start.starts_with('<') {
        return Err(not(format!("{} bytes that are not XML", body.len())));
    }
    let doc = parse_xml(url, &text)?;
    let root = doc.root_element();
    let code = child(root, "SITECODE")
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            not(format!(
                "XML with root <{}> and no SITECODE",
                root.tag_name().name()
            ))
        })?;
    let unknown = child(root, "UnknownMachines").ok_or_else(|| {
        not(format!(
            "site {code}: no UnknownMachines element (the unknown-computer GUIDs)"
        ))
    })?;
    let attr = |n: &str| {
        unknown
            .attributes()
            .find(|a| a.name().eq_ignore_ascii_case(n))
            .map(|a| a.value().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let x64 = attr("x64UnknownMachineGUID")
        .ok_or_else(|| not("UnknownMachines has no x64UnknownMachineGUID".into()))?;
    let x86 = attr("x86UnknownMachineGUID")
        .ok_or_else(|| not("UnknownMachines has no x86UnknownMachineGUID".into()))?;
    for g in [&x64, &x86] {
        if !crate::validate::is_guid(g) {
            return Err(not(format!("unknown-computer GUID {g:?} is not a GUID")));
        }
    }
    let trusted_root_key = child(root, "TRUSTEDROOTKEY")
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.len() % 2 == 0 && t.chars().all(|c| c.is_ascii_hexdigit()));
    Ok(SiteFacts {
        code,
        x64,
        x86,
        trusted_root_key,
        signing_certificate: None,
        signing_note: None,
    })
}

/// Parses a reply to `?SITESIGNCERT`: hex of the certificate's DER as the
/// text of the root element (attributes such as `Signature` ignored).
pub fn parse_signing_certificate(url: &str, body: &[u8]) -> Result<Vec<u8>, FetchError> {
    let text = reply_text(body).ok_or_else(|| FetchError::NotConfigMgr {
        url: url.into(),
        what: "the reply is not text".into(),
    })?;
    let doc = parse_xml(url, &text)?;
    let hex: String = doc
        .root_element()
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .flat_map(|t| t.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = crate::ids::unhex(&hex).ok_or_else(|| FetchError::NotConfigMgr {
        url: url.into(),
        what: "no hex certificate in the reply".into(),
    })?;
    crate::security::cert::certificate_der(&der).map_err(|e| FetchError::NotConfigMgr {
        url: url.into(),
        what: e,
    })
}

/// Reads the site's facts from the management point.
pub fn fetch(opts: &FetchOptions) -> Result<SiteFacts, FetchError> {
    let base = base_url(&opts.mp)?;
    let agent = agent(opts)?;
    let url = format!("{base}/SMS_MP/.sms_aut?MPKEYINFORMATIONMEDIA");
    let (ctype, body) = get(&agent, &url)?;
    let mut facts = parse_key_information(&url, ctype.as_deref(), &body)?;
    let url = format!("{base}/SMS_MP/.sms_aut?SITESIGNCERT");
    match get(&agent, &url).and_then(|(_, b)| parse_signing_certificate(&url, &b)) {
        Ok(der) => facts.signing_certificate = Some(der),
        Err(e) => facts.signing_note = Some(e.to_string()),
    }
    Ok(facts)
}

/// The name of the signing certificate's file beside the fragment.
pub const SIGNING_FILE: &str = "site-signing.cer";

/// The `site:` fragment, YAML with comments.
pub fn fragment(
    f: &SiteFacts,
    mp: &str,
    signing_file: Option<&str>,
    ca_cert: Option<&Path>,
) -> String {
    let mut s = format!(
        "# Written by `mediabuild site fetch --mp {mp}` from the management point's\n\
         # MPKEYINFORMATIONMEDIA reply. Review it, then put it in the recipe (docs/configmgr.md).\n\
         site:\n  code: {}\n  unknown_computers:                 # the site's x64/x86 Unknown Computer resources\n    x64: {}\n    x86: {}\n",
        f.code, f.x64, f.x86
    );
    if let Some(k) = &f.trusted_root_key {
        s.push_str(&format!("  trusted_root_key: {k}\n"));
    }
    match (signing_file, &f.signing_note) {
        (Some(p), _) => {
            let what = f
                .signing_certificate
                .as_deref()
                .map(crate::security::cert::describe)
                .unwrap_or_default();
            s.push_str(&format!("  signing_certificate: {p}            # {what}\n"));
        }
        (None, Some(n)) => s.push_str(&format!("  # signing_certificate: not read ({n})\n")),
        (None, None) if f.signing_certificate.is_some() => s.push_str(
            "  # signing_certificate: read; give --out FILE to save it beside the fragment\n",
        ),
        _ => {}
    }
    if mp.to_ascii_lowercase().starts_with("https://") {
        match ca_cert {
            Some(c) => s.push_str(&format!(
                "  root_ca_certificates: [{}]     # the CA trusted for this fetch: check it is your site's\n",
                c.display()
            )),
            None => s.push_str(
                "  # root_ca_certificates: [FILE]  # required with an https:// management point\n",
            ),
        }
    }
    s
}

/// Writes the fragment to `out` (and the signing certificate beside it),
/// each written aside and renamed into place.
pub fn write(
    out: &Path,
    f: &SiteFacts,
    mp: &str,
    ca_cert: Option<&Path>,
) -> Result<(), FetchError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let put = |path: &Path, bytes: &[u8]| -> Result<(), FetchError> {
        let err = |err| FetchError::Write {
            path: path.to_path_buf(),
            err,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    };
    let signing = f.signing_certificate.as_deref();
    if let Some(der) = signing {
        put(&dir.join(SIGNING_FILE), der)?;
    }
    put(
        out,
        fragment(f, mp, signing.map(|_| SIGNING_FILE), ca_cert).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_accepts_points_and_refuses_paths() {
        assert_eq!(
            base_url("http://mp1.corp.example/").unwrap(),
            "http://mp1.corp.example"
        );
        assert!(base_url("https://mp1:8443").is_ok());
        for bad in [
            "mp1",
            "ftp://mp1",
            "http://",
            "http://mp1/SMS_MP",
            "http://u@mp1",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_information_in_utf8_and_utf16() {
        let xml = r#"<MPKEYINFORMATION><SITECODE>PS1</SITECODE><FQDN>mp1.corp.example</FQDN><UnknownMachines x64UnknownMachineGUID="d10d7f98-17dd-4588-b645-34964936023b" x86UnknownMachineGUID="3a2f6e4c-81b0-4d5e-9c7a-0e5b8f2d1c64">MP1</UnknownMachines></MPKEYINFORMATION>"#;
        let f = parse_key_information("u", Some("text/xml"), xml.as_bytes()).unwrap();
        assert_eq!(f.code, "PS1");
        assert_eq!(f.x64, "d10d7f98-17dd-4588-b645-34964936023b");
        let mut u16 = vec![0xFF, 0xFE];
        u16.extend(xml.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(parse_key_information("u", None, &u16).unwrap(), f);
        let cut = &xml.as_bytes()[..xml.len() - 20];
        assert!(matches!(
            parse_key_information("u", None, cut),
            Err(FetchError::Xml { .. })
        ));
        let page = b"<!DOCTYPE html><html><body>IIS Windows Server</body></html>";
        assert!(matches!(
            parse_key_information("u", Some("text/html"), page),
            Err(FetchError::NotConfigMgr { .. })
        ));
    }
}
