//! The API's own HTTP/1.1 client: a POST at a time per connection, connections kept alive, and
//! the response body read from the socket (or TLS) straight into a buffer of the caller's pool.
//!
//! A listing's pages are a few hundred KiB each, and an unchanged refresh hardly looks at them
//! (a known list is hashed, not decoded). reqwest over hyper read each page into hyper's own
//! buffer and handed it out in chunks that had to be copied into a body buffer; with its
//! request and response machinery that cost about as much CPU as everything else a refresh does
//! (measured in BENCHMARKS.md). This client does one thing: it writes the request in one piece,
//! reads the head into a small buffer, and reads the body into the pooled buffer sized from
//! `Content-Length`. Chunked and close-delimited bodies are read too. Behind a proxy
//! (`HTTPS_PROXY` and the like) the crate uses reqwest, which knows proxies; see
//! [`crate::transport::Http`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::buffers::BodyPool;
use super::error::EcsError;

/// The most bytes a response head may have.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header lines a response head may have.
const MAX_HEADERS: usize = 64;
/// How long an idle connection is kept for the next call.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many idle connections are kept at most (for all origins together).
const MAX_IDLE: usize = 8;
/// How much a body of unannounced length grows by at a time.
const GROWTH: usize = 64 * 1024;

/// Where requests go: scheme, host and port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    tls: bool,
    host: Host,
    port: u16,
    /// The `Host` header: the host, with the port when it is not the scheme's default.
    authority: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Origin {
    /// The origin of an `http` or `https` URL with a host.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    pub(crate) fn of(url: &reqwest::Url) -> Result<Self, EcsError> {
        let bad = |why: &str| EcsError::Config(format!("endpoint {url} is invalid: {why}"));
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(name)) => Host::Name(name.to_string()),
            Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
            None => return Err(bad("a host is required")),
        };
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        let host_text = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host_text}:{port}"),
            None => host_text.to_string(),
        };
        Ok(Self {
            tls,
            host,
            port,
            authority,
        })
    }
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `x-acs-retry-after` header, when there is one.
    pub retry_after: Option<String>,
    /// The body, in a buffer of the pool passed to [`Client::post`].
    pub body: Vec<u8>,
}

/// Connections to the API's endpoints, kept alive between calls.
pub(crate) struct Client {
    tls: TlsConnector,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: &'static str,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Idle {
    origin: Origin,
    stream: Stream,
    since: Instant,
}

impl Client {
    /// A client verifying TLS servers with `tls`, waiting `connect_timeout` for a connection
    /// (TCP and TLS) and `read_timeout` for each read or write.
    pub(crate) fn new(
        mut tls: rustls::ClientConfig,
        connect_timeout: Duration,
        read_timeout: Duration,
        user_agent: &'static str,
    ) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout,
            read_timeout,
            user_agent,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// POSTs `body` as `application/x-www-form-urlencoded` to `/` of `origin` and reads the
    /// answer, its body at most `limit` bytes, into a buffer of `pool`. A kept connection that
    /// turns out closed before any byte of the answer is replaced by a new one, once.
    pub(crate) async fn post(
        &self,
        origin: &Origin,
        body: &[u8],
        limit: usize,
        pool: &BodyPool,
    ) -> Result<Answer, EcsError> {
        let request = self.request(origin, body);
        if let Some(stream) = self.take_idle(origin) {
            match self.exchange(stream, origin, &request, limit, pool).await {
                Err(Failure::Stale(_)) => {}
                other => return other.map_err(Failure::into_error),
            }
        }
        let stream = self.connect(origin).await?;
        self.exchange(stream, origin, &request, limit, pool)
            .await
            .map_err(Failure::into_error)
    }

    fn request(&self, origin: &Origin, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "POST / HTTP/1.1\r\nhost: {}\r\nuser-agent: {}\r\ncontent-type: application/x-www-form-urlencoded\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n",
            origin.authority,
            self.user_agent,
            body.len()
        );
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        request
    }

    /// One request and its answer on `stream`; the stream is kept for the next call when the
    /// answer leaves it usable.
    async fn exchange(
        &self,
        mut stream: Stream,
        origin: &Origin,
        request: &[u8],
        limit: usize,
        pool: &BodyPool,
    ) -> Result<Answer, Failure> {
        timed(
            self.read_timeout,
            "writing the request",
            stream.write_all(request),
        )
        .await
        .map_err(Failure::Stale)?;
        let mut reader = Reader {
            stream: &mut stream,
            read_timeout: self.read_timeout,
        };
        let (answer, reusable) = reader.answer(limit, pool).await?;
        if reusable {
            self.keep(origin, stream);
        }
        Ok(answer)
    }

    /// A new connection: TCP, and TLS for `https`.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    async fn connect(&self, origin: &Origin) -> Result<Stream, EcsError> {
        let connecting = async {
            let tcp = match &origin.host {
                Host::Name(name) => TcpStream::connect((name.as_str(), origin.port)).await,
                Host::Ip(ip) => TcpStream::connect((*ip, origin.port)).await,
            }
            .map_err(|e| transport(format!("error connecting to {}: {e}", origin.authority)))?;
            // A request is one write and the answer follows it: no reason to wait for more.
            let _ = tcp.set_nodelay(true);
            if !origin.tls {
                return Ok(Stream::Plain(tcp));
            }
            let name = match &origin.host {
                Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| {
                    EcsError::Config(format!("{:?} is not a TLS server name: {e}", name))
                })?,
                Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            };
            let tls = self.tls.connect(name, tcp).await.map_err(|e| {
                transport(format!(
                    "error in the TLS handshake with {}: {e}",
                    origin.authority
                ))
            })?;
            Ok(Stream::Tls(Box::new(tls)))
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(EcsError::Transport {
                message: format!("connecting to {} timed out", origin.authority),
                timeout: true,
            }),
        }
    }

    /// A kept connection to `origin` that is still open, if there is one.
    fn take_idle(&self, origin: &Origin) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|c| c.since.elapsed() < IDLE_TIMEOUT && c.stream.is_open());
        let at = idle.iter().rposition(|c| &c.origin == origin)?;
        Some(idle.swap_remove(at).stream)
    }

    fn keep(&self, origin: &Origin, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            origin: origin.clone(),
            stream,
            since: Instant::now(),
        });
    }
}

/// A connection, plain or TLS.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Reads into the spare capacity of `buffer` (growing it when it has none); 0 at the end.
    async fn read_buf(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buffer).await,
            Stream::Tls(s) => s.read_buf(buffer).await,
        }
    }

    /// Whether the peer has not closed (or written to) the idle connection.
    fn is_open(&self) -> bool {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Reads one answer from a stream.
struct Reader<'a> {
    stream: &'a mut Stream,
    read_timeout: Duration,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Reader<'_> {
    async fn read(&mut self, buffer: &mut Vec<u8>) -> Result<usize, TransportFailure> {
        timed(
            self.read_timeout,
            "reading the response",
            self.stream.read_buf(buffer),
        )
        .await
    }

    /// The answer, and whether the connection may carry another request.
    async fn answer(&mut self, limit: usize, pool: &BodyPool) -> Result<(Answer, bool), Failure> {
        let mut head = Vec::with_capacity(8 * 1024);
        // Until the first byte arrives, a failure may be a kept connection the server closed.
        let mut received = false;
        loop {
            match parse_head(&head)? {
                Some(parsed) if (100..200).contains(&parsed.status) => {
                    // An interim answer (100 Continue and the like): the real one follows,
                    // perhaps already read.
                    head.drain(..parsed.length);
                    continue;
                }
                Some(parsed) => {
                    let rest = &head[parsed.length..];
                    return self.body(&parsed, rest, limit, pool).await;
                }
                None if head.len() > MAX_HEAD_BYTES => {
                    return Err(Failure::protocol("the response head is too large"));
                }
                None => {}
            }
            if head.capacity() - head.len() < 1024 {
                head.reserve(8 * 1024);
            }
            let stale = |f: TransportFailure| match received || f.timeout {
                true => Failure::Transport(f),
                false => Failure::Stale(f),
            };
            let n = self.read(&mut head).await.map_err(stale)?;
            if n == 0 {
                let closed = "connection closed before a response".to_string();
                return Err(stale(TransportFailure::io(closed)));
            }
            received = true;
        }
    }

    async fn body(
        &mut self,
        head: &Head,
        rest: &[u8],
        limit: usize,
        pool: &BodyPool,
    ) -> Result<(Answer, bool), Failure> {
        let framing = if head.no_body {
            Framing::Length(0)
        } else {
            head.framing
        };
        let mut body;
        let complete = match framing {
            Framing::Length(length) => {
                if length > limit {
                    return Err(Failure::TooLarge(limit));
                }
                body = pool.take(length);
                let take = rest.len().min(length);
                body.extend_from_slice(&rest[..take]);
                while body.len() < length {
                    if self.read(&mut body).await.map_err(Failure::Transport)? == 0 {
                        return Err(Failure::protocol(
                            "connection closed before the response body was complete",
                        ));
                    }
                }
                // More than the announced length: the connection is out of step.
                rest.len() <= length && body.len() == length
            }
            Framing::Chunked => {
                body = pool.take(0);
                self.chunked(rest, &mut body, limit).await?;
                true
            }
            Framing::UntilClose => {
                body = pool.take(0);
                body.extend_from_slice(rest);
                loop {
                    if body.len() > limit {
                        pool.give(body);
                        return Err(Failure::TooLarge(limit));
                    }
                    if body.capacity() == body.len() {
                        body.reserve(GROWTH);
                    }
                    if self.read(&mut body).await.map_err(Failure::Transport)? == 0 {
                        break;
                    }
                }
                false
            }
        };
        let answer = Answer {
            status: head.status,
            retry_after: head.retry_after.clone(),
            body,
        };
        Ok((answer, complete && head.keep_alive))
    }

    /// Decodes a chunked body into `body`, reading as needed (`raw`: the bytes already read).
    async fn chunked(
        &mut self,
        already: &[u8],
        body: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Failure> {
        let mut raw = already.to_vec();
        let mut at = 0;
        loop {
            // The size line.
            let line_end = loop {
                if let Some(end) = memchr::memmem::find(&raw[at..], b"\r\n") {
                    break at + end;
                }
                if raw.len() - at > 1024 {
                    return Err(Failure::protocol("a chunk size line is too long"));
                }
                self.more(&mut raw).await?;
            };
            let size = chunk_size(&raw[at..line_end])
                .ok_or_else(|| Failure::protocol("a chunk size is not a hexadecimal number"))?;
            at = line_end + 2;
            if size == 0 {
                break;
            }
            if body.len().saturating_add(size) > limit {
                return Err(Failure::TooLarge(limit));
            }
            // The chunk's data, then its CRLF.
            let mut left = size;
            loop {
                let take = left.min(raw.len() - at);
                body.extend_from_slice(&raw[at..at + take]);
                at += take;
                left -= take;
                if left == 0 {
                    break;
                }
                raw.clear();
                at = 0;
                self.more(&mut raw).await?;
            }
            while raw.len() - at < 2 {
                self.more(&mut raw).await?;
            }
            if &raw[at..at + 2] != b"\r\n" {
                return Err(Failure::protocol("a chunk does not end with CRLF"));
            }
            at += 2;
            if at > GROWTH {
                raw.drain(..at);
                at = 0;
            }
        }
        // Trailer lines, up to the empty one.
        loop {
            if let Some(end) = memchr::memmem::find(&raw[at..], b"\r\n") {
                let empty = end == 0;
                at += end + 2;
                if empty {
                    return Ok(());
                }
                continue;
            }
            if raw.len() - at > MAX_HEAD_BYTES {
                return Err(Failure::protocol("the trailers are too large"));
            }
            self.more(&mut raw).await?;
        }
    }

    /// Reads more raw bytes; the end of the stream here is an incomplete body.
    async fn more(&mut self, raw: &mut Vec<u8>) -> Result<(), Failure> {
        if raw.capacity() - raw.len() < 4096 {
            raw.reserve(GROWTH);
        }
        match self.read(raw).await.map_err(Failure::Transport)? {
            0 => Err(Failure::protocol(
                "connection closed before the response body was complete",
            )),
            _ => Ok(()),
        }
    }
}

/// What the head says.
#[derive(Debug)]
struct Head {
    status: u16,
    /// The head's length in bytes, blank line included.
    length: usize,
    framing: Framing,
    /// Whether the status has no body (204, 304).
    no_body: bool,
    keep_alive: bool,
    retry_after: Option<String>,
}

/// The head at the start of `bytes`, `None` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Failure::protocol(&format!(
                "the response head is not HTTP/1.x: {e}"
            )));
        }
    };
    let status = response.code.unwrap_or_default();
    let mut keep_alive = response.version == Some(1);
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut retry_after = None;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = value
                .parse::<usize>()
                .map_err(|_| Failure::protocol("the Content-Length is not a number"))?;
            if content_length.is_some_and(|l| l != parsed) {
                return Err(Failure::protocol("the Content-Length headers differ"));
            }
            content_length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(Failure::protocol(
                    "the response uses a transfer coding other than chunked",
                ));
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            if value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                keep_alive = false;
            }
        } else if header
            .name
            .eq_ignore_ascii_case(crate::retry::RETRY_AFTER_HEADER)
        {
            retry_after = Some(value.to_string());
        }
    }
    let framing = match (chunked, content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(length)) => Framing::Length(length),
        (false, None) => Framing::UntilClose,
    };
    Ok(Some(Head {
        status,
        length,
        framing,
        no_body: status == 204 || status == 304,
        keep_alive,
        retry_after,
    }))
}

/// The size on a chunk's size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Option<usize> {
    let digits = line.split(|b| *b == b';').next()?;
    let digits = std::str::from_utf8(digits).ok()?.trim();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    usize::from_str_radix(digits, 16).ok()
}

/// A failed read or write, and whether it was the timeout.
#[derive(Debug)]
struct TransportFailure {
    message: String,
    timeout: bool,
}

impl TransportFailure {
    fn io(message: String) -> Self {
        Self {
            message,
            timeout: false,
        }
    }
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    /// The connection failed before any byte of the answer (a kept one may have been closed).
    Stale(TransportFailure),
    /// It failed later.
    Transport(TransportFailure),
    /// The answer is not HTTP/1.1 as this client reads it.
    Protocol(String),
    /// The body is longer than the limit.
    TooLarge(usize),
}

impl Failure {
    fn protocol(message: &str) -> Self {
        Failure::Protocol(message.to_string())
    }

    fn into_error(self) -> EcsError {
        match self {
            Failure::Stale(f) | Failure::Transport(f) => EcsError::Transport {
                message: f.message,
                timeout: f.timeout,
            },
            Failure::Protocol(message) => EcsError::Transport {
                message,
                timeout: false,
            },
            Failure::TooLarge(limit) => EcsError::BodyTooLarge { limit },
        }
    }
}

fn transport(message: String) -> EcsError {
    EcsError::Transport {
        message,
        timeout: false,
    }
}

/// `io` (`what` it does, for the message), failing as a timeout after `limit`.
async fn timed<T>(
    limit: Duration,
    what: &str,
    io: impl Future<Output = std::io::Result<T>>,
) -> Result<T, TransportFailure> {
    match tokio::time::timeout(limit, io).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(TransportFailure::io(format!("error {what}: {e}"))),
        Err(_) => Err(TransportFailure {
            message: format!("timed out {what}"),
            timeout: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of(&reqwest::Url::parse(url).expect("url")).expect("origin")
    }

    #[test]
    fn origins_carry_the_default_port_and_the_host_header_names_a_port_only_when_given() {
        let o = origin("https://ecs.cn-hangzhou.aliyuncs.com/");
        assert_eq!(
            (o.tls, o.port, o.authority.as_str()),
            (true, 443, "ecs.cn-hangzhou.aliyuncs.com")
        );
        let o = origin("http://127.0.0.1:8080/");
        assert_eq!(
            (o.tls, o.host, o.port, o.authority.as_str()),
            (
                false,
                Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                8080,
                "127.0.0.1:8080"
            )
        );
        let o = origin("http://[::1]:9/");
        assert_eq!(
            (o.host, o.authority.as_str()),
            (Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)), "[::1]:9")
        );
    }

    #[test]
    fn heads_tell_status_framing_keep_alive_and_the_retry_hint() {
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nx-acs-retry-after: 1500\r\n\r\n{\"Code\":\"x\"}";
        let head = parse_head(text.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(head.status, 503);
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.keep_alive);
        assert_eq!(head.retry_after.as_deref(), Some("1500"));
        assert_eq!(&text[head.length..], r#"{"Code":"x"}"#);

        let head = parse_head(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n",
        )
        .expect("valid")
        .expect("complete");
        assert_eq!((head.framing, head.keep_alive), (Framing::Chunked, false));

        let head = parse_head(b"HTTP/1.0 200 OK\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (head.framing, head.keep_alive),
            (Framing::UntilClose, false)
        );

        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .expect("valid")
                .is_none()
        );
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunk_sizes_are_hexadecimal_with_extensions_ignored() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"FF;name=value"), Some(255));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"xyz"), None);
        assert_eq!(chunk_size(b"ffffffffffffffffff"), None);
    }
}
