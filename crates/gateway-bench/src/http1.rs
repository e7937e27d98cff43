//! The load generator's HTTP/1.1 client: one keep-alive connection per request loop, each
//! request written in one `write`, each answer's head parsed with `httparse` and its body read
//! to the end and dropped.
//!
//! Why not reqwest: the load generator shares the machine's two cores with the gateway under
//! test, the broker and the registry. With reqwest (a connection pool, a `Url` parsed and a
//! header map built per request, a body stream) the generator took 0.67 of a core at 17,000
//! requests/s, 39 µs per request, nearly as much as the gateway itself: the bench measured the
//! client as much as the server. Load generators such as wrk keep this path to a buffer, a write
//! and a read; so does this one. Both gateways are loaded through it alike.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Headers of an answer read at most (both gateways send fewer than ten).
const MAX_HEADERS: usize = 32;
/// An answer larger than this is an error, not a reason to keep reading (a batch's answer is a
/// few KiB).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("the server address {0:?} is not of the form http://host:port")]
    Address(String),
    #[error("connecting to or talking with {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} closed the connection before the whole answer came")]
    Closed { addr: SocketAddr },
    #[error("{addr} sent an answer that is not HTTP/1.1: {reason}")]
    Malformed { addr: SocketAddr, reason: String },
}

/// One keep-alive connection to a server, opened at the first request and again after any
/// failure or a `Connection: close`.
pub struct Connection {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    /// The request being written, reused.
    request: Vec<u8>,
    /// Bytes read and not yet consumed: an answer's head and body.
    received: Vec<u8>,
}

impl Connection {
    /// A connection to `base` (`http://host:port`, without a path); nothing is opened yet.
    pub fn new(base: &str) -> Result<Self, Http1Error> {
        let host = base
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|host| !host.contains('/'))
            .ok_or_else(|| Http1Error::Address(base.to_string()))?;
        let addr = host
            .parse()
            .map_err(|_| Http1Error::Address(base.to_string()))?;
        Ok(Self {
            addr,
            host: host.to_string(),
            stream: None,
            request: Vec::with_capacity(4096),
            received: Vec::with_capacity(4096),
        })
    }

    /// Posts `body` as JSON to `path` and reads the whole answer; its status code. After an
    /// error the connection is closed, and the next request opens a new one.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<u16, Http1Error> {
        let answer = self.exchange(path, body).await;
        match answer {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(status)
            }
            Err(error) => {
                self.stream = None;
                Err(error)
            }
        }
    }

    async fn exchange(&mut self, path: &str, body: &[u8]) -> Result<(u16, bool), Http1Error> {
        let addr = self.addr;
        let io = |source| Http1Error::Io { addr, source };
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(addr).await.map_err(io)?;
                stream.set_nodelay(true).map_err(io)?;
                self.received.clear();
                self.stream.insert(stream)
            }
        };
        self.request.clear();
        write_request(&mut self.request, &self.host, path, body);
        stream.write_all(&self.request).await.map_err(io)?;
        loop {
            match parse_answer(&self.received)
                .map_err(|reason| Http1Error::Malformed { addr, reason })?
            {
                Parsed::Complete {
                    status,
                    length,
                    keep_alive,
                } => {
                    self.received.drain(..length);
                    return Ok((status, keep_alive));
                }
                Parsed::Partial => {}
            }
            if self.received.len() > MAX_ANSWER_BYTES {
                return Err(Http1Error::Malformed {
                    addr,
                    reason: format!("no whole answer in {} bytes", self.received.len()),
                });
            }
            self.received.reserve(16 * 1024);
            let read = stream.read_buf(&mut self.received).await.map_err(io)?;
            if read == 0 {
                return Err(Http1Error::Closed { addr });
            }
        }
    }
}

fn write_request(into: &mut Vec<u8>, host: &str, path: &str, body: &[u8]) {
    into.extend_from_slice(b"POST ");
    into.extend_from_slice(path.as_bytes());
    into.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    into.extend_from_slice(host.as_bytes());
    into.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    into.extend_from_slice(body.len().to_string().as_bytes());
    into.extend_from_slice(b"\r\n\r\n");
    into.extend_from_slice(body);
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole answer: its status, how many bytes it took, and whether the server keeps the
    /// connection open after it.
    Complete {
        status: u16,
        length: usize,
        keep_alive: bool,
    },
    /// Not yet a whole answer: read more.
    Partial,
}

/// Parses one answer from the start of `received` (pure: the unit tests feed it bytes).
fn parse_answer(received: &[u8]) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(received).map_err(|e| e.to_string())? {
        httparse::Status::Complete(head) => head,
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    let status = response.code.ok_or("no status code")?;
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| "a header is not UTF-8")?;
        if header.name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("Content-Length {value:?} is not a number"))?;
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let body = &received[head..];
    let body_length = if chunked {
        match chunked_length(body)? {
            Some(length) => length,
            None => return Ok(Parsed::Partial),
        }
    } else {
        // Without a length, a 1.1 answer with a body ends when the server closes: a way of
        // answering neither gateway uses, so it is an error rather than a wait for the close.
        let length = match (content_length, status) {
            (Some(length), _) => length,
            (None, 204 | 304) => 0,
            (None, _) => {
                return Err(format!(
                    "answer {status} has neither Content-Length nor chunks"
                ));
            }
        };
        if body.len() < length {
            return Ok(Parsed::Partial);
        }
        length
    };
    Ok(Parsed::Complete {
        status,
        length: head + body_length,
        keep_alive,
    })
}

/// The length of a whole chunked body at the start of `body` (its last chunk and trailer
/// included), or `None` if more bytes are needed.
fn chunked_length(body: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        match httparse::parse_chunk_size(&body[at..]).map_err(|_| "a bad chunk size")? {
            httparse::Status::Partial => return Ok(None),
            httparse::Status::Complete((size_line, 0)) => {
                // The last chunk, then an empty line: neither gateway sends trailers.
                return match &body[at + size_line..] {
                    [] | [b'\r'] => Ok(None),
                    [b'\r', b'\n', ..] => Ok(Some(at + size_line + 2)),
                    _ => Err("trailers after the last chunk".into()),
                };
            }
            httparse::Status::Complete((size_line, size)) => {
                let size = usize::try_from(size).map_err(|_| "a chunk too large")?;
                let end = at + size_line + size + 2;
                if body.len() < end {
                    return Ok(None);
                }
                if &body[end - 2..end] != b"\r\n" {
                    return Err("a chunk not ended by CRLF".into());
                }
                at = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_a_length_is_whole_once_its_body_came() {
        let answer = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\nhello";
        for cut in 0..answer.len() {
            assert_eq!(
                parse_answer(&answer[..cut]),
                Ok(Parsed::Partial),
                "cut at {cut}"
            );
        }
        let mut two = answer.to_vec();
        two.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(
            parse_answer(&two),
            Ok(Parsed::Complete {
                status: 201,
                length: answer.len(),
                keep_alive: true
            })
        );
    }

    #[test]
    fn a_chunked_answer_is_whole_after_its_last_chunk() {
        let answer = b"HTTP/1.1 207 Multi-Status\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n";
        for cut in 0..answer.len() {
            assert_eq!(
                parse_answer(&answer[..cut]),
                Ok(Parsed::Partial),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_answer(answer),
            Ok(Parsed::Complete {
                status: 207,
                length: answer.len(),
                keep_alive: true
            })
        );
    }

    #[test]
    fn connection_close_and_http_1_0_are_not_kept_alive() {
        let close =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\ncontent-length: 0\r\n\r\n";
        let old = b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n";
        for answer in [&close[..], &old[..]] {
            assert!(matches!(
                parse_answer(answer),
                Ok(Parsed::Complete {
                    keep_alive: false,
                    ..
                })
            ));
        }
    }

    #[test]
    fn answers_that_cannot_be_delimited_are_errors() {
        let no_length = b"HTTP/1.1 200 OK\r\n\r\nbody until close";
        let bad_length = b"HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n";
        let bad_chunk = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabcd\r\n";
        let not_http = b"SSH-2.0-OpenSSH_9.2\r\n\r\n";
        for answer in [
            &no_length[..],
            &bad_length[..],
            &bad_chunk[..],
            &not_http[..],
        ] {
            assert!(
                parse_answer(answer).is_err(),
                "{:?}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn a_request_is_one_buffer_with_its_length() {
        let mut request = Vec::new();
        write_request(&mut request, "127.0.0.1:8080", "/events/user", b"{\"a\":1}");
        assert_eq!(
            request,
            b"POST /events/user HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn only_plain_http_addresses_are_taken() {
        assert!(Connection::new("http://127.0.0.1:8080").is_ok());
        assert!(Connection::new("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8080/events",
            "http://localhost",
        ] {
            assert!(Connection::new(bad).is_err(), "{bad}");
        }
    }

    /// Against a real server (the one the bench loads is hyper too): answers on one connection,
    /// and a new connection after the server closed it.
    #[tokio::test]
    async fn talks_to_a_server_over_one_connection_and_reconnects_after_a_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            // The first connection answers two requests, the second closes after one.
            for answers in [2, 1] {
                let (mut stream, _) = listener.accept().await.unwrap();
                accepted += 1;
                let mut received = Vec::new();
                for n in 0..answers {
                    loop {
                        let mut buf = [0u8; 1024];
                        let read = stream.read(&mut buf).await.unwrap();
                        received.extend_from_slice(&buf[..read]);
                        if received.ends_with(b"{}") {
                            break;
                        }
                    }
                    received.clear();
                    let close = if n + 1 == answers {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let answer =
                        format!("HTTP/1.1 201 Created\r\n{close}content-length: 2\r\n\r\nok");
                    stream.write_all(answer.as_bytes()).await.unwrap();
                }
            }
            accepted
        });
        let mut connection = Connection::new(&format!("http://{addr}")).unwrap();
        for _ in 0..3 {
            assert_eq!(
                connection.post_json("/events/user", b"{}").await.unwrap(),
                201
            );
        }
        assert_eq!(server.await.unwrap(), 2);
    }
}
