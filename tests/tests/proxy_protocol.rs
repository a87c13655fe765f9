//! The PROXY protocol v2 on the listeners (`proxy_from`), with the real daemon:
//! connections from the balancer (127.0.0.2 here) start with a header naming the
//! client, and that client's address is what the relay rules, the per-IP
//! connection cap and `Received:` see; a balancer connection without a header is
//! closed; anyone else's header is not taken as one; implicit TLS behind a header
//! works (the ClientHello follows the header at once).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{ensure, Context};
use way2mail_mta::proxy_protocol::encode;
use way2mail_tests::{wait_for, Backend, Daemon, Sink, SinkOptions, SmtpClient, TestConfig};

const BALANCER: &str = "127.0.0.2";
const WAIT: Duration = Duration::from_secs(30);

/// A TCP connection to the daemon's `port` from `source`.
fn connect_from(source: &str, port: u16) -> anyhow::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: SocketAddr = format!("{source}:0").parse()?;
    socket.bind(&from.into())?;
    let to: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(tcp)
}

/// A connection through the "balancer" for `client`: the header, then the greeting.
fn proxied(port: u16, client: &str) -> anyhow::Result<(SmtpClient, way2mail_tests::TestReply)> {
    let mut tcp = connect_from(BALANCER, port)?;
    let client: SocketAddr = client.parse()?;
    tcp.write_all(&encode(client, tcp.peer_addr()?))?;
    SmtpClient::over_plain(tcp)
}

#[test]
fn the_client_named_by_the_balancer_is_the_one_the_rules_see_epoll() -> anyhow::Result<()> {
    the_client_named_by_the_balancer_is_the_one_the_rules_see(Backend::Epoll)
}

#[test]
fn the_client_named_by_the_balancer_is_the_one_the_rules_see_io_uring() -> anyhow::Result<()> {
    the_client_named_by_the_balancer_is_the_one_the_rules_see(Backend::IoUring)
}

fn the_client_named_by_the_balancer_is_the_one_the_rules_see(
    backend: Backend,
) -> anyhow::Result<()> {
    let sink = Sink::start(SinkOptions::default())?;
    let config = TestConfig::new(backend)
        .proxy_from(&format!("[\"{BALANCER}/32\"]"))
        .set("relay", "domains", "[\"remote.example\"]")
        .set("limits", "max_connections_per_ip", "1")
        .set("delivery", "enabled", "true")
        .set("delivery", "retry_initial_secs", "1")
        .raw(&sink.route("remote.example"));
    let daemon = Daemon::start(&config)?;
    let mx = daemon.ports().mx;

    // A client on the internet, through the balancer: not trusted, so no relay;
    // mail for a local domain is taken, and its Received: names the client.
    let (mut c, greeting) = proxied(mx, "192.0.2.55:40000")?;
    ensure!(greeting.code == 220, "{greeting:?}");
    c.expect("EHLO client.example", 250)?;
    c.expect("MAIL FROM:<a@client.example>", 250)?;
    let relay = c.command("RCPT TO:<x@elsewhere.example>")?;
    ensure!(
        relay.code == 554 || relay.code == 550,
        "relayed for 192.0.2.55: {relay:?}"
    );
    c.expect("RSET", 250)?;
    let body = "Subject: proxied\r\n\r\nThrough the balancer.\r\n";
    let queued = c.send_message("a@client.example", &["bob@remote.example"], body)?;
    ensure!(queued.code == 250, "{queued:?}");
    let got = wait_for("the message at the sink", WAIT, || {
        sink.messages()
            .into_iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains("Subject: proxied"))
    })?;
    let data = String::from_utf8_lossy(&got.data);
    ensure!(
        data.contains("[192.0.2.55]"),
        "Received: does not name the client:\n{data}"
    );
    ensure!(
        !data.contains("[127.0.0.2]"),
        "Received: names the balancer:\n{data}"
    );

    // The per-IP cap (1) counts clients, not the balancer: another client gets in
    // while the first is connected, the same client does not.
    let (_other, greeting) = proxied(mx, "192.0.2.66:40000")?;
    ensure!(greeting.code == 220, "another client: {greeting:?}");
    let (_again, greeting) = proxied(mx, "192.0.2.55:40001")?;
    ensure!(greeting.code == 421, "the same client twice: {greeting:?}");

    // A trusted client (127.0.0.1, in trusted_networks) through the balancer relays.
    let (mut t, _) = proxied(mx, "127.0.0.1:40002")?;
    t.expect("EHLO inside.example", 250)?;
    t.expect("MAIL FROM:<a@inside.example>", 250)?;
    t.expect("RCPT TO:<x@elsewhere.example>", 250)?;
    drop(t);

    // Implicit TLS behind a header: the ClientHello follows it at once.
    let mut tcp = connect_from(BALANCER, daemon.ports().submissions)?;
    tcp.write_all(&encode("192.0.2.77:1".parse()?, tcp.peer_addr()?))?;
    let (mut s, greeting) = SmtpClient::over_tls(tcp, daemon.tls_config()?)?;
    ensure!(greeting.code == 220, "{greeting:?}");
    s.expect("EHLO tls.example", 250)?;

    // The balancer's connection without a header: closed without a greeting.
    let mut bare = connect_from(BALANCER, mx)?;
    bare.write_all(b"EHLO no-header.example\r\n")?;
    let mut buf = Vec::new();
    let _ = bare.read_to_end(&mut buf);
    ensure!(
        !String::from_utf8_lossy(&buf).contains("220"),
        "greeted without a header: {:?}",
        String::from_utf8_lossy(&buf)
    );

    // Anyone else's header is not one: its bytes are no command, and the address
    // it names is never taken.
    let mut direct = connect_from("127.0.0.3", mx)?;
    let mut greeting = [0u8; 512];
    let n = direct.read(&mut greeting)?;
    ensure!(greeting[..n].starts_with(b"220"), "direct greeting");
    direct.write_all(&encode("192.0.2.99:1".parse()?, direct.peer_addr()?))?;
    let mut answer = [0u8; 512];
    let n = direct.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    ensure!(
        n == 0 || answer.starts_with('5') || answer.starts_with("221"),
        "a header from outside proxy_from: {answer:?}"
    );
    let log = daemon.stderr();
    ensure!(
        log.contains("PROXY header refused"),
        "no refusal logged:\n{log}"
    );
    ensure!(
        !log.contains("192.0.2.99"),
        "the outsider's claimed address was taken:\n{log}"
    );

    let metrics = way2mail_tests::http_get(daemon.metrics_addr(), "/metrics")?.1;
    let accepted = way2mail_tests::metric_value(
        &metrics,
        "way2mail_proxy_headers_total",
        &[("result", "accepted")],
    )
    .context("no accepted PROXY headers counted")?;
    ensure!(accepted >= 5.0, "accepted headers: {accepted}");
    Ok(())
}
