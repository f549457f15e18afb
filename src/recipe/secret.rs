//! Secrets come only by reference: `{ env: NAME }` or `{ file: PATH }`.
//!
//! A literal in the recipe is refused at parse time, and the refusal never
//! repeats the literal. A resolved [`Secret`] prints as `<redacted>` in every
//! `Debug`/`Display`, so it cannot leak through logs or error chains by accident.

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret is read from at build time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of an environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// File holding the secret (trailing newline removed), relative to the recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// The recipe keys that hold a secret reference (`variables.NAME` aside: any
/// of them may). A unit test checks this list against the schema.
pub const SECRET_KEYS: &[&str] = &[
    "bitlocker.passphrase",
    "security.certificate.pki.password",
    "security.password",
];

/// Names whose values are secrets: a literal value is refused.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "osdbitlockerpin"
        || n.contains("password")
        || n.contains("passphrase")
        || n.ends_with("pin")
}

/// Whether the key path `path` is, or lies inside, a secret reference: a
/// diagnostic there must show neither its source line nor a value or key.
pub fn is_secret_path(path: &str) -> bool {
    let under = |k: &str| {
        path == k
            || path
                .strip_prefix(k)
                .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
    };
    if SECRET_KEYS.iter().any(|k| under(k)) {
        return true;
    }
    // A variable's value is a string or a reference; anything below a
    // variable is inside a reference, and a secret-named one is secret.
    match path.strip_prefix("variables.") {
        Some(rest) => match rest.split_once('.') {
            Some(_) => true,
            None => is_secret_name(rest),
        },
        None => false,
    }
}

/// The message for a literal where a secret reference belongs.
pub const LITERAL_SECRET: &str =
    "a secret must not be written in the recipe: give it as { env: NAME } or { file: PATH }";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{ env: NAME } or { file: PATH }")
            }
            // Every scalar is refused without echoing it: it may be the secret itself.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_SECRET))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_SECRET))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_SECRET))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_SECRET))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_SECRET))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
                secret_ref_from_map(map)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads `{ env: NAME }` / `{ file: PATH }` from a map; shared with variable values.
pub(crate) fn secret_ref_from_map<'de, A: MapAccess<'de>>(
    mut map: A,
) -> Result<SecretRef, A::Error> {
    let mut r = SecretRef {
        env: None,
        file: None,
    };
    while let Some(key) = map.next_key::<String>()? {
        match key.as_str() {
            "env" => r.env = Some(map.next_value()?),
            "file" => r.file = Some(map.next_value()?),
            other => return Err(de::Error::unknown_field(other, &["env", "file"])),
        }
    }
    match (&r.env, &r.file) {
        (Some(_), Some(_)) => Err(de::Error::custom("give either `env` or `file`, not both")),
        (None, None) => Err(de::Error::custom(
            "a secret reference needs `env: NAME` or `file: PATH`",
        )),
        _ => Ok(r),
    }
}

impl SecretRef {
    /// Where the secret comes from, safe to print.
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(e), _) => format!("env {e}"),
            (_, Some(f)) => format!("file {}", f.display()),
            _ => "nothing".into(),
        }
    }

    /// Reads the secret. `base` is the recipe's folder.
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretError> {
        if let Some(name) = &self.env {
            return match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(SecretError::EmptyEnv(name.clone())),
                Err(_) => Err(SecretError::MissingEnv(name.clone())),
            };
        }
        let rel = self.file.as_ref().ok_or(SecretError::NoSource)?;
        let path = base.join(rel);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(md) = std::fs::metadata(&path) {
                let mode = md.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::FileTooOpen(path, mode & 0o777));
                }
            }
        }
        // A secret is short: 64 KiB is room for any password or passphrase.
        let text = crate::fsutil::read_small_text(&path, 64 << 10)
            .map_err(|e| SecretError::File(path.clone(), e))?;
        // An editor's byte-order mark is not part of the secret.
        let value = text
            .trim_start_matches('\u{feff}')
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if value.is_empty() {
            return Err(SecretError::EmptyFile(path));
        }
        Ok(Secret(value))
    }
}

/// A resolved secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    #[cfg(test)]
    pub fn for_test(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set; export it before building")]
    MissingEnv(String),
    #[error("environment variable {0} is empty")]
    EmptyEnv(String),
    #[error("cannot read secret file {0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
    #[error("secret file {0} is readable by group or others (mode {1:o}); run `chmod 600` on it")]
    FileTooOpen(PathBuf, u32),
    #[error("secret reference names neither env nor file")]
    NoSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_is_refused_without_echo() {
        let e = serde_yaml::from_str::<SecretRef>("hunter2-very-secret").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("must not be written in the recipe"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn env_and_file_forms() {
        let r: SecretRef = serde_yaml::from_str("{ env: PW }").unwrap();
        assert_eq!(r.env.as_deref(), Some("PW"));
        let r: SecretRef = serde_yaml::from_str("{ file: a/b }").unwrap();
        assert_eq!(r.file.as_deref(), Some(Path::new("a/b")));
        assert!(serde_yaml::from_str::<SecretRef>("{ env: A, file: b }").is_err());
        assert!(serde_yaml::from_str::<SecretRef>("{ value: x }").is_err());
    }

    #[test]
    fn secret_keys_are_where_the_schema_has_secret_references() {
        fn find(
            root: &serde_json::Value,
            s: &serde_json::Value,
            path: &str,
            out: &mut Vec<String>,
        ) {
            if path.matches('.').count() > 8 {
                return;
            }
            if s.get("$ref").and_then(|r| r.as_str()) == Some("#/$defs/SecretRef") {
                out.push(path.to_string());
                return;
            }
            if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
                let name = r.rsplit('/').next().unwrap_or("");
                if let Some(d) = root["$defs"].get(name) {
                    find(root, d, path, out);
                }
                return;
            }
            if let Some(p) = s.get("properties").and_then(|p| p.as_object()) {
                for (k, v) in p {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    find(root, v, &sub, out);
                }
            }
            if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
                find(root, a, &format!("{path}.*"), out);
            }
            for k in ["anyOf", "oneOf", "allOf"] {
                for b in s.get(k).and_then(|l| l.as_array()).into_iter().flatten() {
                    find(root, b, path, out);
                }
            }
        }
        let root = crate::recipe::schema::schema();
        let mut found = Vec::new();
        find(&root, &root, "", &mut found);
        found.sort();
        found.dedup();
        let mut want: Vec<String> = SECRET_KEYS.iter().map(|k| k.to_string()).collect();
        want.push("variables.*".into());
        want.sort();
        assert_eq!(found, want);
        assert!(is_secret_path("security.password"));
        assert!(is_secret_path("security.password.hunter2"));
        assert!(is_secret_path("variables.OSDComputerName.fiel"));
        assert!(is_secret_path("variables.DomainPassword"));
        assert!(!is_secret_path("variables.OSDComputerName"));
        assert!(!is_secret_path("security.passwords"));
        assert!(!is_secret_path("media.name"));
    }

    #[test]
    fn a_secret_file_saved_by_windows_editors_is_read_without_its_marks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("utf8-bom", b"\xef\xbb\xbfcorrect horse\r\n".to_vec()),
            (
                "utf16",
                [0xff, 0xfe]
                    .into_iter()
                    .chain(
                        "correct horse\r\n"
                            .encode_utf16()
                            .flat_map(u16::to_le_bytes),
                    )
                    .collect(),
            ),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let r = SecretRef {
                env: None,
                file: Some(p),
            };
            assert_eq!(
                r.resolve(dir.path()).unwrap().expose(),
                "correct horse",
                "{name}"
            );
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::for_test("abc")), "<redacted>");
    }
}
