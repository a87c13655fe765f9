//! `way2mail-bench`: an SMTP load generator and an SMTP sink, for benchmark
//! harnesses and delivery tests.
//!
//! # Usage
//!
//! ```text
//! # Load generator: 50 connections share 20000 messages of 5 KiB, one recipient each.
//! way2mail-bench smtp --server 127.0.0.1:2525 --connections 50 --messages 20000 \
//!     --size 5120 --recipients 1 [--pipelining] [--new-connection-per-message] \
//!     [--starttls] [--auth-user USER] [--ehlo NAME] [--from ADDR] \
//!     [--to-domain DOMAIN] [--timeout-secs 30] [--json]
//!
//! # HTTPS API load generator: 50 requests in flight share 20000 JSON messages.
//! way2mail-bench api --server 127.0.0.1:2443 --key w2m_xxx_yyy --connections 50 \
//!     --messages 20000 --size 5120 --from app@acme.example --to rcpt@remote.example \
//!     [--insecure | --ca-file PEM] [--server-name NAME] \
//!     [--http2 [--streams-per-connection 10]] [--timeout-secs 30] [--json]
//!
//! # Sink: accepts everything (or fails/drops at the given rates), stores nothing.
//! way2mail-bench sink --listen 127.0.0.1:2526 [--tempfail-rate 0.0] \
//!     [--permfail-rate 0.0] [--drop-rate 0.0] [--seed 1] [--hostname NAME] \
//!     [--report-every-secs 0] [--max-connections N] [--exit-after-messages N] \
//!     [--delay-ms 0] [--starttls] [--json]
//! ```
//!
//! `smtp` keeps each connection open for many messages; with `--pipelining` (and a
//! server advertising PIPELINING) it sends MAIL, the RCPTs and DATA in one write.
//! Latency is measured from sending MAIL to the reply after the end of data. It
//! prints messages ok and failed, elapsed time, msgs/s, p50/p99/max latency and the
//! failures counted by reply code or condition (`connect`, `timeout`, `disconnect`,
//! `protocol`, `tls`, `no-starttls`, `io`); `--json` prints one object
//! `{ok, failed, elapsed_s, msgs_per_s, p50_ms, p90_ms, p99_ms, max_ms, errors}`. The exit
//! status is 1 only when no message succeeded. `--starttls` does NOT check the
//! server's certificate: it is for benchmarking only. `--auth-user` authenticates every
//! connection with AUTH PLAIN after (STARTTLS and) EHLO, with the password from
//! `$WAY2MAIL_BENCH_PASSWORD` (kept off the command line and out of `ps`); a refused
//! AUTH counts as the failure `auth`.
//!
//! `api` sends `POST /v1/messages` with `Authorization: Bearer KEY` and a JSON body
//! `{"from", "to": [TO], "subject": "bench N", "text"}` whose text makes the message
//! the server builds about `--size` bytes, over keep-alive HTTPS connections; a `202`
//! is a success, any other status counts as a failure under its number (`422`,
//! `429`, ...), like the conditions above (`connect`, `tls`, `no-h2`, `timeout`,
//! `disconnect`, `protocol`, `http`). The key comes from `--key` or, kept out of
//! `ps`, from `$WAY2MAIL_BENCH_API_KEY`. `--connections` is the number of requests in
//! flight: over HTTP/1.1 (the default) each has its own TLS connection and sends its
//! requests one after the other; with `--http2` (h2 by ALPN) they are multiplexed
//! as streams over `ceil(connections / streams-per-connection)` TLS connections.
//! Latency runs from sending a request to the end of its response. It prints what
//! `smtp` prints, plus the protocol, the requests in flight and the TLS connections
//! opened (`http`, `concurrency`, `connections_opened` in the JSON, which otherwise
//! has the same keys), and on stderr the first answer of each failing status. The
//! certificate is NOT checked unless `--ca-file` names the PEM certificates to trust
//! (`--insecure` says the default out loud).
//!
//! `sink` prints `listening on ADDR` as its first line (use port 0 for an ephemeral
//! port), answers each complete message with 250, `451 4.3.0`, `554 5.0.0` or a
//! dropped connection, chosen by a reproducible pseudo-random sequence (`--seed`),
//! and on SIGINT/SIGTERM or after `--exit-after-messages` prints its counters
//! (messages, recipients, bytes, connections, peak connections, tempfails,
//! permfails, drops; JSON with `--json`) and exits 0. Periodic reports go to stderr.
//! `--starttls` makes it offer STARTTLS with a self-signed certificate.
//!
//! Modules: `smtp_client` (load generator) over `conn` (buffered socket), `reply`
//! (reply parser), `message` (generated messages), `tls`, `stats`; `api_client`
//! (the HTTPS load generator, over hyper); `sink` with its sans-IO `protocol` and
//! per-connection `session`.

mod api_client;
mod conn;
mod message;
mod reply;
mod sink;
mod smtp_client;
mod stats;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "way2mail-bench",
    version,
    about = "SMTP and HTTPS API load generator, and SMTP sink"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send messages to an SMTP server as fast as it takes them.
    Smtp(SmtpArgs),
    /// Send messages to Way2Mail's HTTPS API (POST /v1/messages) as fast as it takes them.
    Api(ApiArgs),
    /// Run an SMTP server that accepts and discards mail.
    Sink(SinkArgs),
}

#[derive(Args)]
struct SmtpArgs {
    /// Server address, host:port.
    #[arg(long, default_value = "127.0.0.1:2525")]
    server: String,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Messages to send in total, shared by all connections.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Message size in bytes (headers and body, before dot-stuffing).
    #[arg(long, default_value_t = 5120)]
    size: usize,
    /// Recipients per message (rcpt1@DOMAIN .. rcptN@DOMAIN).
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Send MAIL, RCPTs and DATA in one write if the server offers PIPELINING.
    #[arg(long)]
    pipelining: bool,
    /// Open a new connection for every message instead of reusing it.
    #[arg(long)]
    new_connection_per_message: bool,
    /// Use STARTTLS; the certificate is NOT verified (benchmarking only).
    #[arg(long)]
    starttls: bool,
    /// AUTH PLAIN as this user on every connection; the password comes from the
    /// environment variable WAY2MAIL_BENCH_PASSWORD.
    #[arg(long)]
    auth_user: Option<String>,
    /// Name sent with EHLO.
    #[arg(long, default_value = "bench.localhost")]
    ehlo: String,
    /// Envelope sender.
    #[arg(long, default_value = "bench@example.com")]
    from: String,
    /// Domain of the generated recipients.
    #[arg(long, default_value = "example.net")]
    to_domain: String,
    /// Limit for each connect, read and write.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ApiArgs {
    /// Server address of the API listener, host:port.
    #[arg(long, default_value = "127.0.0.1:2443")]
    server: String,
    /// API key, sent as `Authorization: Bearer KEY`; without it, the environment
    /// variable WAY2MAIL_BENCH_API_KEY (which `ps` does not show).
    #[arg(long)]
    key: Option<String>,
    /// Requests in flight: HTTP/1.1 connections, or HTTP/2 streams in all.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Messages to send in total, shared by all connections.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Size in bytes of the message the server builds (headers estimated, before
    /// DKIM signatures).
    #[arg(long, default_value_t = 5120)]
    size: usize,
    /// The message's sender ("from"): an address of a domain the key's tenant may
    /// send from.
    #[arg(long, default_value = "bench@example.com")]
    from: String,
    /// The message's one recipient ("to").
    #[arg(long, default_value = "rcpt1@example.net")]
    to: String,
    /// Accept any server certificate (the default; benchmarking only).
    #[arg(long, conflicts_with = "ca_file")]
    insecure: bool,
    /// Check the server's certificate against the PEM certificates in this file.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// Name for SNI and the certificate check (default: the host of --server).
    #[arg(long)]
    server_name: Option<String>,
    /// Negotiate HTTP/2 by ALPN and multiplex the requests over fewer connections.
    #[arg(long)]
    http2: bool,
    /// With --http2: concurrent streams per connection, so the connections are
    /// ceil(connections / this).
    #[arg(long, default_value_t = 10, requires = "http2")]
    streams_per_connection: usize,
    /// Limit for each connect, TLS handshake and request (to the end of its answer).
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SinkArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: SocketAddr,
    /// Share of messages answered 451 4.3.0.
    #[arg(long, default_value_t = 0.0)]
    tempfail_rate: f64,
    /// Share of messages answered 554 5.0.0.
    #[arg(long, default_value_t = 0.0)]
    permfail_rate: f64,
    /// Share of messages whose connection is dropped instead of answered.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Seed of the pseudo-random outcome sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Name in the greeting and EHLO reply.
    #[arg(long, default_value = "sink.localhost")]
    hostname: String,
    /// Print counters to stderr every N seconds (0: never).
    #[arg(long, default_value_t = 0)]
    report_every_secs: u64,
    /// Refuse connections beyond this many with 421.
    #[arg(long)]
    max_connections: Option<u64>,
    /// Print the report and exit after this many complete messages.
    #[arg(long)]
    exit_after_messages: Option<u64>,
    /// Delay before the reply to each complete message.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Offer STARTTLS with a self-signed certificate.
    #[arg(long)]
    starttls: bool,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write every accepted message (its content, dot-unstuffed) to
    /// DIR/<queue id>.eml, to look at what arrived: slower, for trying things out.
    #[arg(long, value_name = "DIR")]
    save_dir: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Smtp(args) => {
            let json = args.json;
            let summary = runtime.block_on(smtp_client::run(client_config(args)?))?;
            if json {
                println!("{}", summary.to_json());
            } else {
                print!("{}", summary.to_text());
            }
            Ok(if summary.ok == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Api(args) => {
            let json = args.json;
            let summary = runtime.block_on(api_client::run(api_config(args)?))?;
            if json {
                println!("{}", summary.to_json());
            } else {
                print!("{}", summary.to_text());
            }
            eprint!("{}", summary.samples_text());
            Ok(if summary.summary.ok == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Sink(args) => {
            runtime.block_on(sink::run(sink_config(args)?))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn client_config(a: SmtpArgs) -> anyhow::Result<smtp_client::ClientConfig> {
    if a.connections == 0 || a.timeout_secs == 0 {
        bail!("--connections and --timeout-secs must be at least 1");
    }
    let auth = match a.auth_user {
        Some(user) => {
            let password = std::env::var("WAY2MAIL_BENCH_PASSWORD")
                .map_err(|_| anyhow::anyhow!("--auth-user needs WAY2MAIL_BENCH_PASSWORD set"))?;
            Some((user, password))
        }
        None => None,
    };
    Ok(smtp_client::ClientConfig {
        server: a.server,
        connections: a.connections,
        messages: a.messages,
        size: a.size,
        recipients: a.recipients,
        pipelining: a.pipelining,
        new_connection_per_message: a.new_connection_per_message,
        starttls: a.starttls,
        auth,
        ehlo: a.ehlo,
        from: a.from,
        to_domain: a.to_domain,
        timeout: Duration::from_secs(a.timeout_secs),
    })
}

fn api_config(a: ApiArgs) -> anyhow::Result<api_client::ApiConfig> {
    if a.connections == 0 || a.timeout_secs == 0 || a.streams_per_connection == 0 {
        bail!("--connections, --streams-per-connection and --timeout-secs must be at least 1");
    }
    let key = match a.key {
        Some(key) => key,
        None => std::env::var("WAY2MAIL_BENCH_API_KEY")
            .map_err(|_| anyhow::anyhow!("give --key or set WAY2MAIL_BENCH_API_KEY"))?,
    };
    Ok(api_client::ApiConfig {
        server: a.server,
        key,
        connections: a.connections,
        messages: a.messages,
        size: a.size,
        from: a.from,
        to: a.to,
        ca_file: a.ca_file,
        server_name: a.server_name,
        http2: a.http2,
        streams_per_connection: a.streams_per_connection,
        timeout: Duration::from_secs(a.timeout_secs),
    })
}

fn sink_config(a: SinkArgs) -> anyhow::Result<sink::SinkConfig> {
    let rates = sink::Rates {
        tempfail: a.tempfail_rate,
        permfail: a.permfail_rate,
        drop: a.drop_rate,
    };
    let each_valid = [rates.tempfail, rates.permfail, rates.drop]
        .iter()
        .all(|r| (0.0..=1.0).contains(r));
    if !each_valid || rates.tempfail + rates.permfail + rates.drop > 1.0 + 1e-9 {
        bail!("rates must be within 0..=1 and add up to at most 1");
    }
    Ok(sink::SinkConfig {
        listen: a.listen,
        rates,
        seed: a.seed,
        hostname: a.hostname,
        report_every: (a.report_every_secs > 0).then(|| Duration::from_secs(a.report_every_secs)),
        max_connections: a.max_connections,
        exit_after_messages: a.exit_after_messages,
        delay: Duration::from_millis(a.delay_ms),
        starttls: a.starttls,
        json: a.json,
        save_dir: a.save_dir,
    })
}
