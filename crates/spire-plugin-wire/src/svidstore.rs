//! The SVIDStore's messages.

use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{Code, PluginError, PluginResult, StoredSvid};
use spire_proto::spire::plugin::agent::svidstore::v1 as ssv1;

/// A stored SVID and its metadata as `PutX509SVIDRequest`.
pub fn put_request(svid: &StoredSvid, metadata: &[String]) -> ssv1::PutX509svidRequest {
    ssv1::PutX509svidRequest {
        svid: Some(ssv1::X509svid {
            spiffe_id: svid.spiffe_id.to_string(),
            cert_chain: svid.cert_chain.clone(),
            private_key: svid.private_key.clone(),
            bundle: svid.bundle.clone(),
            expires_at: svid.expires_at,
        }),
        metadata: metadata.to_vec(),
        federated_bundles: svid
            .federated_bundles
            .iter()
            .map(|(td, certs)| (td.id_string(), certs.concat()))
            .collect(),
    }
}

/// A `PutX509SVIDRequest` as the stored SVID and its metadata; a malformed request is
/// InvalidArgument.
pub fn from_put_request(r: ssv1::PutX509svidRequest) -> PluginResult<(StoredSvid, Vec<String>)> {
    let invalid = |m: String| PluginError::new(Code::InvalidArgument, m);
    let svid = r.svid.ok_or_else(|| invalid("missing SVID".into()))?;
    let spiffe_id =
        SpiffeId::parse(&svid.spiffe_id).map_err(|e| invalid(format!("invalid SPIFFE ID: {e}")))?;
    let mut federated_bundles = Vec::with_capacity(r.federated_bundles.len());
    for (td, blob) in r.federated_bundles {
        let trust_domain = TrustDomain::from_name_or_id(&td)
            .map_err(|e| invalid(format!("invalid federated trust domain {td:?}: {e}")))?;
        let certs = split_der(&blob)
            .ok_or_else(|| invalid(format!("malformed federated bundle for {td:?}")))?;
        federated_bundles.push((trust_domain, certs));
    }
    federated_bundles.sort_by(|a, b| a.0.name().cmp(b.0.name()));
    Ok((
        StoredSvid {
            spiffe_id,
            cert_chain: svid.cert_chain,
            private_key: svid.private_key,
            bundle: svid.bundle,
            expires_at: svid.expires_at,
            federated_bundles,
        },
        r.metadata,
    ))
}

/// Concatenated DER values (certificates) split apart; `None` when the blob is not a run
/// of whole DER TLVs.
fn split_der(mut b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let first = *b.get(1)?;
        let (header, len) = if first < 0x80 {
            (2usize, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | usize::from(*b.get(2 + i)?);
            }
            (2 + n, len)
        };
        let total = header.checked_add(len)?;
        out.push(b.get(..total)?.to_vec());
        b = &b[total..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_svid_survives_the_round_trip() {
        let cert = |n: u8| vec![0x30, 0x03, 0x02, 0x01, n];
        let svid = StoredSvid {
            spiffe_id: SpiffeId::parse("spiffe://example.org/db").unwrap(),
            cert_chain: vec![cert(1)],
            private_key: vec![9],
            bundle: vec![cert(2)],
            expires_at: 42,
            federated_bundles: vec![(
                TrustDomain::new("other.org").unwrap(),
                vec![cert(3), cert(4)],
            )],
        };
        let metadata = vec!["name:db".to_owned()];
        let request = put_request(&svid, &metadata);
        assert_eq!(
            request.federated_bundles["spiffe://other.org"],
            [cert(3), cert(4)].concat()
        );
        assert_eq!(from_put_request(request).unwrap(), (svid, metadata));
    }

    #[test]
    fn a_blob_that_is_not_whole_der_values_is_refused() {
        assert_eq!(split_der(&[0x30, 0x05, 0x01]), None);
        assert_eq!(split_der(&[]), Some(vec![]));
    }
}
