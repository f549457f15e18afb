//! ConfigMgr's names and fixed values, in one place: the media variables
//! mediabuild writes, the files and folders of prestaged media, the
//! Variables.dat default password. Each name, value format and its public
//! source: `docs/configmgr.md`. The build writes these names and `inspect`
//! reads them back from this one list.

/// The fixed, publicly known password ConfigMgr uses for Variables.dat on
/// media without a password.
pub const DEFAULT_PASSWORD: &str = "{BAC6E688-DE21-4ABE-B7FB-C9F54E6DB664}";

/// A program's default maximum run time (minutes) in the creator package;
/// ConfigMgr's "Unknown" means 720.
pub const DEFAULT_MAX_RUN_TIME: u32 = 120;
/// Accepted maximum run times (minutes), as ConfigMgr's program settings.
pub const RUN_TIME_RANGE: std::ops::RangeInclusive<u32> = 15..=720;

/// Where things live on prestaged media.
pub mod paths {
    /// A content package's folder is `PKG_DIR/<package id>`.
    pub const PKG_DIR: &str = "SMS/PKG";
    /// `PKG_DIR` and a slash: where a package member's path starts.
    pub const PKG_PREFIX: &str = "SMS/PKG/";
    /// TSMBootstrap's settings.
    pub const BOOTSTRAP_INI: &str = "SMS/data/TsmBootstrap.ini";
    /// The encrypted media variables.
    pub const VARIABLES_DAT: &str = "SMS/data/Variables.dat";
    /// The media label file at the root.
    pub const MEDIA_LABEL: &str = "MediaLabel.txt";
}

/// The media variables mediabuild writes itself.
pub mod var {
    pub const MEDIA_TYPE: &str = "_SMSTSMediaType";
    pub const LAUNCH_MODE: &str = "_SMSTSLaunchMode";
    /// Its first 31 characters are the password of `MEDIA_PFX`.
    pub const MEDIA_GUID: &str = "_SMSMediaGuid";
    /// Upper-case hex of a PKCS#12 file: the media certificate and its key.
    pub const MEDIA_PFX: &str = "_SMSTSMediaPFX";
    pub const SITE_CODE: &str = "_SMSTSSiteCode";
    pub const BOOT_MEDIA_PACKAGE_ID: &str = "_SMSTSBootMediaPackageID";
    /// Media written before issue 19 carried the task sequence here.
    pub const PACKAGE_ID: &str = "_SMSTSPackageID";
    pub const HTTP_PORT: &str = "_SMSTSHTTPPort";
    pub const HTTPS_PORT: &str = "_SMSTSHTTPSPort";
    pub const IIS_SSL_STATE: &str = "_SMSTSIISSSLState";
    pub const USE_FIRST_CERT: &str = "_SMSTSUseFirstCert";
    pub const ROOT_CA_CERTS: &str = "_SMSTSRootCACerts";
    pub const PUBLIC_ROOT_KEY: &str = "_SMSTSPublicRootKey";
    pub const SITE_SIGNING_CERTIFICATE: &str = "_SMSTSSiteSigningCertificate";
    pub const LOCATION_MPS: &str = "SMSTSLocationMPs";
    pub const MP: &str = "SMSTSMP";
    pub const PREFERRED_ADVERT_ID: &str = "SMSTSPreferredAdvertID";
    pub const ASSIGN_USERS_MODE: &str = "SMSTSAssignUsersMode";
    pub const X64_UNKNOWN_MACHINE_GUID: &str = "_SMSTSx64UnknownMachineGUID";
    pub const X86_UNKNOWN_MACHINE_GUID: &str = "_SMSTSx86UnknownMachineGUID";
    pub const PRE_EXEC_COMMAND_LINE: &str = "_SMSTSPreExecCommandLine";
    pub const PRE_EXEC_PACKAGE_ID: &str = "_SMSTSPreExecPackageID";
    /// The Windows To Go BitLocker passphrase (secret).
    pub const BITLOCKER_PIN: &str = "OSDBitLockerPIN";
    /// A user-device affinity list (`variables`), checked for its format.
    pub const UDA_USERS: &str = "SMSTSUDAUsers";
}

/// Variables mediabuild writes with a value that is never secret (what
/// `inspect` may show in clear).
pub const PLAIN_VARIABLES: &[&str] = &[
    var::MEDIA_TYPE,
    var::LAUNCH_MODE,
    var::MEDIA_GUID,
    var::SITE_CODE,
    var::BOOT_MEDIA_PACKAGE_ID,
    var::PACKAGE_ID,
    var::HTTP_PORT,
    var::HTTPS_PORT,
    var::IIS_SSL_STATE,
    var::USE_FIRST_CERT,
    var::ROOT_CA_CERTS,
    var::PUBLIC_ROOT_KEY,
    var::SITE_SIGNING_CERTIFICATE,
    var::LOCATION_MPS,
    var::MP,
    var::PREFERRED_ADVERT_ID,
    var::ASSIGN_USERS_MODE,
    var::X64_UNKNOWN_MACHINE_GUID,
    var::X86_UNKNOWN_MACHINE_GUID,
    var::PRE_EXEC_COMMAND_LINE,
    var::PRE_EXEC_PACKAGE_ID,
];

/// Variables whose value is certificates: their DER in upper-case hex, several
/// joined by `;`.
pub const CERTIFICATE_VARIABLES: &[&str] = &[var::ROOT_CA_CERTS, var::SITE_SIGNING_CERTIFICATE];

/// Variables mediabuild sets from a recipe key, which `variables` may not set
/// too: (variable, recipe key).
pub const OWNED_VARIABLES: &[(&str, &str)] = &[
    (var::PREFERRED_ADVERT_ID, "media.deployment_id"),
    (var::ASSIGN_USERS_MODE, "security.user_device_affinity"),
    (var::MP, "media.management"),
    (var::LOCATION_MPS, "media.management"),
];

/// Variables derived from the recipe digest or a secret: they change with
/// every recipe change, so `diff` does not report them.
pub const DERIVED_VARIABLES: &[&str] = &[var::MEDIA_GUID, var::MEDIA_PFX];

/// The password of `_SMSTSMediaPFX`: the first 31 characters of `_SMSMediaGuid`.
pub fn pfx_password(media_guid: &str) -> String {
    media_guid.chars().take(31).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfx_password_is_31_characters_of_the_guid() {
        let g = "0F6C8E2A-51D3-5B0E-9A41-7C2D6E8F1A3B";
        assert_eq!(pfx_password(g), "0F6C8E2A-51D3-5B0E-9A41-7C2D6E8");
        assert_eq!(pfx_password(g).len(), 31);
    }

    #[test]
    fn the_package_prefix_is_the_package_folder() {
        assert_eq!(paths::PKG_PREFIX, format!("{}/", paths::PKG_DIR));
    }
}
