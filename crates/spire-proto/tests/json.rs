//! protojson as SPIRE's CLI prints it: proto field names, unpopulated fields
//! emitted, 64-bit integers as strings, bytes as base64, enums by name, unset
//! messages as null. The expected values for `Entry`, `ListEntriesRequest` and
//! the bare `FederationRelationship` were checked against Go's protojson
//! (google.golang.org/protobuf v1.36.10, `UseProtoNames` + `EmitUnpopulated`).

use serde_json::{Value, json};

use spire_proto::spire::api::server::entry::v1::{ListEntriesRequest, list_entries_request};
use spire_proto::spire::api::server::logger::v1::SetLogLevelRequest;
use spire_proto::spire::api::types::{
    Bundle, Entry, FederationRelationship, HttpsWebProfile, JwtKey, LogLevel, Selector, Spiffeid,
    X509Certificate, federation_relationship::BundleEndpointProfile,
};
use spire_proto::workload::{X509svid, X509svidResponse};

fn sample_entry() -> Entry {
    Entry {
        id: "entry-1".into(),
        spiffe_id: Some(Spiffeid {
            trust_domain: "example.org".into(),
            path: "/web".into(),
        }),
        selectors: vec![Selector {
            r#type: "unix".into(),
            value: "uid:1000".into(),
        }],
        x509_svid_ttl: 3600,
        revision_number: 7,
        created_at: 1_700_000_000,
        ..Default::default()
    }
}

#[test]
fn entry_uses_proto_names_and_emits_unpopulated_fields() {
    let value = serde_json::to_value(sample_entry()).unwrap();
    let expected = json!({
        "id": "entry-1",
        "spiffe_id": {"trust_domain": "example.org", "path": "/web"},
        "parent_id": null,
        "selectors": [{"type": "unix", "value": "uid:1000"}],
        "x509_svid_ttl": 3600,
        "federates_with": [],
        "admin": false,
        "downstream": false,
        "expires_at": "0",
        "dns_names": [],
        "revision_number": "7",
        "store_svid": false,
        "jwt_svid_ttl": 0,
        "hint": "",
        "created_at": "1700000000",
    });
    assert_eq!(value, expected);
}

#[test]
fn entry_json_round_trips() {
    let entry = sample_entry();
    let text = serde_json::to_string(&entry).unwrap();
    let back: Entry = serde_json::from_str(&text).unwrap();
    assert_eq!(back, entry);
}

#[test]
fn entry_accepts_json_names_and_sparse_input() {
    // protojson parsers accept lowerCamelCase names and missing fields too.
    let back: Entry = serde_json::from_value(json!({
        "id": "entry-1",
        "spiffeId": {"trustDomain": "example.org", "path": "/web"},
        "x509SvidTtl": 3600,
        "revision_number": "7",
        "created_at": 1700000000,
        "selectors": [{"type": "unix", "value": "uid:1000"}],
    }))
    .unwrap();
    assert_eq!(back, sample_entry());
}

#[test]
fn wrappers_enums_oneofs_and_bytes() {
    let req = ListEntriesRequest {
        filter: Some(list_entries_request::Filter {
            by_hint: Some("db".to_owned().into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&req).unwrap(),
        json!({
            "filter": {
                "by_spiffe_id": null,
                "by_parent_id": null,
                "by_selectors": null,
                "by_federates_with": null,
                "by_hint": "db",
                "by_downstream": null,
            },
            "output_mask": null,
            "page_size": 0,
            "page_token": "",
        })
    );

    let set = SetLogLevelRequest {
        new_level: LogLevel::Debug.into(),
    };
    assert_eq!(
        serde_json::to_value(set).unwrap(),
        json!({"new_level": "DEBUG"})
    );
    let unset = SetLogLevelRequest::default();
    assert_eq!(
        serde_json::to_value(unset).unwrap(),
        json!({"new_level": "UNSPECIFIED"})
    );

    let fr = FederationRelationship {
        trust_domain: "other.org".into(),
        bundle_endpoint_url: "https://other.org/bundle".into(),
        bundle_endpoint_profile: Some(BundleEndpointProfile::HttpsWeb(HttpsWebProfile {})),
        trust_domain_bundle: Some(Bundle {
            trust_domain: "other.org".into(),
            x509_authorities: vec![X509Certificate {
                asn1: vec![1, 2, 3],
                tainted: false,
            }],
            jwt_authorities: vec![JwtKey {
                public_key: vec![0xff],
                key_id: "k1".into(),
                expires_at: 5,
                tainted: true,
            }],
            refresh_hint: 300,
            sequence_number: 9,
        }),
    };
    let value = serde_json::to_value(&fr).unwrap();
    assert_eq!(
        value,
        json!({
            "trust_domain": "other.org",
            "bundle_endpoint_url": "https://other.org/bundle",
            "https_web": {},
            "trust_domain_bundle": {
                "trust_domain": "other.org",
                "x509_authorities": [{"asn1": "AQID", "tainted": false}],
                "jwt_authorities": [
                    {"public_key": "/w==", "key_id": "k1", "expires_at": "5", "tainted": true}
                ],
                "refresh_hint": "300",
                "sequence_number": "9",
            },
        })
    );
    // An unset oneof is left out, as Go's protojson does.
    let bare = FederationRelationship::default();
    let bare = serde_json::to_value(bare).unwrap();
    let keys: Vec<&String> = bare.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["bundle_endpoint_url", "trust_domain", "trust_domain_bundle"]
    );
    assert_eq!(
        serde_json::from_value::<FederationRelationship>(value).unwrap(),
        fr
    );
}

#[test]
fn workload_messages_serialize_too() {
    let resp = X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: "spiffe://example.org/web".into(),
            x509_svid: vec![1],
            ..Default::default()
        }],
        crl: vec![],
        federated_bundles: [("spiffe://other.org".to_owned(), vec![2, 3])].into(),
    };
    let value = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        value,
        json!({
            "svids": [{
                "spiffe_id": "spiffe://example.org/web",
                "x509_svid": "AQ==",
                "x509_svid_key": "",
                "bundle": "",
                "hint": "",
            }],
            "crl": [],
            "federated_bundles": {"spiffe://other.org": "AgM="},
        })
    );
    let back: X509svidResponse = serde_json::from_value(value).unwrap();
    assert_eq!(back, resp);
    // Not a protojson requirement, but keep the real message name in errors.
    let err = serde_json::from_value::<X509svidResponse>(Value::Bool(true)).unwrap_err();
    assert!(err.to_string().contains("struct X509SVIDResponse"), "{err}");
}
