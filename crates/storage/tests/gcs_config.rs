//! Google Cloud Storage targets: no emulator runs here, so only building the client from a service account key
//! and the configuration errors are checked. Uploads to a real GCS endpoint are untested.

use std::path::{Path, PathBuf};

use ferrocast_storage::{Storage, StorageConfig, TargetConfig, TargetKind};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-service-account.json")
}

fn gcs(key_file: &Path) -> Result<Storage, ferrocast_storage::StorageError> {
    let mut t = TargetConfig::empty("gcs", TargetKind::Gcs);
    t.bucket = "ferrocast-recordings".into();
    t.service_account_key = key_file.to_string_lossy().into_owned();
    t.prefix = "live".into();
    Storage::new(&StorageConfig { targets: vec![t], ..StorageConfig::default() })
}

#[test]
fn builds_from_a_service_account_key() {
    let st = gcs(&fixture()).expect("a well-formed key builds a client");
    assert!(st.object_store("gcs").is_some());
    assert_eq!(st.url("gcs", "a/b c.flv"), "https://storage.googleapis.com/ferrocast-recordings/live/a/b%20c.flv");
    assert_eq!(st.target_for("ferrocast-recordings").as_deref(), Some("gcs"));
    let debug = format!("{st:?}");
    assert!(!debug.contains("fake-service-account") && !debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn key_file_errors_are_clear_and_quote_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture()).unwrap()).unwrap();
    let pem = key["private_key"].as_str().unwrap().to_string();

    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut no_email = key.clone();
    no_email.as_object_mut().unwrap().remove("client_email");
    let mut bad_pem = key.clone();
    bad_pem["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
    let mut not_pem = key.clone();
    not_pem["private_key"] = "hunter2hunter2".into();
    let cases = [
        (dir.path().join("missing.json"), "cannot read the service account key file"),
        (write("garbage.json", format!("{{ {pem}")), "is not JSON"),
        (write("no-email.json", no_email.to_string()), "no `client_email`"),
        (write("not-pem.json", not_pem.to_string()), "not a PEM private key"),
        (write("bad-pem.json", bad_pem.to_string()), "gcs"),
    ];
    for (path, needle) in cases {
        let err = gcs(&path).expect_err(needle).to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains("MII") && !err.contains("hunter2"), "key material in: {err}");
    }

    let mut t = TargetConfig::empty("g", TargetKind::Gcs);
    t.bucket = "b".into();
    let err = Storage::new(&StorageConfig { targets: vec![t], ..StorageConfig::default() })
        .expect_err("no key file")
        .to_string();
    assert!(err.contains("service_account_key"), "{err}");
}
