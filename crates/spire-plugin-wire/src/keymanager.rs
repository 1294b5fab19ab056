//! KeyManager key types on the wire (the same enum values in the server and agent
//! packages), for the host's client and the SDK's server.

use spiffe_core::KeyType;
use spire_proto::spire::plugin::server::keymanager::v1 as kmv1;

/// The protocol's value for `t`.
pub fn key_type_to_proto(t: KeyType) -> i32 {
    let k = match t {
        KeyType::EcP256 => kmv1::KeyType::EcP256,
        KeyType::EcP384 => kmv1::KeyType::EcP384,
        KeyType::Rsa2048 => kmv1::KeyType::Rsa2048,
        KeyType::Rsa4096 => kmv1::KeyType::Rsa4096,
    };
    k as i32
}

/// The key type of a protocol value; `None` for unspecified or unknown values.
pub fn key_type_from_proto(v: i32) -> Option<KeyType> {
    match kmv1::KeyType::try_from(v).ok()? {
        kmv1::KeyType::EcP256 => Some(KeyType::EcP256),
        kmv1::KeyType::EcP384 => Some(KeyType::EcP384),
        kmv1::KeyType::Rsa2048 => Some(KeyType::Rsa2048),
        kmv1::KeyType::Rsa4096 => Some(KeyType::Rsa4096),
        kmv1::KeyType::UnspecifiedKeyType => None,
    }
}
