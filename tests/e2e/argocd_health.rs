//! The Argo CD health checks the chart documents
//! (`charts/imagepipeline-operator/files/argocd/argocd-cm-health.yaml`), run in a real Lua
//! interpreter (`lua5.4`, or `E2E_LUA`) against objects read from the cluster: a query that is
//! Ready, one not yet synced, one failing, one suspended, and a mirrored ImagePipeline.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

/// The Lua script of `kind` from the shipped argocd-cm snippet.
fn health_script(kind: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("charts/imagepipeline-operator/files/argocd/argocd-cm-health.yaml");
    let text = std::fs::read_to_string(&path).expect("the Argo CD health checks");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    doc["data"][format!("resource.customizations.health.ecs.mirror.io_{kind}").as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("no health check for {kind} in {}", path.display()))
        .to_string()
}

/// A Lua table constructor for a JSON value (`null` becomes `nil`, as Argo CD passes objects).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_bin() -> String {
    std::env::var("E2E_LUA").unwrap_or_else(|_| "lua5.4".into())
}

/// Runs the health check of `kind` on `object` as Argo CD does (the object as global `obj`, the
/// script returns a table); `(status, message)`.
fn health(kind: &str, object: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal function check()\n{}\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(object),
        health_script(kind)
    );
    let mut child = Command::new(lua_bin())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} (apt-get install lua5.4, or set E2E_LUA): {e}",
                lua_bin()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("write the program");
    let out = child.wait_with_output().expect("lua");
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

#[test]
fn argo_cd_health_checks_read_ready_progressing_degraded_and_suspended_from_real_objects() {
    let items = data_set();
    let Some(mut env) = Env::without_operator("argocd", &items, &[]) else {
        return;
    };
    env.secret();
    // Not yet synced: the query exists, no operator has seen it.
    env.apply_ok(&hangzhou_query("waiting"));
    let waiting = env.query("waiting");
    assert!(waiting["status"].is_null(), "{waiting}");

    env.start_operator();
    env.apply_ok(&hangzhou_query("ready"));
    env.apply_ok(&query_manifest(
        "failing",
        json!({"regionId": "cn-hangzhou", "credentials": {"secretRef": {"name": "missing"}}}),
    ));
    env.apply_ok(&query_manifest(
        "suspended",
        json!({"regionId": "cn-hangzhou", "suspend": true, "credentials": {"secretRef": {"name": "ak"}}}),
    ));
    let ready = env.wait_ready("ready", "Synced");
    let failing = env.wait_ready("failing", "CredentialsError");
    let suspended = env.wait_ready("suspended", "Suspended");
    let pipeline = env.get_json(&["imagepipeline", "ip-hz001"]);

    let (status, message) = health("ImagePipelineQuery", &ready);
    assert_eq!(status, "Healthy", "{message}");
    assert!(message.starts_with("Synced: Mirrored 6"), "{message}");
    let (status, message) = health("ImagePipelineQuery", &waiting);
    assert_eq!(status, "Progressing", "{message}");
    let (status, message) = health("ImagePipelineQuery", &failing);
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.starts_with("CredentialsError: "), "{message}");
    let (status, message) = health("ImagePipelineQuery", &suspended);
    assert_eq!(status, "Suspended", "{message}");
    let (status, message) = health("ImagePipeline", &pipeline);
    assert_eq!(status, "Healthy", "{message}");
    assert!(message.contains("ip-hz001"), "{message}");

    // A spec change the operator has not synced yet is Progressing again, not the old Healthy.
    env.stop_operator();
    env.merge_patch(
        "imagepipelinequery",
        "ready",
        r#"{"spec":{"refreshInterval":"5m"}}"#,
    );
    let changed = env.query("ready");
    assert_ne!(
        changed["metadata"]["generation"],
        changed["status"]["observedGeneration"]
    );
    let (status, message) = health("ImagePipelineQuery", &changed);
    assert_eq!(status, "Progressing", "{message}");
}
