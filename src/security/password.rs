//! The media password policy.
//!
//! Variables.dat is keyed by one SHA-1 of the password — no salt, no
//! iterations — so whoever holds the media can try billions of guesses a
//! second offline. Length is what helps, hence the policy:
//!
//! - at least [`MIN_LENGTH`] (12) characters;
//! - at least [`MIN_DISTINCT`] (6) different characters (`aaaaaaaaaaaa` and
//!   `121212121212` are long but not strong);
//! - not ConfigMgr's publicly known default password.
//!
//! `--allow-weak-password` turns the refusal into a loud warning. Messages
//! describe what is wrong, never the password.

use crate::configmgr::DEFAULT_PASSWORD;

pub const MIN_LENGTH: usize = 12;
pub const MIN_DISTINCT: usize = 6;

/// Why `password` breaks the policy, or None when it meets it. The text never
/// contains the password.
pub fn weakness(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        // Neither its length nor its count of different characters is
        // said: both would narrow an offline search.
        return Some(format!(
            "the media password is shorter than {MIN_LENGTH} characters"
        ));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Some(format!(
            "the media password uses fewer than {MIN_DISTINCT} different characters"
        ));
    }
    if password.eq_ignore_ascii_case(DEFAULT_PASSWORD) {
        return Some("the media password is ConfigMgr's publicly known default".into());
    }
    None
}

/// The fix shown with a weak-password diagnostic.
pub const FIX: &str = "use a passphrase of at least 12 characters (e.g. four random words); Variables.dat is encrypted with one unsalted SHA-1 of it, so short passwords fall to offline guessing. `--allow-weak-password` builds anyway, with a warning";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(weakness("correct horse battery staple").is_none());
        assert!(weakness("demo-Media-Passw0rd-2026").is_none());
        let short = weakness("Sh0rt!pw").unwrap();
        assert!(short.contains("shorter than 12"), "{short}");
        assert!(!short.contains('8'), "{short}");
        assert!(!short.contains("Sh0rt"), "{short}");
        assert!(weakness("aaaaaaaaaaaaaaaa")
            .unwrap()
            .contains("fewer than 6 different"));
        assert!(weakness("121212121212")
            .unwrap()
            .contains("fewer than 6 different"));
        assert!(weakness("{bac6e688-de21-4abe-b7fb-c9f54e6db664}")
            .unwrap()
            .contains("default"));
        // Characters, not bytes.
        assert!(weakness("ééééééééééé").is_some());
    }
}
