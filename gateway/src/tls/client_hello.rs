//! The ClientHello of a new TLS connection, read before anything else: its SNI chooses the Gateway
//! server (Envoy's `tls_inspector`). Bounded in bytes ([`MAX_CLIENT_HELLO`]); the caller bounds it
//! in time. The bytes read are given back to the stream, so the handshake or the passthrough
//! upstream sees the connection from its first byte.

use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

/// The largest ClientHello accepted: Envoy's `tls_inspector` limit (`TLS_MAX_CLIENT_HELLO`, one
/// TLS record of plaintext, 16 KiB; envoyproxy/envoy
/// `source/extensions/filters/listener/tls_inspector/tls_inspector.h`).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// Clients send their ClientHello in one record, two at most; many tiny records would only make
/// the gateway parse the same bytes again and again.
const MAX_RECORDS: usize = 16;

/// What the server selection needs from a ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The SNI host name, lower-cased; `None` when the client sent none.
    pub sni: Option<String>,
    /// The ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// The result of parsing the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete ClientHello.
    Hello(ClientHello),
    /// More bytes are needed: at least this many in all.
    Need(usize),
    /// Not a TLS ClientHello (plaintext, garbage, or a malformed hello).
    NotTls(&'static str),
}

/// Parses the TLS records at the start of a connection. A ClientHello may span several records.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut handshake = Vec::new();
    let mut at = 0;
    for _ in 0..MAX_RECORDS {
        let Some(header) = buf.get(at..at + 5) else { return Parsed::Need(at + 5) };
        if header[0] != RECORD_HANDSHAKE {
            return Parsed::NotTls("the first record is not a TLS handshake");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Parsed::NotTls("empty handshake record");
        }
        let Some(fragment) = buf.get(at + 5..at + 5 + len) else { return Parsed::Need(at + 5 + len) };
        handshake.extend_from_slice(fragment);
        at += 5 + len;
        if handshake.len() >= 4 {
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Parsed::NotTls("the first handshake message is not a ClientHello");
            }
            let body_len = usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]);
            if handshake.len() >= 4 + body_len {
                return match hello(&handshake[4..4 + body_len]) {
                    Some(h) => Parsed::Hello(h),
                    None => Parsed::NotTls("malformed ClientHello"),
                };
            }
        }
        if at >= MAX_CLIENT_HELLO {
            return Parsed::NotTls("ClientHello larger than the limit");
        }
    }
    Parsed::NotTls("ClientHello split into too many records")
}

/// A cursor over big-endian TLS vectors; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// The ClientHello body (RFC 8446 §4.1.2): version, random, session id, cipher suites,
/// compression methods, extensions.
fn hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.take(2 + 32)?;
    r.vec8()?;
    r.vec16()?;
    r.vec8()?;
    let mut out = ClientHello::default();
    if r.0.is_empty() {
        return Some(out); // no extensions at all (SSL 3 style)
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        match u16::try_from(kind).ok()? {
            EXT_SERVER_NAME => out.sni = server_name(data)?,
            EXT_ALPN => out.alpn = alpn(data)?,
            _ => {}
        }
    }
    Some(out)
}

/// RFC 6066 §3: the first `host_name` entry; `Some(None)` when there is none.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            // A host name is ASCII (IDNs travel as A-labels); anything else is malformed.
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            let host = String::from_utf8_lossy(name).to_ascii_lowercase();
            return Some(Some(host.trim_end_matches('.').to_string()));
        }
    }
    Some(None)
}

/// RFC 7301 §3.1: the protocol names.
fn alpn(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut list = Reader(Reader(data).vec16()?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        out.push(list.vec8()?.to_vec());
    }
    Some(out)
}

/// Why no ClientHello could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection closed or failed first.
    #[error("connection closed before a ClientHello: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a TLS ClientHello.
    #[error("not a TLS ClientHello: {0}")]
    NotTls(&'static str),
}

/// Reads the ClientHello from `stream` and gives the bytes back to it (`rewind`), so the next
/// reader sees the connection from its first byte.
pub async fn read(stream: &mut L4Stream) -> Result<ClientHello, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let outcome = loop {
        match parse(&buf) {
            Parsed::Hello(h) => break Ok(h),
            Parsed::NotTls(why) => break Err(ReadError::NotTls(why)),
            Parsed::Need(n) if n > MAX_CLIENT_HELLO + 5 => {
                break Err(ReadError::NotTls("ClientHello larger than the limit"))
            }
            Parsed::Need(n) => {
                let start = buf.len();
                buf.resize(n, 0);
                if let Err(e) = stream.read_exact(&mut buf[start..]).await {
                    buf.truncate(start);
                    break Err(e.into());
                }
            }
        }
    };
    stream.rewind(&buf);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record built the way clients build it.
    fn client_hello(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0u8];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name.as_bytes());
            let mut list = (entry.len() as u16).to_be_bytes().to_vec();
            list.extend_from_slice(&entry);
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
            exts.extend_from_slice(&list);
        }
        if !alpn.is_empty() {
            let mut names = Vec::new();
            for p in alpn {
                names.push(p.len() as u8);
                names.extend_from_slice(p.as_bytes());
            }
            let mut list = (names.len() as u16).to_be_bytes().to_vec();
            list.extend_from_slice(&names);
            exts.extend_from_slice(&16u16.to_be_bytes());
            exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
            exts.extend_from_slice(&list);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        records(&hs, usize::MAX)
    }

    /// Splits a handshake message into records of at most `max` bytes.
    fn records(hs: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(max.min(16384)) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn sni_and_alpn_are_read() {
        let hello = client_hello(Some("API.Example.com"), &["h2", "http/1.1"]);
        let Parsed::Hello(h) = parse(&hello) else { panic!("not parsed") };
        assert_eq!(h.sni.as_deref(), Some("api.example.com"));
        assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_hello_without_sni_has_none() {
        let Parsed::Hello(h) = parse(&client_hello(None, &[])) else { panic!("not parsed") };
        assert_eq!(h.sni, None);
    }

    #[test]
    fn every_prefix_asks_for_more_bytes() {
        let hello = client_hello(Some("a.example.com"), &["h2"]);
        for n in 0..hello.len() {
            match parse(&hello[..n]) {
                Parsed::Need(need) => assert!(need > n && need <= hello.len(), "prefix {n} asks for {need}"),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_hello_split_over_records_is_reassembled() {
        let one = client_hello(Some("split.example.com"), &[]);
        let hs = &one[5..];
        let split = records(hs, 10);
        let Parsed::Hello(h) = parse(&split) else { panic!("not parsed") };
        assert_eq!(h.sni.as_deref(), Some("split.example.com"));
    }

    #[test]
    fn a_hello_in_too_many_records_is_refused() {
        let one = client_hello(Some("tiny.example.com"), &[]);
        let split = records(&one[5..], 2);
        assert!(matches!(parse(&split), Parsed::NotTls(_)));
    }

    #[test]
    fn plaintext_http_is_not_tls() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::NotTls(_)));
    }

    #[test]
    fn truncated_vectors_are_malformed_not_panics() {
        let mut hello = client_hello(Some("x.example.com"), &["h2"]);
        // Claim a longer extension block than there is, keeping the record lengths consistent.
        let n = hello.len();
        hello[n - 20] = 0xff;
        assert!(matches!(parse(&hello), Parsed::NotTls(_) | Parsed::Hello(_)));
        for i in 0..n {
            let mut bad = hello.clone();
            bad[i] ^= 0x5a;
            let _ = parse(&bad);
        }
    }

    #[test]
    fn an_oversized_hello_is_refused() {
        let hs_len = MAX_CLIENT_HELLO + 100;
        let mut hs = vec![1, (hs_len >> 16) as u8, (hs_len >> 8) as u8, hs_len as u8];
        hs.resize(4 + hs_len, 0);
        let recs = records(&hs, 16384);
        assert!(matches!(parse(&recs), Parsed::NotTls(_)));
    }

    #[test]
    fn a_non_ascii_host_name_is_malformed() {
        let hello = client_hello(Some("bad\u{e9}.example.com"), &[]);
        assert!(matches!(parse(&hello), Parsed::NotTls(_)));
    }
}
