//! The committed CRDs under `crds/` are exactly what the Rust types generate.
//!
//! After changing a type, regenerate them with `UPDATE_CRDS=1 cargo test --test crd_drift`.

use std::path::PathBuf;

use imagepipeline_operator::crd::crds_yaml;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/imagepipeline-operator.yaml")
}

#[test]
fn committed_crds_match_the_types() {
    let generated = crds_yaml();
    let path = committed_path();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write crds/imagepipeline-operator.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the CRDs the Rust types generate.\n\
         Regenerate it with: UPDATE_CRDS=1 cargo test --test crd_drift\n\
         and commit the result.",
        path.display()
    );
}
