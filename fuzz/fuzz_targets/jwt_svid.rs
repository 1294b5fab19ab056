//! JWT-SVID parsing and validation against a fixed bundle: never panics, and nothing that
//! was not signed by the bundle's key validates.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use spiffe_core::bundle::JwtAuthority;
use spiffe_core::{Bundle, JwtSvid, KeyType, PrivateKey, TrustDomain};

fn bundle() -> &'static Bundle {
    static B: OnceLock<Bundle> = OnceLock::new();
    B.get_or_init(|| {
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let mut b = Bundle::new(TrustDomain::new("example.org").expect("td"));
        b.jwt_authorities.push(JwtAuthority {
            key_id: "kid".into(),
            public_key: key.public_key().clone(),
            expires_at: 0,
            tainted: false,
        });
        b
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = JwtSvid::parse_insecure(token);
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    // The bundle's private key is never used to sign fuzz input, so nothing may validate.
    assert!(JwtSvid::parse_and_validate(token, bundle(), &["aud"], now).is_err());
});
