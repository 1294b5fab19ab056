//! Go's `encoding/pem` (lenient decoding, 64-column encoding) and SPIRE's
//! `pemutil.ParseCertificates` error texts.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// Go's `base64.StdEncoding` decoder: padding required, trailing bits
/// ignored.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// A PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) kind: String,
    pub(crate) bytes: Vec<u8>,
}

fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (mut i, j) = match data.iter().position(|&b| b == b'\n') {
        None => (data.len(), data.len()),
        Some(i) => (i, i + 1),
    };
    if j > i && i > 0 && data[i - 1] == b'\r' {
        i -= 1;
    }
    let mut line = &data[..i];
    while let [rest @ .., b' ' | b'\t'] = line {
        line = rest;
    }
    (line, &data[j..])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `pem.Decode`: the next block and the rest of the input.
pub(crate) fn decode(data: &[u8]) -> Option<(Block, &[u8])> {
    const START: &[u8] = b"\n-----BEGIN ";
    const END: &[u8] = b"\n-----END ";
    const EOL: &[u8] = b"-----";
    let mut rest = data;
    loop {
        if rest.starts_with(&START[1..]) {
            rest = &rest[START.len() - 1..];
        } else if let Some(i) = find(rest, START) {
            rest = &rest[i + START.len()..];
        } else {
            return None;
        }
        let (type_line, after) = get_line(rest);
        rest = after;
        let Some(kind) = type_line.strip_suffix(EOL) else {
            continue;
        };
        let mut has_headers = false;
        let mut eof = false;
        loop {
            if rest.is_empty() {
                eof = true;
                break;
            }
            let (line, next) = get_line(rest);
            if !line.contains(&b':') {
                break;
            }
            has_headers = true;
            rest = next;
        }
        if eof {
            return None;
        }
        let (end_index, trailer_index) = if !has_headers && rest.starts_with(&END[1..]) {
            (0, END.len() - 1)
        } else {
            match find(rest, END) {
                Some(i) => (i, i + END.len()),
                None => continue,
            }
        };
        let end_trailer = &rest[trailer_index..];
        let trailer_len = kind.len() + EOL.len();
        if end_trailer.len() < trailer_len {
            continue;
        }
        let rest_of_end_line = &end_trailer[trailer_len..];
        let end_trailer = &end_trailer[..trailer_len];
        if !end_trailer.starts_with(kind) || !end_trailer.ends_with(EOL) {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }
        let b64: Vec<u8> = rest[..end_index]
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .collect();
        let Ok(bytes) = GO_STD.decode(&b64) else {
            continue;
        };
        let after_end = &rest[end_index + END.len() - 1..];
        let (_, rest_out) = get_line(after_end);
        return Some((
            Block {
                kind: String::from_utf8_lossy(kind).into_owned(),
                bytes,
            },
            rest_out,
        ));
    }
}

/// Go's `pem.Encode` of one block without headers.
pub(crate) fn encode(kind: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {kind}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {kind}-----\n"));
    out
}

/// Whether `der` is one well-formed X.509 certificate, with Go's error
/// text when it is not.
pub(crate) fn check_certificate(der: &[u8]) -> Result<(), String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err("x509: trailing data".to_owned()),
        Err(_) => Err("x509: malformed certificate".to_owned()),
    }
}

/// Go's `x509.ParseCertificates` on concatenated DER: one DER per
/// certificate.
pub(crate) fn split_certificates(mut der: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !der.is_empty() {
        match x509_parser::parse_x509_certificate(der) {
            Ok((rest, _)) => {
                let len = der.len() - rest.len();
                out.push(der[..len].to_vec());
                der = rest;
            }
            Err(_) => return Err("x509: malformed certificate".to_owned()),
        }
    }
    Ok(out)
}

/// SPIRE's `pemutil.ParseCertificates`: DER of every `CERTIFICATE` block.
pub(crate) fn parse_certificates(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut number = 0;
    while let Some((block, next)) = decode(rest) {
        number += 1;
        if block.kind != "CERTIFICATE" {
            return Err(format!(
                "expected block type \"CERTIFICATE\"; got {}",
                spire_gocompat::strconv::quote(&block.kind)
            ));
        }
        check_certificate(&block.bytes)
            .map_err(|e| format!("unable to parse \"CERTIFICATE\" PEM block {number}: {e}"))?;
        out.push(block.bytes);
        rest = next;
    }
    if out.is_empty() {
        return Err("no PEM blocks".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_leniency() {
        let der: Vec<u8> = (0u8..100).collect();
        let pem = encode("THING", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let input = format!("junk\n{pem}trailing");
        let (block, rest) = decode(input.as_bytes()).unwrap();
        assert_eq!(block.kind, "THING");
        assert_eq!(block.bytes, der);
        assert_eq!(rest, b"trailing");
        assert!(decode(b"no pem here").is_none());
        assert_eq!(parse_certificates(b"").unwrap_err(), "no PEM blocks");
        assert_eq!(
            parse_certificates(encode("PRIVATE KEY", &der).as_bytes()).unwrap_err(),
            "expected block type \"CERTIFICATE\"; got \"PRIVATE KEY\""
        );
        assert_eq!(
            parse_certificates(encode("CERTIFICATE", &der).as_bytes()).unwrap_err(),
            "unable to parse \"CERTIFICATE\" PEM block 1: x509: malformed certificate"
        );
    }
}
