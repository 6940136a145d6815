//! The ECS client's TLS against a real handshake: the platform's roots (`SSL_CERT_FILE` here)
//! are read at the first handshake, not when the client is built, so a plain-HTTP endpoint
//! works on a host without any CA certificates, and an HTTPS endpoint is still verified: a
//! server whose CA is not among the roots is refused, one whose CA is is trusted, and a missing
//! store fails the handshake with a clear error that the next handshake can recover from. A
//! trusted connection is kept alive for the next call.
//!
//! One test in its own binary, since it sets the process's `SSL_CERT_FILE`. The certificates
//! are in `tests/tls/` (made by `tests/tls/gen.py`, valid 2020-2120).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use imagepipeline_operator::ecs::{ClientConfig, EcsClient};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod client_sim_support;
use client_sim_support::{ids, list, read_request};

const PAGE: &str = r#"{"RequestId":"REQ-TLS","TotalCount":1,"MaxResults":500,"ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-tls0000000001","Name":"over-tls"}]}}"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// Answers every HTTP/1.1 request of a kept-alive connection with [`PAGE`], until the client
/// closes it.
fn answer(stream: &mut (impl Read + Write)) -> std::io::Result<()> {
    while answer_one(stream)? {}
    Ok(())
}

/// Reads one HTTP/1.1 request and answers it with [`PAGE`]; false at the end of the
/// connection.
fn answer_one(stream: &mut (impl Read + Write)) -> std::io::Result<bool> {
    if read_request(stream)?.is_none() {
        return Ok(false);
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{PAGE}",
        PAGE.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    Ok(true)
}

/// A server answering every request with [`PAGE`], each connection on a thread of its own, over
/// TLS with `tests/tls/server.pem` when `tls`; returns its endpoint and its count of accepted
/// connections.
fn serve(tls: bool) -> (String, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = tls.then(|| {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(fixture("server.pem"))
                .expect("server.pem")
                .collect::<Result<_, _>>()
                .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("server.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server certificate"),
        )
    });
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let config = config.clone();
            // A refused handshake ends the connection with an error; the next one is served.
            thread::spawn(move || match config {
                Some(config) => rustls::ServerConnection::new(config)
                    .map_err(std::io::Error::other)
                    .and_then(|conn| {
                        answer(&mut rustls::StreamOwned::<_, TcpStream>::new(conn, tcp))
                    }),
                None => answer(&mut tcp),
            });
        }
    });
    let endpoint = match tls {
        true => format!("https://localhost:{}", addr.port()),
        false => format!("http://{addr}"),
    };
    (endpoint, accepted)
}

fn client(endpoint: &str) -> EcsClient {
    EcsClient::new(ClientConfig {
        endpoint: Some(endpoint.into()),
        read_timeout: Duration::from_secs(5),
        max_attempts: 1,
        ..ClientConfig::default()
    })
    .expect("a client builds without reading any roots")
}

fn trust(file: &Path) {
    // SAFETY: the only test of this binary; nothing else reads the environment meanwhile.
    unsafe {
        std::env::remove_var("SSL_CERT_DIR");
        std::env::set_var("SSL_CERT_FILE", file);
    }
}

#[tokio::test]
async fn roots_are_read_at_the_first_handshake_and_still_verify_the_server() {
    let (plain, _) = serve(false);
    let (secure, accepted) = serve(true);

    // No CA certificates at all: plain HTTP needs none.
    trust(&fixture("no-such-bundle.pem"));
    let listing = list(&client(&plain))
        .await
        .expect("plain HTTP needs no roots");
    assert_eq!(ids(&listing), ["ip-tls0000000001"]);

    // HTTPS without roots fails the handshake, with the loader's reason.
    let first = client(&secure);
    let error = list(&first).await.expect_err("no roots, no trust");
    let text = error.to_string();
    assert!(
        text.contains("No CA certificates were loaded"),
        "the reason is given: {text}"
    );

    // Roots that do not include the server's CA: the certificate is refused.
    trust(&fixture("other-ca.pem"));
    let error = list(&client(&secure))
        .await
        .expect_err("a server of an unknown CA is refused");
    let text = error.to_string();
    assert!(
        text.contains("UnknownIssuer") || text.contains("unknown issuer"),
        "the certificate is what was refused: {text}"
    );

    // The server's CA: trusted, by a new client and by the one whose first load failed.
    trust(&fixture("ca.pem"));
    for client in [client(&secure), first] {
        let listing = list(&client).await.expect("the server's CA is trusted");
        assert_eq!(ids(&listing), ["ip-tls0000000001"]);
    }

    // A kept-alive TLS connection carries the next call: one handshake for three listings.
    let kept = client(&secure);
    let before = accepted.load(Ordering::SeqCst);
    for _ in 0..3 {
        let listing = list(&kept).await.expect("over the kept connection");
        assert_eq!(ids(&listing), ["ip-tls0000000001"]);
    }
    assert_eq!(accepted.load(Ordering::SeqCst) - before, 1);
}
