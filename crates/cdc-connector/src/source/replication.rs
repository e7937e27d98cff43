//! A PostgreSQL connection in logical-replication mode, speaking the wire protocol directly:
//! tokio-postgres has no replication mode. Only framing and I/O live here; the CopyData payloads
//! are decoded by the pure `pgoutput` crate. TLS is negotiated first (SSLRequest, then the
//! handshake) as the target's `sslmode` says, and everything after runs over that stream.

use std::future::Future;

use bytes::{Buf, BytesMut};
use postgres_protocol::{
    authentication::{md5_hash, sasl},
    message::frontend,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{PgTarget, tls::PgStream};
use crate::error::{ConnectorError, ErrorKind};

/// One backend message: its tag and body.
struct Frame {
    tag: u8,
    body: BytesMut,
}

/// Takes the first backend message off `buffer` if it is there in full; otherwise reserves
/// the room the rest of it needs. Errs (with what is wrong) on an impossible length.
fn split_frame(buffer: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]);
    let length = usize::try_from(length)
        .ok()
        .filter(|l| *l >= 4)
        .ok_or_else(|| format!("invalid message length {length}"))?;
    if buffer.len() > length {
        let mut frame = buffer.split_to(1 + length);
        let tag = frame[0];
        frame.advance(5);
        return Ok(Some(Frame { tag, body: frame }));
    }
    buffer.reserve(1 + length - buffer.len());
    Ok(None)
}

pub struct ReplicationConnection {
    stream: PgStream,
    read_buf: BytesMut,
    target: String,
}

impl ReplicationConnection {
    /// Connects (over TLS as the target's `sslmode` says), authenticates (trust, password, md5
    /// or SCRAM-SHA-256) and waits until ready, all within the target's timeout.
    ///
    /// The session settings make pgoutput's text output predictable for the value decoder.
    pub async fn connect(target: &PgTarget) -> Result<Self, ConnectorError> {
        target
            .within(
                "connecting for replication",
                Self::connect_unbounded(target),
            )
            .await
    }

    async fn connect_unbounded(target: &PgTarget) -> Result<Self, ConnectorError> {
        let address = format!("{}:{}", target.host, target.port);
        let stream = TcpStream::connect(&address).await.map_err(|source| {
            ConnectorError::new(
                ErrorKind::SourceUnavailable,
                format!("PostgreSQL at {address} is unreachable"),
                source.to_string(),
            )
        })?;
        stream.set_nodelay(true).ok();
        let stream = super::tls::negotiate(stream, &target.tls, &target.host, &address).await?;
        let mut connection = Self {
            stream,
            read_buf: BytesMut::with_capacity(64 * 1024),
            target: address,
        };
        let mut out = BytesMut::new();
        let options = super::session_options();
        frontend::startup_message(
            [
                ("user", target.user.as_str()),
                ("database", target.database.as_str()),
                ("replication", "database"),
                ("application_name", target.application_name.as_str()),
                ("options", options.as_str()),
            ],
            &mut out,
        )
        .map_err(|e| connection.protocol(format!("cannot encode startup message: {e}")))?;
        connection.write(&out).await?;
        connection.authenticate(target).await?;
        connection.wait_ready().await?;
        Ok(connection)
    }

    async fn authenticate(&mut self, target: &PgTarget) -> Result<(), ConnectorError> {
        let password = || {
            target.password.clone().ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::SourceRejected,
                    "authentication",
                    format!(
                        "the server asks a password for role {} but the connection URL has none",
                        target.user
                    ),
                )
            })
        };
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let frame = self.read_frame().await?;
            if frame.tag == b'E' {
                return Err(error_response(&frame.body, "authentication"));
            }
            if frame.tag != b'R' {
                return Err(self.protocol(format!(
                    "expected an authentication request, got message '{}'",
                    frame.tag as char
                )));
            }
            let mut body = frame.body;
            if body.len() < 4 {
                return Err(self.protocol("short authentication message".into()));
            }
            let kind = body.get_i32();
            let mut out = BytesMut::new();
            match kind {
                0 => return Ok(()),
                3 => {
                    frontend::password_message(password()?.as_bytes(), &mut out)
                        .map_err(|e| self.protocol(e.to_string()))?;
                }
                5 => {
                    if body.len() < 4 {
                        return Err(self.protocol("short md5 salt".into()));
                    }
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hashed = md5_hash(target.user.as_bytes(), password()?.as_bytes(), salt);
                    frontend::password_message(hashed.as_bytes(), &mut out)
                        .map_err(|e| self.protocol(e.to_string()))?;
                }
                10 => {
                    let mechanisms = String::from_utf8_lossy(&body);
                    if !mechanisms.split('\0').any(|m| m == sasl::SCRAM_SHA_256) {
                        return Err(ConnectorError::new(
                            ErrorKind::SourceRejected,
                            "authentication",
                            format!("no supported SASL mechanism in {mechanisms:?}"),
                        ));
                    }
                    let exchange = sasl::ScramSha256::new(
                        password()?.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(
                        sasl::SCRAM_SHA_256,
                        exchange.message(),
                        &mut out,
                    )
                    .map_err(|e| self.protocol(e.to_string()))?;
                    scram = Some(exchange);
                }
                11 | 12 => {
                    let exchange = scram
                        .as_mut()
                        .ok_or_else(|| self.protocol("SASL message before SASL start".into()))?;
                    let step = if kind == 11 {
                        exchange.update(&body)
                    } else {
                        exchange.finish(&body)
                    };
                    step.map_err(|e| {
                        ConnectorError::new(
                            ErrorKind::SourceRejected,
                            "authentication",
                            format!("SCRAM exchange failed: {e}"),
                        )
                    })?;
                    if kind == 12 {
                        continue;
                    }
                    frontend::sasl_response(exchange.message(), &mut out)
                        .map_err(|e| self.protocol(e.to_string()))?;
                }
                other => {
                    return Err(ConnectorError::new(
                        ErrorKind::SourceRejected,
                        "authentication",
                        format!(
                            "unsupported authentication method {other} (supported: trust, password, md5, scram-sha-256)"
                        ),
                    ));
                }
            }
            self.write(&out).await?;
        }
    }

    async fn wait_ready(&mut self) -> Result<(), ConnectorError> {
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'Z' => return Ok(()),
                b'E' => return Err(error_response(&frame.body, "start-up")),
                _ => {}
            }
        }
    }

    /// Runs one replication command and returns its rows as text.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ConnectorError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.write(&out).await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'D' => rows.push(parse_data_row(frame.body).map_err(|m| self.protocol(m))?),
                b'E' => failure = Some(error_response(&frame.body, sql)),
                b'Z' => return failure.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// Sends START_REPLICATION and returns once the server switched to CopyBoth mode.
    pub async fn start_replication(
        mut self,
        command: &str,
    ) -> Result<PgReplicationStream, ConnectorError> {
        let mut out = BytesMut::new();
        frontend::query(command, &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.write(&out).await?;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'W' => {
                    return Ok(PgReplicationStream {
                        connection: self,
                        pacing: ReadPacing::default(),
                        wake_threshold: 1,
                    });
                }
                b'E' => return Err(error_response(&frame.body, "START_REPLICATION")),
                _ => {}
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectorError> {
        // The flush matters with TLS: the encrypted records may still be buffered.
        let written = match self.stream.write_all(bytes).await {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|source| self.unavailable(source.to_string()))
    }

    /// The next backend message if it is already received in full; no I/O.
    fn buffered_frame(&mut self) -> Result<Option<Frame>, ConnectorError> {
        split_frame(&mut self.read_buf).map_err(|message| self.protocol(message))
    }

    /// Reads the next complete backend message. Cancel-safe: a partly received message stays
    /// in the buffer for the next call.
    async fn read_frame(&mut self) -> Result<Frame, ConnectorError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }

    /// One read from the socket into the buffer; how many bytes it brought (never 0: a closed
    /// connection is an error). Cancel-safe.
    async fn read_more(&mut self) -> Result<usize, ConnectorError> {
        let read = self
            .stream
            .read_buf(&mut self.read_buf)
            .await
            .map_err(|source| self.unavailable(source.to_string()))?;
        if read == 0 {
            return Err(self.unavailable("the server closed the connection"));
        }
        Ok(read)
    }

    /// The connection failed or was lost: `detail` says how.
    fn unavailable(&self, detail: impl Into<String>) -> ConnectorError {
        ConnectorError::new(
            ErrorKind::SourceUnavailable,
            format!("PostgreSQL at {}", self.target),
            detail,
        )
    }

    fn protocol(&self, message: String) -> ConnectorError {
        ConnectorError::new(
            ErrorKind::Protocol,
            format!("talking to PostgreSQL at {}", self.target),
            message,
        )
    }
}

/// The replication seam: CopyData payloads from the server (XLogData, keepalives), standby
/// status updates back. [`PgReplicationStream`] in production, a scripted fake in the session's
/// unit tests.
pub trait ReplicationStream {
    /// The next CopyData payload. Must be cancel-safe: the session selects on it.
    fn next_copy_data(&mut self) -> impl Future<Output = Result<BytesMut, ConnectorError>>;

    /// The next CopyData payload if it is already received, without waiting: the session
    /// works through what one read brought before it looks at timers and acknowledgements
    /// again.
    fn buffered_copy_data(&mut self) -> Result<Option<BytesMut>, ConnectorError>;

    /// Sends a CopyData payload (a standby status update).
    fn send_copy_data(
        &mut self,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), ConnectorError>>;
}

/// The replication connection after START_REPLICATION: CopyData in both directions.
pub struct PgReplicationStream {
    connection: ReplicationConnection,
    /// Reads are paced while the server trickles: see [`ReadPacing`].
    pacing: ReadPacing,
    /// The socket's wake-up threshold as last set (`SO_RCVLOWAT`).
    wake_threshold: usize,
}

/// Why reads are paced: the walsender writes each message to the socket as soon as it is
/// decoded, and each write wakes a reader that keeps up. Reading a 1M-row transaction took
/// about 40,000 wake-ups and reads a second, which cost the connector as much CPU as decoding
/// the changes. So after a read that brought less than [`ReadPacing::FULL_READ`] the socket is
/// told to wake the connector only once it holds that much (`SO_RCVLOWAT`), and after
/// [`ReadPacing::PAUSE`] at the latest the connector reads whatever has come. A server that
/// streams faster than that is read at once; one that trickles costs about a thousand wake-ups
/// a second, for a millisecond or two of latency. The server is not held up: the socket's
/// buffer takes far more than a millisecond of its output.
#[derive(Debug, Default)]
struct ReadPacing {
    pause_until: Option<tokio::time::Instant>,
}

impl ReadPacing {
    /// A read at least this large means the server is ahead: read again at once.
    const FULL_READ: usize = 32 * 1024;
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

    /// Notes a read of `bytes` made at `now`.
    fn after_read(&mut self, bytes: usize, now: tokio::time::Instant) {
        self.pause_until = (bytes < Self::FULL_READ).then(|| now + Self::PAUSE);
    }

    /// The pause is over: the next read takes whatever has come.
    fn end_pause(&mut self) {
        self.pause_until = None;
    }

    /// The socket's wake-up threshold until the next read: [`Self::FULL_READ`] while paused,
    /// else 1.
    fn wake_threshold(&self) -> usize {
        if self.pause_until.is_some() {
            Self::FULL_READ
        } else {
            1
        }
    }
}

impl PgReplicationStream {
    /// Brings the socket's wake-up threshold in line with the pacing (a system call only when
    /// it changes).
    fn follow_pacing(&mut self) -> Result<(), ConnectorError> {
        let bytes = self.pacing.wake_threshold();
        if bytes != self.wake_threshold {
            self.connection
                .stream
                .wake_when_holding(bytes)
                .map_err(|source| {
                    self.connection.unavailable(format!(
                        "setting the socket's receive low-water mark: {source}"
                    ))
                })?;
            self.wake_threshold = bytes;
        }
        Ok(())
    }

    /// A CopyData frame's payload; `None` for what does not concern the stream (notices,
    /// parameter changes); an error for an ErrorResponse or the end of the copy.
    fn copy_data(&self, frame: Frame) -> Result<Option<BytesMut>, ConnectorError> {
        match frame.tag {
            b'd' => Ok(Some(frame.body)),
            b'E' => Err(error_response(&frame.body, "replication stream")),
            b'c' => Err(self
                .connection
                .unavailable("the server ended the replication stream")),
            _ => Ok(None),
        }
    }
}

impl ReplicationStream for PgReplicationStream {
    async fn next_copy_data(&mut self) -> Result<BytesMut, ConnectorError> {
        loop {
            if let Some(payload) = self.buffered_copy_data()? {
                return Ok(payload);
            }
            // Cancel-safe: a cancelled pause keeps its deadline, and a cancelled read loses
            // nothing.
            let read = match self.pacing.pause_until {
                Some(until) => tokio::select! {
                    read = self.connection.read_more() => read?,
                    () = tokio::time::sleep_until(until) => {
                        self.pacing.end_pause();
                        self.follow_pacing()?;
                        continue;
                    }
                },
                None => self.connection.read_more().await?,
            };
            self.pacing.after_read(read, tokio::time::Instant::now());
            self.follow_pacing()?;
        }
    }

    fn buffered_copy_data(&mut self) -> Result<Option<BytesMut>, ConnectorError> {
        while let Some(frame) = self.connection.buffered_frame()? {
            if let Some(payload) = self.copy_data(frame)? {
                return Ok(Some(payload));
            }
        }
        Ok(None)
    }

    async fn send_copy_data(&mut self, payload: &[u8]) -> Result<(), ConnectorError> {
        let mut out = BytesMut::with_capacity(payload.len() + 5);
        frontend::CopyData::new(payload)
            .map_err(|e| self.connection.protocol(e.to_string()))?
            .write(&mut out);
        self.connection.write(&out).await
    }
}

fn parse_data_row(mut body: BytesMut) -> Result<Vec<Option<String>>, String> {
    if body.len() < 2 {
        return Err("short DataRow".into());
    }
    let columns = body.get_i16();
    let mut row = Vec::with_capacity(usize::try_from(columns).unwrap_or(0).min(64));
    for _ in 0..columns {
        if body.len() < 4 {
            return Err("short DataRow column".into());
        }
        let length = body.get_i32();
        if length < 0 {
            row.push(None);
            continue;
        }
        let length = usize::try_from(length).map_err(|_| "bad column length".to_string())?;
        if body.len() < length {
            return Err("DataRow column longer than the message".into());
        }
        row.push(Some(
            String::from_utf8_lossy(&body.split_to(length)).into_owned(),
        ));
    }
    Ok(row)
}

/// An ErrorResponse as a classified error: SQLSTATE, message, detail and hint.
fn error_response(body: &[u8], context: &str) -> ConnectorError {
    let mut code = String::new();
    let mut message = String::new();
    let mut detail = String::new();
    let mut hint = String::new();
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'C' => code = text,
            b'M' => message = text,
            b'D' => detail = text,
            b'H' => hint = text,
            _ => {}
        }
    }
    for extra in [detail, hint] {
        if !extra.is_empty() {
            message.push_str(". ");
            message.push_str(&extra);
        }
    }
    ConnectorError::sqlstate(context, &code, &message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BufMut;
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    /// A CopyData message with `body`, as the server frames it.
    fn copy_data(body: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        wire.put_u8(b'd');
        wire.put_i32(i32::try_from(4 + body.len()).unwrap());
        wire.extend_from_slice(body);
        wire
    }

    #[test]
    fn a_message_is_taken_only_once_received_in_full() {
        let message = copy_data(&[7; 100_000]);
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&message[..50_000]);
        assert!(split_frame(&mut buffer).unwrap().is_none());
        assert!(buffer.capacity() >= message.len(), "room for the rest");
        buffer.extend_from_slice(&message[50_000..]);
        buffer.extend_from_slice(&copy_data(b"next")[..3]);
        let frame = split_frame(&mut buffer).unwrap().unwrap();
        assert_eq!((frame.tag, frame.body.len()), (b'd', 100_000));
        assert!(split_frame(&mut buffer).unwrap().is_none());
        assert_eq!(buffer.len(), 3);
    }

    #[test]
    fn an_impossible_length_is_named() {
        let mut buffer = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert_eq!(
            split_frame(&mut buffer).err().as_deref(),
            Some("invalid message length 3")
        );
    }

    #[test]
    fn reads_pause_only_after_a_small_one() {
        let now = tokio::time::Instant::now();
        let mut pacing = ReadPacing::default();
        pacing.after_read(ReadPacing::FULL_READ, now);
        assert_eq!(pacing.wake_threshold(), 1);
        assert_eq!(pacing.pause_until, None);
        pacing.after_read(200, now);
        assert_eq!(pacing.wake_threshold(), ReadPacing::FULL_READ);
        assert_eq!(pacing.pause_until, Some(now + ReadPacing::PAUSE));
        pacing.end_pause();
        assert_eq!(pacing.wake_threshold(), 1);
        assert_eq!(pacing.pause_until, None);
    }

    /// A replication stream over a local socket, and the server's end of it.
    async fn local_stream() -> (PgReplicationStream, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream = PgReplicationStream {
            connection: ReplicationConnection {
                stream: PgStream::Plain(client),
                read_buf: BytesMut::with_capacity(64 * 1024),
                target: address.to_string(),
            },
            pacing: ReadPacing::default(),
            wake_threshold: 1,
        };
        (stream, server)
    }

    /// The pause must end in a read of whatever has come, however little: a socket left
    /// waiting for FULL_READ bytes would hold a quiet stream's last messages back for good.
    #[tokio::test]
    async fn a_trickle_of_small_messages_is_read_as_it_comes() {
        let (mut stream, mut server) = local_stream().await;
        let writer = tokio::spawn(async move {
            for i in 0..20u8 {
                server.write_all(&copy_data(&[i; 50])).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            server
        });
        for i in 0..20u8 {
            let payload = tokio::time::timeout(Duration::from_secs(2), stream.next_copy_data())
                .await
                .unwrap_or_else(|_| panic!("message {i} held back"))
                .unwrap();
            assert_eq!(&payload[..], &[i; 50]);
        }
        assert_eq!(stream.wake_threshold, ReadPacing::FULL_READ, "paced");
        writer.await.unwrap();
    }

    /// While paused, the socket wakes the reader only once it holds a full read; whatever
    /// less has come is read when the pause ends.
    #[tokio::test]
    async fn a_paused_socket_wakes_for_a_full_read_only() {
        let (stream, mut server) = local_stream().await;
        let mut connection = stream.connection;
        connection
            .stream
            .wake_when_holding(ReadPacing::FULL_READ)
            .unwrap();
        server.write_all(&copy_data(&[1; 100])).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(200), connection.read_more()).await;
        assert!(early.is_err(), "woken for 105 bytes: {early:?}");
        connection.stream.wake_when_holding(1).unwrap();
        let read = tokio::time::timeout(Duration::from_secs(2), connection.read_more())
            .await
            .expect("not woken once the threshold was lowered")
            .unwrap();
        assert_eq!(read, 105);
        connection
            .stream
            .wake_when_holding(ReadPacing::FULL_READ)
            .unwrap();
        server
            .write_all(&copy_data(&vec![2; ReadPacing::FULL_READ]))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), connection.read_more())
            .await
            .expect("not woken for a full read")
            .unwrap();
    }
}
