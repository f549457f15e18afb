//! `mediabuild plan`: the plan as text and as JSON.

use crate::support::*;

#[test]
fn plan_json_lists_every_member_and_source() {
    let d = shared_inputs();
    let o = d.run(&["plan", d.recipe().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let members = v["media"]["members"].as_array().expect("members");
    let paths: Vec<&str> = members
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    for want in [
        "EFI/Boot/bootx64.efi",
        "sources/boot.wim",
        "SMS/data/Variables.dat",
        "SMS/data/TsmBootstrap.ini",
        "MediaLabel.txt",
        "SMS/PKG/PS100010/install.wim",
        "SMS/PKG/PS100202/i386/osdbitlocker_wtg.exe",
        "SMS/PKG/PS100401/ask-user.cmd",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    for m in members {
        let kind = m["source"]["kind"]
            .as_str()
            .expect("every member has a source kind");
        assert!([
            "file",
            "wim_file",
            "wim_export",
            "generated",
            "media_variables"
        ]
        .contains(&kind));
        assert!(m["size"].as_u64().is_some());
    }
    let boot = members
        .iter()
        .find(|m| m["path"] == "sources/boot.wim")
        .unwrap();
    assert_eq!(boot["source"]["bootable"], true);
    assert_eq!(v["os_image"]["name"], "Windows 8.1 Enterprise");
    assert_eq!(v["os_image"]["index"], 2);
    assert_eq!(v["outputs"][0]["kind"], "wim");
    // Secret variables are listed by name with their source key, never a value.
    let vars = v["media"]["variables"].as_array().unwrap();
    let pin = vars
        .iter()
        .find(|x| x["name"] == "OSDBitLockerPIN")
        .unwrap();
    assert!(pin.get("value").is_none());
    assert_eq!(pin["secret_from"], "bitlocker.passphrase");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("demo-WTG-Passphrase"));
}

#[test]
fn plan_text_shows_sources_and_outputs() {
    let d = shared_inputs();
    let o = d.run(&["plan", d.recipe().to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("sources/boot.wim"), "{t}");
    assert!(
        t.contains("OSDBitLockerPIN = <secret from bitlocker.passphrase>"),
        "{t}"
    );
    assert!(t.contains("Wim:") && t.contains("demo-wtg.wim"), "{t}");
}
