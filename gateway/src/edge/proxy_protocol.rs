//! The PROXY protocol (v1 text and v2 binary, <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>)
//! that an L4 load balancer in front of the gateway prepends to each connection, so the client's
//! real address survives. Istio turns it on with MeshConfig
//! `defaultConfig.gatewayTopology.proxyProtocol: {}`; then, as with Envoy's `proxy_protocol`
//! listener filter, a connection without a valid header is closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a connection has to send its header (Envoy's listener filter timeout).
pub const TIMEOUT: Duration = Duration::from_secs(15);

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
const V1_MAX: usize = 107;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The original client and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// Where it connected.
        destination: SocketAddr,
    },
    /// The balancer's own connection (v2 LOCAL, v1 UNKNOWN): keep the socket's addresses.
    Local,
}

/// The result of parsing the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A header of this many bytes.
    Done(Header, usize),
    /// More bytes are needed.
    Incomplete,
    /// Not a valid header.
    Invalid(&'static str),
}

/// Parses a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.starts_with(V2_SIGNATURE) {
        v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        v1(buf)
    } else if V2_SIGNATURE.starts_with(buf) || b"PROXY ".starts_with(buf) {
        Parsed::Incomplete
    } else {
        Parsed::Invalid("no PROXY protocol header")
    }
}

fn v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("v1 header longer than 107 bytes")
        } else {
            Parsed::Incomplete
        };
    };
    if end + 2 > V1_MAX {
        return Parsed::Invalid("v1 header longer than 107 bytes");
    }
    let Ok(line) = std::str::from_utf8(&buf[..end]) else { return Parsed::Invalid("v1 header is not text") };
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header::Local,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (Ok(src), Ok(dst)) = (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) else {
                return Parsed::Invalid("v1 address is not an IP address");
            };
            if (*family == "TCP4") != (src.is_ipv4() && dst.is_ipv4()) || src.is_ipv4() != dst.is_ipv4() {
                return Parsed::Invalid("v1 addresses do not match the family");
            }
            let (Some(sport), Some(dport)) = (port(sport), port(dport)) else {
                return Parsed::Invalid("v1 port is not a port number");
            };
            Header::Proxied { source: SocketAddr::new(src, sport), destination: SocketAddr::new(dst, dport) }
        }
        _ => return Parsed::Invalid("v1 header is malformed"),
    };
    Parsed::Done(header, end + 2)
}

/// A decimal port without a sign or leading zeros, as the specification requires.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("v2 version is not 2");
    }
    let total = 16 + len;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let body = &buf[16..total];
    match ver_cmd & 0x0f {
        0 => return Parsed::Done(Header::Local, total),
        1 => {}
        _ => return Parsed::Invalid("v2 command is neither LOCAL nor PROXY"),
    }
    let header = match family {
        // TCP over IPv4: 4 + 4 + 2 + 2 bytes.
        0x11 if body.len() >= 12 => {
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]));
            let p = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Header::Proxied { source: SocketAddr::new(ip(0), p(8)), destination: SocketAddr::new(ip(4), p(10)) }
        }
        // TCP over IPv6: 16 + 16 + 2 + 2 bytes.
        0x21 if body.len() >= 36 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let p = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Header::Proxied { source: SocketAddr::new(ip(0), p(32)), destination: SocketAddr::new(ip(16), p(34)) }
        }
        // UNSPEC: the balancer's own; unknown families are accepted as such by the spec.
        0x00 => Header::Local,
        0x11 | 0x21 => return Parsed::Invalid("v2 address block too short"),
        _ => return Parsed::Invalid("v2 family is not TCP over IPv4 or IPv6"),
    };
    Parsed::Done(header, total)
}

/// Reads and removes the header from `tcp` (peeking, then consuming exactly its bytes), within
/// [`TIMEOUT`]. `Err` says why the connection must be closed.
pub async fn read(tcp: &mut TcpStream) -> Result<Header, String> {
    let work = async {
        let mut buf = vec![0u8; 16 + 65535];
        loop {
            let n = tcp.peek(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before a PROXY protocol header".to_string());
            }
            match parse(&buf[..n]) {
                Parsed::Done(header, used) => {
                    tcp.read_exact(&mut buf[..used]).await.map_err(|e| e.to_string())?;
                    return Ok(header);
                }
                Parsed::Invalid(why) => return Err(why.to_string()),
                // The rest has not arrived yet: wait a little rather than spin on `peek`.
                Parsed::Incomplete => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(TIMEOUT, work).await.map_err(|_| "no PROXY protocol header within 15 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn v1_headers_give_the_client_address() {
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\nGET /";
        assert_eq!(
            parse(line),
            Parsed::Done(Header::Proxied { source: sa("203.0.113.9:51234"), destination: sa("10.0.0.1:443") }, 43)
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\n";
        assert!(matches!(parse(v6), Parsed::Done(Header::Proxied { .. }, 44)));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Done(Header::Local, 15));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Parsed::Incomplete);
        assert_eq!(parse(b"PRO"), Parsed::Incomplete);
    }

    #[test]
    fn malformed_v1_headers_are_refused() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 80\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 80\r\n",
            b"PROXY TCP4 a.b.c.d 5.6.7.8 1 80\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"\r\n\r\n"), Parsed::Incomplete, "the start of a v2 signature");
        assert!(matches!(parse(&[b'X'; 200]), Parsed::Invalid(_)));
        let mut long = b"PROXY ".to_vec();
        long.extend([b'1'; 120]);
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
    }

    fn v2_header(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x20 | cmd, family]);
        h.extend(u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
        h.extend(body);
        h
    }

    #[test]
    fn v2_headers_give_the_client_address() {
        let body = [203, 0, 113, 9, 10, 0, 0, 1, 0xc8, 0x22, 0x01, 0xbb];
        let h = v2_header(1, 0x11, &body);
        assert_eq!(
            parse(&h),
            Parsed::Done(Header::Proxied { source: sa("203.0.113.9:51234"), destination: sa("10.0.0.1:443") }, 28)
        );
        assert_eq!(parse(&h[..20]), Parsed::Incomplete);
        assert_eq!(parse(&v2_header(0, 0x00, &[])), Parsed::Done(Header::Local, 16));
        // TLVs after the addresses are skipped with the length.
        let mut with_tlv = body.to_vec();
        with_tlv.extend([0x04, 0x00, 0x01, 0xff]);
        assert!(matches!(parse(&v2_header(1, 0x11, &with_tlv)), Parsed::Done(_, 32)));
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        assert!(matches!(parse(&v2_header(1, 0x11, &[1, 2, 3])), Parsed::Invalid(_)));
        assert!(matches!(parse(&v2_header(5, 0x11, &[0; 12])), Parsed::Invalid(_)));
        assert!(matches!(parse(&v2_header(1, 0x31, &[0; 216])), Parsed::Invalid(_)));
        let mut bad_version = v2_header(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert!(matches!(parse(&bad_version), Parsed::Invalid(_)));
    }
}
