//! X.509 parsing and X509-SVID verification on arbitrary DER: never panics, and nothing
//! verifies against an empty bundle.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use spiffe_core::{Bundle, TrustDomain, x509svid};

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let _ = x509svid::id_from_der(data);
    if let Ok(chain) = x509svid::split_der_certificates(data) {
        let empty = Bundle::new(TrustDomain::new("example.org").expect("td"));
        assert!(x509svid::verify_chain(&chain, &empty, now).is_err());
        // Self-anchored: the chain's own certificates as the bundle.
        let mut own = Bundle::new(TrustDomain::new("example.org").expect("td"));
        for c in &chain {
            own.add_x509_authority(c.clone());
        }
        let _ = x509svid::verify_chain(&chain, &own, now);
    }
    let _ = spiffe_core::X509Svid::parse_concatenated(data, data);
});
