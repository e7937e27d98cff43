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
                b'W' => return Ok(PgReplicationStream { connection: self }),
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
        written.map_err(|source| {
            ConnectorError::new(
                ErrorKind::SourceUnavailable,
                format!("PostgreSQL at {}", self.target),
                source.to_string(),
            )
        })
    }

    /// The next backend message if it is already received in full; no I/O.
    fn buffered_frame(&mut self) -> Result<Option<Frame>, ConnectorError> {
        if self.read_buf.len() < 5 {
            return Ok(None);
        }
        let length = i32::from_be_bytes([
            self.read_buf[1],
            self.read_buf[2],
            self.read_buf[3],
            self.read_buf[4],
        ]);
        let length = usize::try_from(length)
            .ok()
            .filter(|l| *l >= 4)
            .ok_or_else(|| self.protocol(format!("invalid message length {length}")))?;
        if self.read_buf.len() > length {
            let mut frame = self.read_buf.split_to(1 + length);
            let tag = frame[0];
            frame.advance(5);
            return Ok(Some(Frame { tag, body: frame }));
        }
        self.read_buf.reserve(1 + length - self.read_buf.len());
        Ok(None)
    }

    /// Reads the next complete backend message. Cancel-safe: a partly received message stays
    /// in the buffer for the next call.
    async fn read_frame(&mut self) -> Result<Frame, ConnectorError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            let read = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|source| {
                    ConnectorError::new(
                        ErrorKind::SourceUnavailable,
                        format!("PostgreSQL at {}", self.target),
                        source.to_string(),
                    )
                })?;
            if read == 0 {
                return Err(ConnectorError::new(
                    ErrorKind::SourceUnavailable,
                    format!("PostgreSQL at {}", self.target),
                    "the server closed the connection",
                ));
            }
        }
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
}

impl PgReplicationStream {
    /// A CopyData frame's payload; `None` for what does not concern the stream (notices,
    /// parameter changes); an error for an ErrorResponse or the end of the copy.
    fn copy_data(&self, frame: Frame) -> Result<Option<BytesMut>, ConnectorError> {
        match frame.tag {
            b'd' => Ok(Some(frame.body)),
            b'E' => Err(error_response(&frame.body, "replication stream")),
            b'c' => Err(ConnectorError::new(
                ErrorKind::SourceUnavailable,
                format!("PostgreSQL at {}", self.connection.target),
                "the server ended the replication stream",
            )),
            _ => Ok(None),
        }
    }
}

impl ReplicationStream for PgReplicationStream {
    async fn next_copy_data(&mut self) -> Result<BytesMut, ConnectorError> {
        loop {
            let frame = self.connection.read_frame().await?;
            if let Some(payload) = self.copy_data(frame)? {
                return Ok(payload);
            }
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
