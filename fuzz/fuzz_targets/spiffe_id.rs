//! SPIFFE ID and trust domain parsing: never panics, and whatever parses formats back to
//! the same string and parses again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(id) = SpiffeId::parse(s) {
        assert_eq!(id.as_str(), s);
        let again = SpiffeId::parse(&id.to_string()).expect("formatted ID must parse");
        assert_eq!(again, id);
        let td = id.trust_domain();
        assert_eq!(td.id_with_path(id.path()).expect("rebuild"), id);
    }
    if let Ok(td) = TrustDomain::new(s) {
        assert_eq!(td.name(), s);
        assert_eq!(SpiffeId::parse(&td.id_string()).expect("td id").trust_domain(), td);
    }
    let _ = TrustDomain::from_name_or_id(s);
});
