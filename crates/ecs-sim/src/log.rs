//! The request log: every RPC call with its action, parameters (never `Signature`; the STS token
//! redacted, an `OIDCToken` as its fingerprint), status and error code, kept in memory and
//! optionally written as JSON lines.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::errors::SimError;

/// Entries kept in memory at most; older ones are dropped (the file keeps everything).
const MAX_IN_MEMORY: usize = 100_000;

/// One answered RPC call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    /// When it was answered (RFC 3339).
    pub time: String,
    /// `GET` or `POST`.
    pub method: String,
    /// `Action` / `x-acs-action`, if any.
    pub action: Option<String>,
    /// Query and form parameters without `Signature`; `SecurityToken` redacted, `OIDCToken`
    /// replaced by its [`token_fingerprint`](super::sts::token_fingerprint).
    pub parameters: BTreeMap<String, String>,
    /// HTTP status answered.
    pub status: u16,
    /// Error code answered, if any.
    pub code: Option<String>,
    /// `RequestId` answered.
    pub request_id: String,
}

/// The in-memory log and its optional file.
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
    file: Option<Mutex<LineWriter<File>>>,
}

impl RequestLog {
    /// A log that also appends to `path`, when given.
    pub fn open(path: Option<&Path>) -> Result<Self, SimError> {
        let file = match path {
            None => None,
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| SimError::Log {
                        path: p.display().to_string(),
                        source,
                    })?;
                Some(Mutex::new(LineWriter::new(f)))
            }
        };
        Ok(Self {
            entries: Mutex::default(),
            file,
        })
    }

    /// Records one call.
    pub fn record(&self, entry: LoggedRequest) {
        if let Some(file) = &self.file {
            if let (Ok(mut f), Ok(line)) = (file.lock(), serde_json::to_string(&entry)) {
                // A full disk must not take the simulator down: the entry stays in memory.
                let _ = writeln!(f, "{line}");
            }
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_IN_MEMORY {
                entries.remove(0);
            }
            entries.push(entry);
        }
    }

    /// Every call recorded so far (up to the in-memory limit).
    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// The parameters as logged: no `Signature`, `SecurityToken` redacted, `OIDCToken` fingerprinted.
pub fn loggable(params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| {
            let v = match k.as_str() {
                "SecurityToken" => "<redacted>".to_string(),
                "OIDCToken" => super::sts::token_fingerprint(v),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_omit_the_signature_and_hide_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = RequestLog::open(Some(&path)).expect("open");
        let params: BTreeMap<String, String> = [
            ("Signature", "abc"),
            ("SecurityToken", "tok"),
            ("RegionId", "cn-hangzhou"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        log.record(LoggedRequest {
            time: "t".into(),
            method: "POST".into(),
            action: Some("DescribeImagePipelines".into()),
            parameters: loggable(&params),
            status: 200,
            code: None,
            request_id: "R".into(),
        });
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1);
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(line["action"], "DescribeImagePipelines");
        assert_eq!(line["status"], 200);
        assert!(line["parameters"].get("Signature").is_none());
        assert_eq!(line["parameters"]["SecurityToken"], "<redacted>");
        assert_eq!(log.entries().len(), 1);
    }
}
