//! A real headless browser for page tests: Debian's `chromium` driven through `chromedriver`
//! (W3C WebDriver over HTTP, spoken here with reqwest). Chromium runs with the flags that keep
//! it off the network and with a fresh profile, as the machine's closed network requires.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// One browser session. Dropping it kills chromedriver's process group, Chromium included
/// (Chromium outlives a plain kill of chromedriver).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn value_of(response: Value) -> anyhow::Result<Value> {
    let value = response.get("value").cloned().unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        bail!(
            "webdriver error {error}: {}",
            value.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(value)
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub async fn start() -> anyhow::Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver: `apt-get install chromium chromium-driver` (scripts/install-deps.sh does)")?;
        let profile = tempfile::tempdir()?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let created = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json::<Value>()
            .await?;
        let session = value_of(created)?
            .get("sessionId")
            .and_then(Value::as_str)
            .context("chromedriver returned no session id")?
            .to_string();
        Ok(Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            _profile: profile,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        value_of(request.send().await?.json::<Value>().await?)
    }

    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Polls `script` until it returns something other than null/false/"".
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        args: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script, args.clone()).await?;
            if !matches!(&value, Value::Null | Value::Bool(false)) && value.as_str() != Some("") {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("return document.body.innerText;", json!([]))
                    .await
                    .unwrap_or_default();
                bail!("{what}: not seen within {timeout:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a PNG of the window.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine;
        let data = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().context("screenshot is not a string")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

/// Where page tests keep their screenshots: `target/test-artifacts/`.
pub fn artifact(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts")
        .join(name)
}
