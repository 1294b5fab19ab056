//! Makes HTTP/2 requests from gRPC C-core clients (grpcio for Python, Ruby, C++) acceptable
//! to h2 on UNIX sockets.
//!
//! C-core sends the percent-encoded socket path as `:authority` (`tmp%2Fspire%2Fapi.sock`);
//! the `http` crate rejects a `%` in a host, so h2 resets every such request with
//! `PROTOCOL_ERROR` before tonic sees it. Go's and Rust's gRPC clients send `localhost`.
//!
//! [`AuthorityFixer`] sits between the socket and h2 on the client-to-server direction: it
//! passes frames through unchanged except header blocks, which it decodes with its own HPACK
//! decoder (mirroring the client's encoder), rewrites an invalid `:authority` to
//! `localhost`, and re-encodes with its own encoder (mirrored by h2's decoder). Header
//! blocks split over CONTINUATION frames are joined and re-split.

use hpack::{Decoder, Encoder};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const MAX_FRAME: usize = 16_384;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Client-to-server HTTP/2 byte stream rewriter.
pub struct AuthorityFixer {
    preface_done: bool,
    inbound: Vec<u8>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    /// A HEADERS frame waiting for its CONTINUATIONs.
    pending: Option<Pending>,
}

/// A HEADERS frame waiting for its CONTINUATIONs: stream, flags, priority, block.
type Pending = (u32, u8, Option<[u8; 5]>, Vec<u8>);

impl std::fmt::Debug for AuthorityFixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityFixer")
            .field("buffered", &self.inbound.len())
            .finish_non_exhaustive()
    }
}

impl Default for AuthorityFixer {
    fn default() -> Self {
        Self {
            preface_done: false,
            inbound: Vec::new(),
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            pending: None,
        }
    }
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Whether h2 would reject this `:authority` value.
fn invalid_authority(v: &[u8]) -> bool {
    v.iter()
        .any(|b| *b == b'%' || *b == b'/' || !b.is_ascii_graphic())
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

impl AuthorityFixer {
    /// Feeds bytes read from the client; appends what h2 should read to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        self.inbound.extend_from_slice(data);
        let mut pos = 0;
        if !self.preface_done {
            if self.inbound.len() < PREFACE_LEN {
                return Ok(());
            }
            out.extend_from_slice(&self.inbound[..PREFACE_LEN]);
            pos = PREFACE_LEN;
            self.preface_done = true;
        }
        loop {
            let rest = &self.inbound[pos..];
            if rest.len() < FRAME_HEADER_LEN {
                break;
            }
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            if rest.len() < FRAME_HEADER_LEN + len {
                break;
            }
            let kind = rest[3];
            let flags = rest[4];
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
            let payload = rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
            let frame_len = FRAME_HEADER_LEN + len;
            match kind {
                HEADERS => self.headers(stream, flags, &payload, out)?,
                CONTINUATION => self.continuation(stream, flags, &payload, out)?,
                _ => out.extend_from_slice(&self.inbound[pos..pos + frame_len]),
            }
            pos += frame_len;
        }
        self.inbound.drain(..pos);
        Ok(())
    }

    fn headers(
        &mut self,
        stream: u32,
        flags: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let mut p = payload;
        let mut pad = 0usize;
        if flags & PADDED != 0 {
            let (&n, r) = p.split_first().ok_or_else(|| bad("short HEADERS"))?;
            pad = usize::from(n);
            p = r;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            if p.len() < 5 {
                return Err(bad("short HEADERS"));
            }
            let mut pr = [0u8; 5];
            pr.copy_from_slice(&p[..5]);
            priority = Some(pr);
            p = &p[5..];
        }
        if p.len() < pad {
            return Err(bad("bad HEADERS padding"));
        }
        let block = p[..p.len() - pad].to_vec();
        if flags & END_HEADERS != 0 {
            self.emit(stream, flags, priority, &block, out)
        } else {
            self.pending = Some((stream, flags, priority, block));
            Ok(())
        }
    }

    fn continuation(
        &mut self,
        stream: u32,
        flags: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let Some((s, f, pr, mut block)) = self.pending.take() else {
            return Err(bad("CONTINUATION without HEADERS"));
        };
        if s != stream {
            return Err(bad("CONTINUATION on another stream"));
        }
        block.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            self.emit(s, f, pr, &block, out)
        } else {
            self.pending = Some((s, f, pr, block));
            Ok(())
        }
    }

    fn emit(
        &mut self,
        stream: u32,
        flags: u8,
        priority: Option<[u8; 5]>,
        block: &[u8],
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let mut headers = self
            .decoder
            .decode(block)
            .map_err(|e| bad(&format!("HPACK: {e:?}")))?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" && invalid_authority(value) {
                *value = b"localhost".to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let pr_len = if priority.is_some() { 5 } else { 0 };
        let first = encoded.len().min(MAX_FRAME - pr_len);
        let mut first_flags = flags & (END_STREAM | PRIORITY);
        if first == encoded.len() {
            first_flags |= END_HEADERS;
        }
        frame_header(out, first + pr_len, HEADERS, first_flags, stream);
        if let Some(pr) = priority {
            out.extend_from_slice(&pr);
        }
        out.extend_from_slice(&encoded[..first]);
        let mut rest = &encoded[first..];
        while !rest.is_empty() {
            let n = rest.len().min(MAX_FRAME);
            let f = if n == rest.len() { END_HEADERS } else { 0 };
            frame_header(out, n, CONTINUATION, f, stream);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frames(enc: &mut Encoder<'static>, authority: &str, split: bool) -> Vec<u8> {
        let block = enc.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (&b":authority"[..], authority.as_bytes()),
            (&b":path"[..], &b"/SpiffeWorkloadAPI/FetchX509SVID"[..]),
        ]);
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame_header(&mut out, 0, 0x4, 0, 0); // SETTINGS
        if split {
            let (a, b) = block.split_at(block.len() / 2);
            frame_header(&mut out, a.len(), HEADERS, 0, 1);
            out.extend_from_slice(a);
            frame_header(&mut out, b.len(), CONTINUATION, END_HEADERS, 1);
            out.extend_from_slice(b);
        } else {
            frame_header(&mut out, block.len(), HEADERS, END_HEADERS, 1);
            out.extend_from_slice(&block);
        }
        out
    }

    fn decode_all(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut dec = Decoder::new();
        let mut pos = PREFACE_LEN;
        let mut out = Vec::new();
        let mut block = Vec::new();
        while pos < bytes.len() {
            let len = (usize::from(bytes[pos]) << 16)
                | (usize::from(bytes[pos + 1]) << 8)
                | usize::from(bytes[pos + 2]);
            let kind = bytes[pos + 3];
            let flags = bytes[pos + 4];
            let payload = &bytes[pos + 9..pos + 9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    out.push(dec.decode(&block).unwrap());
                    block.clear();
                }
            }
            pos += 9 + len;
        }
        out
    }

    #[test]
    fn rewrites_percent_encoded_authority_byte_by_byte() {
        let mut enc = Encoder::new();
        let mut input = client_frames(&mut enc, "tmp%2Fspire%2Fapi.sock", false);
        input.extend(
            client_frames(&mut enc, "tmp%2Fspire%2Fapi.sock", true)[PREFACE_LEN..].to_vec(),
        );
        let mut fixer = AuthorityFixer::default();
        let mut out = Vec::new();
        for b in &input {
            fixer.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 2);
        for b in blocks {
            let auth = b.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(auth.1, b"localhost");
            assert!(
                b.iter()
                    .any(|(n, v)| n == b":path" && v == b"/SpiffeWorkloadAPI/FetchX509SVID")
            );
        }
    }

    #[test]
    fn leaves_valid_authority_alone() {
        let mut enc = Encoder::new();
        let input = client_frames(&mut enc, "localhost", false);
        let mut fixer = AuthorityFixer::default();
        let mut out = Vec::new();
        fixer.feed(&input, &mut out).unwrap();
        let blocks = decode_all(&out);
        assert!(
            blocks[0]
                .iter()
                .any(|(n, v)| n == b":authority" && v == b"localhost")
        );
        assert!(invalid_authority(b"a%2F"));
        assert!(!invalid_authority(b"localhost:80"));
        let mut f = AuthorityFixer::default();
        let mut o = Vec::new();
        let mut bad_input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame_header(&mut bad_input, 1, CONTINUATION, END_HEADERS, 1);
        bad_input.push(0);
        assert!(f.feed(&bad_input, &mut o).is_err());
    }
}
