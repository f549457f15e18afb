//! Build script: records the versions of the crates that turn a seed into
//! the media certificate's RSA key (`MEDIABUILD_KEYGEN_CRATES`), so that a
//! key kept in the build cache is never served to a binary that would have
//! derived another one from the same seed.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut found = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if [
                "rsa",
                "num-bigint-dig",
                "rand_chacha",
                "rand_core",
                "num-prime",
            ]
            .contains(&n.as_str())
            {
                found.push(format!("{n} {}", v.trim_matches('"')));
            }
        }
    }
    found.sort();
    // Empty without a lock file: the cache then keeps no keys.
    println!(
        "cargo:rustc-env=MEDIABUILD_KEYGEN_CRATES={}",
        found.join(", ")
    );
}
