//! A PostgreSQL connection in logical-replication mode, speaking the wire protocol directly:
//! tokio-postgres has no replication mode. Only framing and I/O live here; the CopyData payloads
//! are decoded by the pure `pgoutput` crate.

use bytes::{Buf, BytesMut};
use postgres_protocol::{
    authentication::{md5_hash, sasl},
    message::frontend,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{PgTarget, SourceError};

/// One backend message: its tag and body.
struct Frame {
    tag: u8,
    body: BytesMut,
}

pub struct ReplicationConnection {
    stream: TcpStream,
    read_buf: BytesMut,
    target: String,
}

impl ReplicationConnection {
    /// Connects, authenticates (trust, password, md5 or SCRAM-SHA-256) and waits until ready.
    ///
    /// The session settings make pgoutput's text output predictable for the value decoder.
    pub async fn connect(target: &PgTarget) -> Result<Self, SourceError> {
        let address = format!("{}:{}", target.host, target.port);
        let stream =
            TcpStream::connect(&address)
                .await
                .map_err(|source| SourceError::Unreachable {
                    target: address.clone(),
                    source,
                })?;
        stream.set_nodelay(true).ok();
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

    async fn authenticate(&mut self, target: &PgTarget) -> Result<(), SourceError> {
        let password =
            || {
                target.password.clone().ok_or_else(|| SourceError::Definite {
                context: "authentication".into(),
                message: format!(
                    "the server asks a password for role {} but the connection URL has none",
                    target.user
                ),
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
                        return Err(SourceError::Definite {
                            context: "authentication".into(),
                            message: format!("no supported SASL mechanism in {mechanisms:?}"),
                        });
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
                    step.map_err(|e| SourceError::Definite {
                        context: "authentication".into(),
                        message: format!("SCRAM exchange failed: {e}"),
                    })?;
                    if kind == 12 {
                        continue;
                    }
                    frontend::sasl_response(exchange.message(), &mut out)
                        .map_err(|e| self.protocol(e.to_string()))?;
                }
                other => {
                    return Err(SourceError::Definite {
                        context: "authentication".into(),
                        message: format!(
                            "unsupported authentication method {other} (supported: trust, password, md5, scram-sha-256)"
                        ),
                    });
                }
            }
            self.write(&out).await?;
        }
    }

    async fn wait_ready(&mut self) -> Result<(), SourceError> {
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
    ) -> Result<Vec<Vec<Option<String>>>, SourceError> {
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
    ) -> Result<ReplicationStream, SourceError> {
        let mut out = BytesMut::new();
        frontend::query(command, &mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.write(&out).await?;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'W' => return Ok(ReplicationStream { connection: self }),
                b'E' => return Err(error_response(&frame.body, "START_REPLICATION")),
                _ => {}
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SourceError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| SourceError::Unreachable {
                target: self.target.clone(),
                source,
            })
    }

    /// Reads the next complete backend message. Cancel-safe: a partly received message stays
    /// in the buffer for the next call.
    async fn read_frame(&mut self) -> Result<Frame, SourceError> {
        loop {
            if self.read_buf.len() >= 5 {
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
                    return Ok(Frame { tag, body: frame });
                }
                self.read_buf.reserve(1 + length - self.read_buf.len());
            }
            let read = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|source| SourceError::Unreachable {
                    target: self.target.clone(),
                    source,
                })?;
            if read == 0 {
                return Err(SourceError::Unreachable {
                    target: self.target.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ),
                });
            }
        }
    }

    fn protocol(&self, message: String) -> SourceError {
        SourceError::Protocol {
            target: self.target.clone(),
            message,
        }
    }
}

/// The replication connection after START_REPLICATION: CopyData in both directions.
pub struct ReplicationStream {
    connection: ReplicationConnection,
}

impl ReplicationStream {
    /// The next CopyData payload from the server. Cancel-safe.
    pub async fn next_copy_data(&mut self) -> Result<BytesMut, SourceError> {
        loop {
            let frame = self.connection.read_frame().await?;
            match frame.tag {
                b'd' => return Ok(frame.body),
                b'E' => return Err(error_response(&frame.body, "replication stream")),
                b'c' => {
                    return Err(SourceError::Unreachable {
                        target: self.connection.target.clone(),
                        source: std::io::Error::other("the server ended the replication stream"),
                    });
                }
                // Notices and parameter changes do not concern the stream.
                _ => {}
            }
        }
    }

    /// Sends a CopyData payload (a standby status update).
    pub async fn send_copy_data(&mut self, payload: &[u8]) -> Result<(), SourceError> {
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
fn error_response(body: &[u8], context: &str) -> SourceError {
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
    SourceError::from_sqlstate(context, &code, message)
}
