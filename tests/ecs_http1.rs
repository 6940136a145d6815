//! The ECS client's own HTTP/1.1 connections against a server scripted byte by byte: what the
//! request looks like on the wire, connections kept alive between pages and replaced when the
//! server closed them while idle, and every way an answer may be framed (a length, chunks
//! arriving a few bytes at a time, the end of the connection), interim answers, and answers cut
//! short.

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use imagepipeline_operator::ecs::{ClientConfig, EcsClient, EcsError};

mod client_sim_support;
use client_sim_support::{ids, list, read_request};

/// What the server does after reading one request.
enum Act {
    /// Sends these pieces, one write each with a short pause between them.
    Send(Vec<Vec<u8>>),
    /// Sends these pieces as `Send` does, then closes the connection.
    SendAndClose(Vec<Vec<u8>>),
    /// Closes the connection without answering.
    Close,
}

/// The server's view: requests in order, and how many connections it accepted.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    connections: usize,
}

/// A page with one pipeline `id`, and `next` as its NextToken.
fn page(id: &str, next: Option<&str>) -> String {
    let next = next.map_or(String::new(), |t| format!(r#","NextToken":"{t}""#));
    format!(
        r#"{{"RequestId":"REQ-{id}","TotalCount":3,"ImagePipeline":{{"ImagePipelineSet":[{{"ImagePipelineId":"{id}","Name":"n"}}]}}{next}}}"#
    )
}

fn with_length(body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `body` in chunks of `size` bytes (a chunk extension on the first), with a trailer.
fn chunked(body: &str, size: usize) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for (i, piece) in body.as_bytes().chunks(size).enumerate() {
        let ext = if i == 0 { ";note=first" } else { "" };
        out.extend_from_slice(format!("{:X}{ext}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nx-trailer: yes\r\n\r\n");
    out
}

/// `bytes` cut into pieces of `size`.
fn pieces(bytes: Vec<u8>, size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size).map(<[u8]>::to_vec).collect()
}

/// A server on a thread of its own doing `acts` in order, one per request, over as many
/// connections as the client opens; returns its endpoint and what it saw.
fn serve(acts: Vec<Act>) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let acts = Arc::new(Mutex::new(VecDeque::from(acts)));
    let record = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            record.lock().expect("lock").connections += 1;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let acts = Arc::clone(&acts);
            let record = Arc::clone(&record);
            thread::spawn(move || {
                while let Ok(Some(request)) = read_request(&mut stream) {
                    let request = String::from_utf8_lossy(&request).into_owned();
                    record.lock().expect("lock").requests.push(request);
                    let act = acts.lock().expect("lock").pop_front();
                    let (parts, close) = match act {
                        Some(Act::Send(parts)) => (parts, false),
                        Some(Act::SendAndClose(parts)) => (parts, true),
                        Some(Act::Close) | None => return,
                    };
                    for part in parts {
                        if stream.write_all(&part).is_err() {
                            return;
                        }
                        let _ = stream.flush();
                        thread::sleep(Duration::from_millis(2));
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, seen)
}

fn client(endpoint: &str) -> EcsClient {
    EcsClient::new(ClientConfig {
        endpoint: Some(endpoint.into()),
        read_timeout: Duration::from_secs(5),
        max_attempts: 1,
        rate_limit_qps: 0,
        ..ClientConfig::default()
    })
    .expect("client")
}

#[tokio::test]
async fn pages_share_one_kept_alive_connection_and_each_request_is_one_well_formed_post() {
    let (endpoint, seen) = serve(vec![
        Act::Send(vec![with_length(&page("ip-1", Some("t1")), "")]),
        Act::Send(vec![with_length(&page("ip-2", Some("t2")), "")]),
        Act::Send(vec![with_length(&page("ip-3", None), "")]),
    ]);
    let listing = list(&client(&endpoint)).await.expect("listing");
    assert_eq!(ids(&listing), ["ip-1", "ip-2", "ip-3"]);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.connections, 1, "one connection for every page");
    let authority = endpoint.trim_start_matches("http://");
    for request in &seen.requests {
        let (head, body) = request.split_once("\r\n\r\n").expect("a head");
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("POST / HTTP/1.1"));
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (name, value) = l.split_once(':').expect("name: value");
                (name.to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        let header = |name: &str| {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(values.len(), 1, "one {name} header in {head}");
            values[0].to_string()
        };
        assert_eq!(header("host"), authority);
        assert_eq!(header("content-type"), "application/x-www-form-urlencoded");
        assert_eq!(header("content-length"), body.len().to_string());
        assert!(header("user-agent").starts_with("imagepipeline-operator/"));
        assert!(body.contains("Action=DescribeImagePipelines"), "{body}");
        assert!(body.contains("&Signature="), "{body}");
    }
    assert!(seen.requests[1].contains("NextToken=t1"));
    assert!(seen.requests[2].contains("NextToken=t2"));
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_without_an_error() {
    let (endpoint, seen) = serve(vec![
        Act::Send(vec![with_length(&page("ip-1", None), "")]),
        // The next request on the kept connection finds it closed.
        Act::Close,
        Act::Send(vec![with_length(&page("ip-1", None), "")]),
    ]);
    let client = client(&endpoint);
    list(&client).await.expect("first listing");
    let listing = list(&client)
        .await
        .expect("the closed connection is replaced, not reported");
    assert_eq!(ids(&listing), ["ip-1"]);
    assert_eq!(listing.calls, 1);
    assert_eq!(seen.lock().expect("lock").connections, 2);
}

#[tokio::test]
async fn chunked_answers_arriving_a_few_bytes_at_a_time_decode_and_close_ends_the_connection() {
    let first = page("ip-1", Some("t1"));
    let second = page("ip-2", None);
    let (endpoint, seen) = serve(vec![
        Act::Send(pieces(chunked(&first, 7), 5)),
        Act::Send(vec![with_length(&second, "connection: close\r\n")]),
    ]);
    let client = client(&endpoint);
    let listing = list(&client).await.expect("listing");
    assert_eq!(ids(&listing), ["ip-1", "ip-2"]);
    assert_eq!(seen.lock().expect("lock").connections, 1);

    // `connection: close` was honoured: the next call opens a new connection.
    let again = list(&client).await;
    assert!(again.is_err(), "the server had nothing more to say");
    assert_eq!(seen.lock().expect("lock").connections, 2);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_a_body_may_end_with_the_connection() {
    let body = page("ip-1", None);
    let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    answer.extend_from_slice(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes());
    let (endpoint, _) = serve(vec![Act::SendAndClose(pieces(answer, 9))]);
    let listing = list(&client(&endpoint)).await.expect("listing");
    assert_eq!(ids(&listing), ["ip-1"]);
}

#[tokio::test]
async fn an_interim_answer_read_together_with_the_final_one_is_not_waited_past() {
    let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    answer.extend_from_slice(&with_length(&page("ip-1", None), ""));
    // One write, and the connection stays open: the final answer is already read.
    let (endpoint, _) = serve(vec![Act::Send(vec![answer])]);
    let listing = tokio::time::timeout(Duration::from_secs(3), list(&client(&endpoint)))
        .await
        .expect("answered without waiting for more bytes")
        .expect("listing");
    assert_eq!(ids(&listing), ["ip-1"]);
}

#[tokio::test]
async fn an_answer_cut_short_is_a_transport_error_not_a_page() {
    let body = page("ip-1", None);
    let mut short = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
        body.len() + 10
    )
    .into_bytes();
    short.extend_from_slice(body.as_bytes());
    let (endpoint, _) = serve(vec![Act::SendAndClose(vec![short])]);
    let error = list(&client(&endpoint)).await.expect_err("cut short");
    assert!(
        matches!(&error, EcsError::Transport { timeout: false, message } if message.contains("before the response body was complete")),
        "{error:?}"
    );

    let mut bad_chunk = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    bad_chunk.extend_from_slice(b"zz\r\n{}\r\n0\r\n\r\n");
    let (endpoint, _) = serve(vec![Act::Send(vec![bad_chunk])]);
    let error = list(&client(&endpoint)).await.expect_err("garbled");
    assert!(
        matches!(&error, EcsError::Transport { message, .. } if message.contains("chunk size")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_chunked_body_past_the_limit_is_refused() {
    let body = page("ip-1", None);
    let (endpoint, _) = serve(vec![Act::Send(vec![chunked(&body, 16)])]);
    let client = EcsClient::new(ClientConfig {
        endpoint: Some(endpoint),
        max_attempts: 1,
        rate_limit_qps: 0,
        max_body_bytes: 40,
        ..ClientConfig::default()
    })
    .expect("client");
    let error = list(&client).await.expect_err("too large");
    assert!(
        matches!(error, EcsError::BodyTooLarge { limit: 40 }),
        "{error:?}"
    );
}
