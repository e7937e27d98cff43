//! How every service's Kafka clients authenticate and encrypt: TLS (`ssl`), SASL (`PLAIN`,
//! `SCRAM-SHA-256`, `SCRAM-SHA-512`) or both, configured with the same options in every service
//! ([`KafkaSecurityArgs`], flattened into each one's command line, environment and file) and
//! installed once at start ([`install`]). Every client the platform creates
//! ([`crate::kafka::client_config`]) then carries them: a service makes Kafka clients in many
//! places (producers, consumers, admin clients, transactional producers), and one process talks
//! to one cluster with one identity.
//!
//! The SASL password never appears on the command line (where `ps` would show it): it comes from
//! `KAFKA_SASL_PASSWORD` or from the file `--kafka-sasl-password-file` names, and is never
//! printed, not even by `Debug`.

use std::{path::PathBuf, sync::OnceLock};

use rdkafka::ClientConfig;

/// `security.protocol`, as librdkafka names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    #[serde(rename = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The Kafka security options every service takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KafkaSecurityArgs {
    /// How the Kafka clients talk to the brokers: plaintext, ssl (TLS), sasl_plaintext (SASL
    /// without TLS) or sasl_ssl (SASL over TLS).
    #[arg(
        long,
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "plaintext"
    )]
    pub kafka_security_protocol: SecurityProtocol,
    /// PEM file of the CA certificates the brokers' certificates must chain to (ssl, sasl_ssl)
    /// [default: the system's CA store]. The broker's host name is always verified.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// SASL mechanism (sasl_plaintext, sasl_ssl): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// File whose first line is the SASL password. Or set KAFKA_SASL_PASSWORD in the
    /// environment; the password is never taken as a flag, where `ps` would show it.
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
}

/// An invalid combination of the options, naming the option to fix.
#[derive(Debug, thiserror::Error)]
#[error("{option}: {message}")]
pub struct KafkaSecurityError {
    pub option: &'static str,
    pub message: String,
}

/// The resolved settings: what [`install`] applies to every client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    protocol: SecurityProtocol,
    ca_location: Option<PathBuf>,
    sasl: Option<(SaslMechanism, String, String)>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("ca_location", &self.ca_location)
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|(mechanism, user, _)| (mechanism, user, "<password>")),
            )
            .finish()
    }
}

impl KafkaSecurityArgs {
    /// Checks the options together and reads the password (`KAFKA_SASL_PASSWORD`, or the file).
    pub fn resolve(&self) -> Result<KafkaSecurity, KafkaSecurityError> {
        self.resolve_with(std::env::var("KAFKA_SASL_PASSWORD").ok())
    }

    fn resolve_with(
        &self,
        password_from_env: Option<String>,
    ) -> Result<KafkaSecurity, KafkaSecurityError> {
        let error = |option, message: String| KafkaSecurityError { option, message };
        let protocol = self.kafka_security_protocol;
        if let Some(ca) = &self.kafka_ssl_ca_location {
            if !protocol.uses_tls() {
                return Err(error(
                    "--kafka-ssl-ca-location",
                    format!(
                        "given, but --kafka-security-protocol is {}; expected ssl or sasl_ssl",
                        protocol.as_str()
                    ),
                ));
            }
            if let Err(e) = std::fs::metadata(ca) {
                return Err(error(
                    "--kafka-ssl-ca-location",
                    format!(
                        "cannot read {}: {e}; expected a PEM file of CA certificates",
                        ca.display()
                    ),
                ));
            }
        }
        let sasl_given = self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || self.kafka_sasl_password_file.is_some();
        if !protocol.uses_sasl() {
            if sasl_given {
                return Err(error(
                    "--kafka-security-protocol",
                    format!(
                        "is {} but SASL options are given; expected sasl_plaintext or sasl_ssl",
                        protocol.as_str()
                    ),
                ));
            }
            return Ok(KafkaSecurity {
                protocol,
                ca_location: self.kafka_ssl_ca_location.clone(),
                sasl: None,
            });
        }
        let mechanism = self.kafka_sasl_mechanism.ok_or_else(|| {
            error(
                "--kafka-sasl-mechanism",
                format!(
                    "required with --kafka-security-protocol {}; expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    protocol.as_str()
                ),
            )
        })?;
        let username = self.kafka_sasl_username.clone().ok_or_else(|| {
            error(
                "--kafka-sasl-username",
                "required with SASL; expected the user name".into(),
            )
        })?;
        let password = match (&self.kafka_sasl_password_file, password_from_env) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| {
                    error(
                        "--kafka-sasl-password-file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, Some(password)) => password,
            (None, None) => {
                return Err(error(
                    "--kafka-sasl-password-file",
                    "SASL needs a password: set KAFKA_SASL_PASSWORD or name a file".into(),
                ));
            }
        };
        if password.is_empty() {
            return Err(error(
                "--kafka-sasl-password-file",
                "the SASL password is empty".into(),
            ));
        }
        Ok(KafkaSecurity {
            protocol,
            ca_location: self.kafka_ssl_ca_location.clone(),
            sasl: Some((mechanism, username, password)),
        })
    }
}

impl KafkaSecurity {
    /// Sets librdkafka's security properties on `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_tls() {
            config.set("ssl.endpoint.identification.algorithm", "https");
            if let Some(ca) = &self.ca_location {
                config.set("ssl.ca.location", ca.to_string_lossy());
            }
        }
        if let Some((mechanism, username, password)) = &self.sasl {
            config
                .set("sasl.mechanism", mechanism.as_str())
                .set("sasl.username", username)
                .set("sasl.password", password);
        }
    }
}

static INSTALLED: OnceLock<KafkaSecurity> = OnceLock::new();

/// Makes `security` the settings of every Kafka client this process creates from now on. Once
/// per process: a second, different call is refused (false).
pub fn install(security: KafkaSecurity) -> bool {
    let installed = INSTALLED.get_or_init(|| security.clone());
    *installed == security
}

/// Resolves `args` and installs the result; the error names the option to fix.
pub fn install_from(args: &KafkaSecurityArgs) -> Result<(), KafkaSecurityError> {
    if install(args.resolve()?) {
        Ok(())
    } else {
        Err(KafkaSecurityError {
            option: "--kafka-security-protocol",
            message: "the Kafka security settings were already installed differently".into(),
        })
    }
}

/// The installed settings (plaintext when none were).
pub fn installed() -> KafkaSecurity {
    INSTALLED.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(protocol: SecurityProtocol) -> KafkaSecurityArgs {
        KafkaSecurityArgs {
            kafka_security_protocol: protocol,
            ..KafkaSecurityArgs::default()
        }
    }

    /// The properties `apply` set, sorted by name (read one by one: rdkafka's map view hides
    /// the password).
    fn properties(security: &KafkaSecurity) -> Vec<(String, String)> {
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        let mut names: Vec<String> = config.config_map().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let value = config.get(&name).unwrap_or_default().to_string();
                (name, value)
            })
            .collect()
    }

    #[test]
    fn plaintext_is_the_default_and_sets_only_the_protocol() {
        let security = KafkaSecurityArgs::default().resolve_with(None).unwrap();
        assert_eq!(
            properties(&security),
            [("security.protocol".to_string(), "plaintext".to_string())]
        );
    }

    #[test]
    fn sasl_over_tls_sets_every_property_librdkafka_needs() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let security = KafkaSecurityArgs {
            kafka_ssl_ca_location: Some(ca.path().to_path_buf()),
            kafka_sasl_mechanism: Some(SaslMechanism::ScramSha512),
            kafka_sasl_username: Some("connector".into()),
            ..args(SecurityProtocol::SaslSsl)
        }
        .resolve_with(Some("s3cret".into()))
        .unwrap();
        let ca_path = ca.path().to_string_lossy().into_owned();
        assert_eq!(
            properties(&security),
            [
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.password", "s3cret"),
                ("sasl.username", "connector"),
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.location", ca_path.as_str()),
                ("ssl.endpoint.identification.algorithm", "https"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(!format!("{security:?}").contains("s3cret"));
    }

    #[test]
    fn the_password_file_wins_over_the_environment_and_only_its_first_line_counts() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"from-file\nignored\n").unwrap();
        let security = KafkaSecurityArgs {
            kafka_sasl_mechanism: Some(SaslMechanism::Plain),
            kafka_sasl_username: Some("u".into()),
            kafka_sasl_password_file: Some(file.path().to_path_buf()),
            ..args(SecurityProtocol::SaslPlaintext)
        }
        .resolve_with(Some("from-env".into()))
        .unwrap();
        assert!(properties(&security).contains(&("sasl.password".into(), "from-file".into())));
    }

    #[test]
    fn each_inconsistent_setting_names_the_option_to_fix() {
        let refused = |args: KafkaSecurityArgs, password: Option<&str>| {
            args.resolve_with(password.map(String::from))
                .unwrap_err()
                .to_string()
        };
        let message = refused(
            KafkaSecurityArgs {
                kafka_sasl_username: Some("u".into()),
                ..args(SecurityProtocol::Ssl)
            },
            None,
        );
        assert!(
            message.starts_with("--kafka-security-protocol: is ssl but SASL options"),
            "{message}"
        );
        let message = refused(args(SecurityProtocol::SaslSsl), Some("p"));
        assert!(
            message.starts_with("--kafka-sasl-mechanism: required"),
            "{message}"
        );
        let message = refused(
            KafkaSecurityArgs {
                kafka_sasl_mechanism: Some(SaslMechanism::Plain),
                ..args(SecurityProtocol::SaslPlaintext)
            },
            Some("p"),
        );
        assert!(
            message.starts_with("--kafka-sasl-username: required"),
            "{message}"
        );
        let message = refused(
            KafkaSecurityArgs {
                kafka_sasl_mechanism: Some(SaslMechanism::Plain),
                kafka_sasl_username: Some("u".into()),
                ..args(SecurityProtocol::SaslPlaintext)
            },
            None,
        );
        assert!(
            message.starts_with("--kafka-sasl-password-file: SASL needs a password"),
            "{message}"
        );
        let message = refused(
            KafkaSecurityArgs {
                kafka_ssl_ca_location: Some("/nonexistent/ca.pem".into()),
                ..args(SecurityProtocol::Ssl)
            },
            None,
        );
        assert!(
            message.starts_with("--kafka-ssl-ca-location: cannot read /nonexistent/ca.pem"),
            "{message}"
        );
        let message = refused(
            KafkaSecurityArgs {
                kafka_ssl_ca_location: Some("/etc/hostname".into()),
                ..args(SecurityProtocol::Plaintext)
            },
            None,
        );
        assert!(message.contains("expected ssl or sasl_ssl"), "{message}");
    }
}
