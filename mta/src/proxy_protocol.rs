//! The PROXY protocol, version 2 (HAProxy's `send-proxy-v2`): the header a load
//! balancer sends first on each connection it opens to us, naming the client it
//! accepted the connection from. Only the binary version 2 is read; version 1 (a
//! text line) is not.
//!
//! ```text
//!   0..12   signature  \r\n\r\n\0\r\nQUIT\n
//!   12      version (high nibble, 2) and command (low: 0 LOCAL, 1 PROXY)
//!   13      family (high: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) and
//!           transport (low: 0 UNSPEC, 1 STREAM, 2 DGRAM)
//!   14..16  length of what follows, big-endian
//!   16..    INET: source 4, destination 4, source port 2, destination port 2
//!           INET6: 16, 16, 2, 2; then TLVs (not read)
//! ```
//!
//! `LOCAL` (the balancer's own health checks) and families other than TCP over
//! IPv4/IPv6 carry no client: the connection is the balancer's own. Pure
//! functions on bytes; reading them off a socket is the caller's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 octets every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Octets before the variable part.
pub const FIXED_LEN: usize = 16;
/// Longest variable part read: the addresses and room for the TLVs a balancer
/// adds (HAProxy's are well under this).
pub const MAX_REST: usize = 1024;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A client's connection: its address and port.
    Proxied(SocketAddr),
    /// The balancer's own connection (a health check), or a family with no IP
    /// address: the connection's own peer stands.
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol v2 signature")]
    Signature,
    #[error("PROXY protocol version {0}, not 2")]
    Version(u8),
    #[error("unknown PROXY protocol command {0}")]
    Command(u8),
    #[error("a PROXY header of {0} octets after the fixed part, over the {MAX_REST} read")]
    TooLong(usize),
    #[error("a PROXY header too short for its addresses")]
    Short,
}

/// Reads the fixed part: how many octets follow it. `fixed` must be the first
/// [`FIXED_LEN`] octets of the connection.
pub fn rest_len(fixed: &[u8; FIXED_LEN]) -> Result<usize, ProxyError> {
    if fixed[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    let version = fixed[12] >> 4;
    if version != 2 {
        return Err(ProxyError::Version(version));
    }
    let command = fixed[12] & 0x0f;
    if command > 1 {
        return Err(ProxyError::Command(command));
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_REST {
        return Err(ProxyError::TooLong(len));
    }
    Ok(len)
}

/// Reads a whole header: the fixed part (checked by [`rest_len`]) and the `rest`
/// of the length it gave.
pub fn parse(fixed: &[u8; FIXED_LEN], rest: &[u8]) -> Result<Header, ProxyError> {
    let len = rest_len(fixed)?;
    if rest.len() != len {
        return Err(ProxyError::Short);
    }
    if fixed[12] & 0x0f == 0 {
        return Ok(Header::Local);
    }
    let (family, transport) = (fixed[13] >> 4, fixed[13] & 0x0f);
    if transport != 1 {
        // Not TCP: no client address of ours to take.
        return Ok(Header::Local);
    }
    match family {
        1 => {
            let a: &[u8; 12] = rest
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Short)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Ok(Header::Proxied(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            let a: &[u8; 36] = rest
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Short)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            // An IPv4 client of a dual-stack balancer is the IPv4 address.
            let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(Header::Proxied(SocketAddr::new(ip, port)))
        }
        _ => Ok(Header::Local),
    }
}

/// A version 2 header for `client` talking to `server` (tests, the bench tools).
pub fn encode(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
        (c, s) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(header: &[u8]) -> ([u8; FIXED_LEN], Vec<u8>) {
        let mut fixed = [0u8; FIXED_LEN];
        fixed.copy_from_slice(&header[..FIXED_LEN]);
        (fixed, header[FIXED_LEN..].to_vec())
    }

    #[test]
    fn round_trips_ipv4_and_ipv6() {
        for (client, server) in [
            ("192.0.2.7:40000", "10.0.0.1:25"),
            ("[2001:db8::7]:40000", "[2001:db8::1]:587"),
        ] {
            let (client, server) = (client.parse().expect("c"), server.parse().expect("s"));
            let (fixed, rest) = split(&encode(client, server));
            assert_eq!(rest_len(&fixed), Ok(rest.len()));
            assert_eq!(parse(&fixed, &rest), Ok(Header::Proxied(client)));
        }
    }

    #[test]
    fn a_mapped_ipv4_client_is_its_ipv4_address() {
        let client: SocketAddr = "192.0.2.7:1".parse().expect("c");
        let server: SocketAddr = "[2001:db8::1]:25".parse().expect("s");
        let (fixed, rest) = split(&encode(client, server));
        assert_eq!(parse(&fixed, &rest), Ok(Header::Proxied(client)));
    }

    #[test]
    fn local_and_other_families_keep_the_peer() {
        let mut h = encode(
            "192.0.2.7:1".parse().expect("c"),
            "10.0.0.1:25".parse().expect("s"),
        );
        h[12] = 0x20; // LOCAL
        let (fixed, rest) = split(&h);
        assert_eq!(parse(&fixed, &rest), Ok(Header::Local));
        h[12] = 0x21;
        h[13] = 0x31; // AF_UNIX
        let (fixed, rest) = split(&h);
        assert_eq!(parse(&fixed, &rest), Ok(Header::Local));
        h[13] = 0x12; // UDP
        let (fixed, rest) = split(&h);
        assert_eq!(parse(&fixed, &rest), Ok(Header::Local));
    }

    #[test]
    fn junk_is_refused() {
        let good = encode(
            "192.0.2.7:1".parse().expect("c"),
            "10.0.0.1:25".parse().expect("s"),
        );
        let (mut fixed, rest) = split(&good);
        fixed[0] = b'E';
        assert_eq!(rest_len(&fixed), Err(ProxyError::Signature));
        let (mut fixed, _) = split(&good);
        fixed[12] = 0x11;
        assert_eq!(rest_len(&fixed), Err(ProxyError::Version(1)));
        fixed[12] = 0x22;
        assert_eq!(rest_len(&fixed), Err(ProxyError::Command(2)));
        let (mut fixed, _) = split(&good);
        fixed[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(rest_len(&fixed), Err(ProxyError::TooLong(2000)));
        // A length too short for the family's addresses.
        let (mut fixed, _) = split(&good);
        fixed[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&fixed, &rest[..4]), Err(ProxyError::Short));
        // The text of version 1 is not a version 2 header.
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 1 25\r\n";
        let mut fixed = [0u8; FIXED_LEN];
        fixed.copy_from_slice(&v1[..FIXED_LEN]);
        assert_eq!(rest_len(&fixed), Err(ProxyError::Signature));
    }
}
