//! SPIFFE bundle JSON and bundle maps: never panic, and whatever parses survives a
//! serialize/parse round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{Bundle, BundleSet, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::new("example.org").expect("td");
    if let Ok(bundle) = Bundle::parse_spiffe_json(td.clone(), data) {
        let json = bundle.to_spiffe_json();
        let again = Bundle::parse_spiffe_json(td.clone(), json.as_bytes()).expect("round trip");
        assert_eq!(again, bundle);
    }
    let _ = Bundle::parse_jwt_jwks(td.clone(), data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Bundle::parse_pem(td, text);
    }
    let _ = BundleSet::parse_bundle_map(data);
});
