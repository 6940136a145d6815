//! Behind a proxy: with `HTTP_PROXY` set, the ECS client's calls go to the proxy (reqwest's
//! proxy support), not to the endpoint directly. One test in its own binary, since it sets the
//! process's environment.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use imagepipeline_operator::ecs::{ClientConfig, EcsClient};

mod client_sim_support;
use client_sim_support::{ids, list, read_request};

const PAGE: &str = r#"{"RequestId":"REQ-PROXY","TotalCount":1,"ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-proxied000001","Name":"via-proxy"}]}}"#;

/// A "proxy" that answers every request itself with [`PAGE`] and records each request's
/// first line; returns its URL.
fn proxy(lines: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = read_request(&mut stream).ok().flatten().unwrap_or_default();
            let text = String::from_utf8_lossy(&request);
            lines
                .lock()
                .expect("lock")
                .push(text.lines().next().unwrap_or_default().to_string());
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

#[tokio::test]
async fn with_a_proxy_in_the_environment_calls_go_through_it() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let proxy_url = proxy(Arc::clone(&lines));
    // SAFETY: the only test of this binary; nothing else reads the environment meanwhile.
    unsafe {
        for v in [
            "NO_PROXY",
            "no_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::remove_var(v);
        }
        std::env::set_var("HTTP_PROXY", &proxy_url);
    }
    // A host that does not resolve: only the proxy can answer for it.
    let client = EcsClient::new(ClientConfig {
        endpoint: Some("http://ecs.proxy-test.invalid".into()),
        max_attempts: 1,
        rate_limit_qps: 0,
        ..ClientConfig::default()
    })
    .expect("client");
    let listing = list(&client).await.expect("listed through the proxy");
    assert_eq!(ids(&listing), ["ip-proxied000001"]);
    assert_eq!(
        lines.lock().expect("lock").as_slice(),
        ["POST http://ecs.proxy-test.invalid/ HTTP/1.1"]
    );
}
