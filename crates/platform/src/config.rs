//! Configuration: flags, environment variables and one TOML file, in that order of precedence.
//!
//! Every service declares its options once, as a `clap::Parser` struct whose fields carry
//! `long`, `env` and a help text, so `--help` documents every option together with its
//! environment variable. A TOML file named by `--config FILE` (or the `CONFIG_ENV` variable
//! the service names) supplies defaults: its keys are the options' long names, with `-` or `_`.
//! Unknown keys are an error that names the key, so a typo never silently does nothing.

use std::{collections::BTreeMap, ffi::OsString, path::Path};

use clap::Parser;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("config file {path}: unknown option `{key}` (see --help for the options)")]
    UnknownKey { path: String, key: String },
    #[error("config file {path}: option `{key}` must be a string, number or boolean")]
    UnsupportedValue { path: String, key: String },
    /// Not a `source`: the one line says it all, and a source would print clap's lines again.
    #[error("{}", one_line(.0))]
    Invalid(clap::Error),
}

impl From<clap::Error> for ConfigError {
    fn from(error: clap::Error) -> Self {
        Self::Invalid(error)
    }
}

/// A command-line error as one line: which option, which value, and what is expected (clap's
/// own rendering spreads that over several lines, with a `For more information` footer).
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("For more information") || line.starts_with("Usage:")
        {
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line).to_string());
    }
    parts.join(" ")
}

/// Parses `T` from the process arguments, with defaults taken from the config file.
///
/// `--help` and `--version` print and exit, as with `T::parse()`.
pub fn load<T: Parser>(config_env: &str) -> Result<T, ConfigError> {
    match load_from(std::env::args_os(), std::env::var_os(config_env)) {
        Err(ConfigError::Invalid(err))
            if matches!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        other => other,
    }
}

/// The testable core of [`load`]: arguments and the config-file variable are passed in.
pub fn load_from<T: Parser>(
    args: impl IntoIterator<Item = impl Into<OsString>>,
    config_from_env: Option<OsString>,
) -> Result<T, ConfigError> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let config_path = config_flag(&args).or(config_from_env);
    let mut command = T::command();
    if let Some(path) = config_path {
        for (id, value) in read_file_defaults(Path::new(&path), &command)? {
            command = command.mut_arg(id, |arg| arg.default_value(value));
        }
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(T::from_arg_matches(&matches)?)
}

fn config_flag(args: &[OsString]) -> Option<OsString> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().cloned();
        }
        if let Some(value) = text.strip_prefix("--config=") {
            return Some(value.into());
        }
    }
    None
}

fn read_file_defaults(
    path: &Path,
    command: &clap::Command,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: display.clone(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: display.clone(),
        source,
    })?;
    let mut defaults = BTreeMap::new();
    for (key, value) in table {
        let wanted = key.replace('_', "-");
        let id = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(wanted.as_str()) && arg.get_id() != "config")
            .map(|arg| arg.get_id().to_string())
            .ok_or_else(|| ConfigError::UnknownKey {
                path: display.clone(),
                key: key.clone(),
            })?;
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(other),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ConfigError::UnsupportedValue {
                    path: display.clone(),
                    key: key.clone(),
                })?
                .join(","),
            _ => {
                return Err(ConfigError::UnsupportedValue { path: display, key });
            }
        };
        defaults.insert(id, value);
    }
    Ok(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Parser, Debug)]
    struct Demo {
        /// Config file.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// A number.
        #[arg(long, default_value_t = 1)]
        batch_size: u32,
        /// A name.
        #[arg(long, default_value = "a")]
        name: String,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn an_invalid_option_is_one_line_naming_it_and_what_is_expected() {
        let error = load_from::<Demo>(["demo", "--batch-size", "many"], None).unwrap_err();
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with("invalid value 'many' for '--batch-size <BATCH_SIZE>'"),
            "{message}"
        );
        let error = load_from::<Demo>(["demo", "--colour", "red"], None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unexpected argument '--colour'"),
            "{error}"
        );
    }

    #[test]
    fn file_values_override_defaults_and_flags_override_the_file() {
        let f = file("batch_size = 7\nname = \"from-file\"\n");
        let path = f.path().to_str().unwrap();
        let demo: Demo = load_from(["demo", "--config", path], None).unwrap();
        assert_eq!((demo.batch_size, demo.name.as_str()), (7, "from-file"));
        let demo: Demo = load_from(["demo", "--config", path, "--name", "flag"], None).unwrap();
        assert_eq!((demo.batch_size, demo.name.as_str()), (7, "flag"));
    }

    #[test]
    fn config_path_can_come_from_the_environment() {
        let f = file("batch-size = 9\n");
        let demo: Demo = load_from(["demo"], Some(f.path().into())).unwrap();
        assert_eq!(demo.batch_size, 9);
    }

    #[test]
    fn unknown_key_is_named() {
        let f = file("batch_sise = 9\n");
        let err = load_from::<Demo>(["demo"], Some(f.path().into())).unwrap_err();
        assert!(
            err.to_string().contains("unknown option `batch_sise`"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_is_reported_not_panicked() {
        let f = file("batch_size = \"many\"\n");
        let err = load_from::<Demo>(["demo"], Some(f.path().into())).unwrap_err();
        assert!(err.to_string().contains("many"), "{err}");
    }
}
