//! Test configurations: the daemon's TOML (docs/configuration.md) with every path inside a
//! temp dir and every listener on its own ephemeral 127.0.0.1 port. A test changes keys with
//! [`TestConfig::set`]; the base values below are chosen so that tests do not depend on the
//! machine (two workers so SO_REUSEPORT sharing is exercised, a tiny free-space floor).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::Backend;

/// The four listener ports of one daemon (three SMTP, one HTTPS API), and its
/// metrics endpoint's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub mx: u16,
    pub submission: u16,
    pub submissions: u16,
    pub api: u16,
    pub metrics: u16,
}

impl Ports {
    /// Five distinct ports the kernel just handed out as free. All the sockets are
    /// held until all are chosen: released one by one, the kernel may hand the same
    /// port out twice.
    pub fn ephemeral() -> anyhow::Result<Ports> {
        let bind = || TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0");
        let held = [bind()?, bind()?, bind()?, bind()?, bind()?];
        let port = |i: usize| -> anyhow::Result<u16> { Ok(held[i].local_addr()?.port()) };
        Ok(Ports {
            mx: port(0)?,
            submission: port(1)?,
            submissions: port(2)?,
            api: port(3)?,
            metrics: port(4)?,
        })
    }

    /// The ports of the documented dev defaults (no `--config`).
    pub fn dev_defaults() -> Ports {
        Ports {
            mx: 2525,
            submission: 2587,
            submissions: 2465,
            api: 2443,
            metrics: 9465,
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago: bound with port 0, read, released.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A port on 127.0.0.1 where connections are refused for as long as this lives: a
/// socket bound to it and never listening. Unlike a port that was merely free a
/// moment ago ([`free_port`]), the kernel hands it to nobody else meanwhile, so a
/// route pointed here cannot end up at a daemon or sink started later.
pub struct ClosedPort {
    _socket: socket2::Socket,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> anyhow::Result<ClosedPort> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).context("a TCP socket")?;
        let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        socket.bind(&any.into()).context("binding 127.0.0.1:0")?;
        let port = socket
            .local_addr()?
            .as_socket()
            .context("an IPv4 address")?
            .port();
        Ok(ClosedPort {
            _socket: socket,
            port,
        })
    }
}

/// One daemon configuration: a backend plus the keys a test sets.
#[derive(Debug, Clone)]
pub struct TestConfig {
    backend: Backend,
    /// section ("" = top level) → key → TOML value literal.
    overrides: BTreeMap<String, BTreeMap<String, String>>,
    /// TOML appended verbatim after everything else (arrays of tables like `[[route]]`).
    raw: Vec<String>,
    /// `proxy_from` of every listener (a TOML array literal), when set.
    proxy_from: Option<String>,
}

impl TestConfig {
    pub fn new(backend: Backend) -> TestConfig {
        TestConfig {
            backend,
            overrides: BTreeMap::new(),
            raw: Vec::new(),
            proxy_from: None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Delivery on with a short retry (1 s, then 2 s, no jitter), each outcome also
    /// in `delivery.log` of the daemon's directory.
    pub fn quick_delivery(backend: Backend) -> TestConfig {
        TestConfig::new(backend)
            .set("delivery", "enabled", "true")
            .set("delivery", "retry_initial_secs", "1")
            .set("delivery", "retry_max_secs", "2")
            .set("delivery", "retry_jitter_percent", "0")
            .set("delivery", "log_file", "\"delivery.log\"")
    }

    /// Sets `key = value` in `[section]` (`""` for the top level). `value` is a TOML
    /// literal, so strings carry their quotes: `set("relay", "domains", r#"["a.test"]"#)`.
    pub fn set(mut self, section: &str, key: &str, value: &str) -> TestConfig {
        self.overrides
            .entry(section.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        self
    }

    /// Appends `toml_text` verbatim at the end of the file, after every `[section]`: the
    /// place for arrays of tables such as `[[route]]` or `[[egress]]`.
    pub fn raw(mut self, toml_text: &str) -> TestConfig {
        self.raw.push(toml_text.to_string());
        self
    }

    /// Sets `proxy_from` (a TOML array literal, `["127.0.0.1/32"]`) on every listener.
    pub fn proxy_from(mut self, networks: &str) -> TestConfig {
        self.proxy_from = Some(networks.to_string());
        self
    }

    /// The TOML text for a daemon whose files live under `dir`.
    pub fn render(&self, dir: &Path, ports: &Ports) -> String {
        let path = |name: &str| toml_string(&dir.join(name).to_string_lossy());
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut base = |section: &str, key: &str, value: String| {
            sections
                .entry(section.to_string())
                .or_default()
                .insert(key.to_string(), value);
        };
        base("", "hostname", toml_string("mx.way2mail.test"));
        base("runtime", "io", toml_string(self.backend.config_value()));
        base("runtime", "threads", "2".into());
        base("tls", "cert", path("tls/cert.pem"));
        base("tls", "key", path("tls/key.pem"));
        base("tls", "self_signed", "true".into());
        base("spool", "path", path("spool"));
        base("spool", "key_file", path("spool.key"));
        base("spool", "keyring_file", path("spool.keyring"));
        base("spool", "min_free_space", "1048576".into());
        base("admin", "socket", path("mta.sock"));
        base(
            "metrics",
            "listen",
            toml_string(&format!("127.0.0.1:{}", ports.metrics)),
        );
        base("log", "format", toml_string("text"));
        base("log", "level", toml_string("info"));
        // Issue-2 style tests check what stays queued; delivery tests turn it on.
        base("delivery", "enabled", "false".into());
        for (section, keys) in &self.overrides {
            for (key, value) in keys {
                base(section, key, value.clone());
            }
        }

        let mut text = String::new();
        // Top-level keys must precede every table header.
        for (key, value) in sections.remove("").unwrap_or_default() {
            text.push_str(&format!("{key} = {value}\n"));
        }
        for (port, role) in [
            (ports.mx, "mx"),
            (ports.submission, "submission"),
            (ports.submissions, "submissions"),
            (ports.api, "api"),
        ] {
            text.push_str(&format!(
                "\n[[listener]]\naddress = \"127.0.0.1:{port}\"\nrole = \"{role}\"\n"
            ));
            if let Some(networks) = &self.proxy_from {
                text.push_str(&format!("proxy_from = {networks}\n"));
            }
        }
        for (section, keys) in sections {
            text.push_str(&format!("\n[{section}]\n"));
            for (key, value) in keys {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        for raw in &self.raw {
            text.push('\n');
            text.push_str(raw);
            if !raw.ends_with('\n') {
                text.push('\n');
            }
        }
        text
    }

    /// Writes the rendered config to `dir/way2mail.toml` and returns its path.
    pub fn write(&self, dir: &Path, ports: &Ports) -> anyhow::Result<PathBuf> {
        let file = dir.join("way2mail.toml");
        std::fs::write(&file, self.render(dir, ports))
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(file)
    }
}

/// A TOML basic string; temp paths contain no quotes or backslashes, but escape anyway.
fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}
