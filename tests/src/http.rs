//! The daemons' metrics and health endpoint (`[metrics] listen`) from the outside: a
//! plain HTTP/1.1 GET over a `TcpStream`, a parser for the lines of the Prometheus
//! text format, and the TCP ports a process listens on (from /proc), to show that
//! an endpoint turned off is not there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

const TIMEOUT: Duration = Duration::from_secs(10);
/// More than any scrape of the tests' daemons.
const MAX_RESPONSE: u64 = 8 * 1024 * 1024;

/// `GET path` on `address`, one request per connection: the status code and the body
/// (de-chunked when the server chunked it).
pub fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending GET {path} to {address}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to GET {path} from {address}"))?;
    let text = String::from_utf8(raw).context("the answer is not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers in the answer to GET {path}: {text:?}");
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .with_context(|| format!("status line {status_line:?}"))?,
        _ => bail!("not an HTTP/1.x status line: {status_line:?}"),
    };
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> anyhow::Result<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .context("a chunk without its size line")?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size, 16).with_context(|| format!("chunk size {size:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after.get(..size).context("a chunk shorter than its size")?;
        body.push_str(chunk);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .context("a chunk not ended by CRLF")?;
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition, `None`
/// when there is no such sample. `labels` must be the sample's whole label set, in
/// any order (`&[]` for a metric without labels).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    samples(text)
        .filter(|s| s.name == name)
        .find(|s| {
            s.labels.len() == wanted.len()
                && s.labels
                    .iter()
                    .all(|(k, v)| wanted.get(k.as_str()) == Some(&v.as_str()))
        })
        .map(|s| s.value)
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample line of a text exposition (comments and blank lines skipped; lines
/// that do not parse are skipped too: the assertions on values catch them).
pub fn samples(text: &str) -> impl Iterator<Item = Sample> + '_ {
    text.lines().filter_map(parse_sample)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let mut chars = after.strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.trim().to_owned(), value);
            rest = &after[1 + end + 1..];
        }
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The TCP addresses process `pid` listens on (its sockets in LISTEN state, from
/// /proc/PID/fd and /proc/net/tcp and tcp6).
pub fn tcp_listeners(pid: u32) -> anyhow::Result<Vec<SocketAddr>> {
    let mut inodes = std::collections::BTreeSet::new();
    let fds = format!("/proc/{pid}/fd");
    for entry in std::fs::read_dir(&fds).with_context(|| format!("reading {fds}"))? {
        // A descriptor closed meanwhile is not a listener.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // No IPv6 in this kernel.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {table}")),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state == "0A" && inodes.contains(*inode) {
                found.push(proc_address(local).with_context(|| format!("{table}: {line}"))?);
            }
        }
    }
    Ok(found)
}

/// `0100007F:24FA` (IPv4) or 32 hex digits and a port (IPv6), in the kernel's
/// per-32-bit-word host order, as /proc/net/tcp{,6} print them.
fn proc_address(text: &str) -> anyhow::Result<SocketAddr> {
    let (ip, port) = text.split_once(':').context("no port")?;
    let port = u16::from_str_radix(port, 16)?;
    let words = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice())?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice())?),
        n => bail!("an address of {n} bytes"),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse() {
        let text = "# HELP a_total things\n# TYPE a_total counter\n\
            a_total{op=\"tenant.add\",outcome=\"ok\"} 3\n\
            a_total{outcome=\"login_failed\",op=\"login\"} 2\n\
            b 1.5 1712345678\n\
            c{x=\"q\\\"u,o}te\",y=\"\"} +Inf\n";
        assert_eq!(
            metric_value(text, "a_total", &[("op", "tenant.add"), ("outcome", "ok")]),
            Some(3.0)
        );
        assert_eq!(
            metric_value(
                text,
                "a_total",
                &[("op", "login"), ("outcome", "login_failed")]
            ),
            Some(2.0)
        );
        assert_eq!(metric_value(text, "a_total", &[("op", "login")]), None);
        assert_eq!(metric_value(text, "b", &[]), Some(1.5));
        assert_eq!(
            metric_value(text, "c", &[("x", "q\"u,o}te"), ("y", "")]),
            Some(f64::INFINITY)
        );
        assert_eq!(metric_value(text, "d", &[]), None);
    }

    #[test]
    fn chunks_join() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").expect("chunked"),
            "abcde"
        );
    }

    #[test]
    fn proc_addresses() {
        assert_eq!(
            proc_address("0100007F:24FA").expect("v4"),
            "127.0.0.1:9466".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            proc_address("00000000000000000000000001000000:0050").expect("v6"),
            "[::1]:80".parse::<SocketAddr>().expect("addr")
        );
    }
}

/// One HTTPS API answer as Python's own client (`tests/python/http_request.py`)
/// saw it: status, headers and the body parsed as JSON (`null` when it is none).
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: u16,
    pub headers: serde_json::Value,
    pub body: serde_json::Value,
}

/// `method path` on `daemon`'s API listener through Python's HTTP client, trusting
/// the daemon's certificate, with `key` as the Bearer key and `extra` passed to the
/// script (`--json BODY`, `--header H`, `--data-file F`, ...). An error when the
/// script fails (no answer at all), not for an HTTP error status.
pub fn api_request(
    daemon: &crate::Daemon,
    method: &str,
    path: &str,
    key: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<ApiAnswer> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/http_request.py");
    let mut command = std::process::Command::new("python3");
    command
        .arg(&script)
        .arg(method)
        .arg(format!("https://localhost:{}{path}", daemon.ports().api))
        .arg("--cafile")
        .arg(daemon.cert_path())
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Some(key) = key {
        command.arg("--key").arg(key);
    }
    let output = crate::run_bounded(&mut command, Duration::from_secs(90))
        .map_err(|e| e.context("running python3 (is python3 installed?)"))?;
    if !output.status.success() {
        bail!(
            "http_request.py {method} {path} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).context("client output")?;
    Ok(ApiAnswer {
        status: u16::try_from(v["status"].as_u64().unwrap_or(0))?,
        headers: v["headers"].clone(),
        body: v["body"].clone(),
    })
}
