//! Binary protobuf encoding of Workload API and journal messages.

use prost::Message;

use spire_proto::journal::{Entries, JwtKeyEntry, Status, X509caEntry};
use spire_proto::workload::{X509svid, X509svidResponse};

#[test]
fn x509svid_response_with_federated_bundles_round_trips() {
    let resp = X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: "spiffe://example.org/web".into(),
            x509_svid: vec![0x30, 0x82, 0x01, 0x0a],
            x509_svid_key: vec![0x30, 0x81, 0x87],
            bundle: vec![0x30, 0x82, 0x02],
            hint: "internal".into(),
        }],
        crl: vec![vec![0x30, 0x00]],
        federated_bundles: [
            ("spiffe://a.org".to_owned(), vec![1, 2, 3]),
            ("spiffe://b.org".to_owned(), vec![4]),
        ]
        .into(),
    };
    let bytes = resp.encode_to_vec();
    let back = X509svidResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, resp);
    assert_eq!(back.federated_bundles["spiffe://a.org"], [1, 2, 3]);
}

#[test]
fn federated_bundles_map_entry_encoding() {
    // Field 3, length-delimited; the entry is {1: key, 2: value}.
    let resp = X509svidResponse {
        federated_bundles: [("spiffe://a".to_owned(), vec![1, 2])].into(),
        ..Default::default()
    };
    let mut expected = vec![0x1a, 16, 0x0a, 10];
    expected.extend_from_slice(b"spiffe://a");
    expected.extend_from_slice(&[0x12, 2, 1, 2]);
    assert_eq!(resp.encode_to_vec(), expected);
}

#[test]
fn journal_entries_round_trip() {
    let entries = Entries {
        x509_c_as: vec![X509caEntry {
            slot_id: "A".into(),
            issued_at: 1,
            certificate: vec![0x30],
            upstream_chain: vec![],
            status: Status::Active.into(),
            authority_id: "ab12".into(),
            not_after: 2,
            upstream_authority_id: String::new(),
        }],
        jwt_keys: vec![JwtKeyEntry {
            slot_id: "B".into(),
            issued_at: 1,
            not_after: 2,
            kid: "kid".into(),
            public_key: vec![0x30],
            status: Status::Prepared.into(),
            authority_id: "kid".into(),
        }],
    };
    let back = Entries::decode(entries.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, entries);
    assert_eq!(back.x509_c_as[0].status(), Status::Active);
    // Status 1 is unused on the wire: it decodes to an unknown value.
    assert!(Status::try_from(1).is_err());
}
