//! Trust bundles: the SPIFFE bundle format (a JWKS with `x509-svid` and `jwt-svid` keys),
//! PEM bundles, and sets of bundles keyed by trust domain.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::id::{IdError, TrustDomain};
use crate::jwk::{Jwk, JwkError};
use crate::keys::PublicKey;
use crate::x509svid::{self, X509SvidError};

const X509_SVID_USE: &str = "x509-svid";
const JWT_SVID_USE: &str = "jwt-svid";

/// Why a bundle document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The document is not JSON of the expected shape.
    #[error("unable to parse JWKS: {0}")]
    Json(String),
    /// The `keys` member is absent (it must be present, even if empty).
    #[error("no authorities found")]
    MissingKeys,
    /// An `x509-svid` entry's certificate is unusable.
    #[error("x509-svid entry {index}: {reason}")]
    BadX509Authority {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `jwt-svid` entry has no `kid`.
    #[error("error adding authority {0} of JWKS: keyID cannot be empty")]
    MissingKeyId(usize),
    /// A `jwt-svid` entry's key is unusable.
    #[error("error adding authority {index} of JWKS: {source}")]
    BadJwtAuthority {
        /// Position in `keys`.
        index: usize,
        /// What is wrong with the key.
        source: JwkError,
    },
    /// Two `jwt-svid` entries share a `kid`.
    #[error("duplicate JWT authority key ID {0:?}")]
    DuplicateKeyId(String),
    /// PEM input could not be read.
    #[error(transparent)]
    Certificates(#[from] X509SvidError),
    /// A bundle map names a trust domain twice.
    #[error("duplicate trust domain {0:?} in bundle map")]
    DuplicateTrustDomain(String),
    /// A bundle map key is not a trust domain.
    #[error("invalid trust domain {name:?} in bundle map: {source}")]
    BadTrustDomain {
        /// The key as written.
        name: String,
        /// Why it is invalid.
        source: IdError,
    },
}

/// An X.509 authority (a CA certificate) of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Authority {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Whether SPIRE marked it tainted (not part of the SPIFFE bundle format).
    pub tainted: bool,
}

/// A JWT authority (a signing public key) of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    /// The `kid`.
    pub key_id: String,
    /// The public key.
    pub public_key: PublicKey,
    /// Seconds since the epoch after which SPIRE stops publishing the key; 0 for none.
    pub expires_at: i64,
    /// Whether SPIRE marked it tainted.
    pub tainted: bool,
}

/// A trust domain's bundle: X.509 and JWT authorities plus SPIFFE bundle metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    trust_domain: TrustDomain,
    /// CA certificates.
    pub x509_authorities: Vec<X509Authority>,
    /// JWT signing keys.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// `spiffe_refresh_hint`, seconds.
    pub refresh_hint: Option<i64>,
    /// `spiffe_sequence`.
    pub sequence_number: Option<u64>,
}

#[derive(Deserialize)]
struct BundleDocIn {
    keys: Option<Vec<serde_json::Value>>,
    spiffe_sequence: Option<u64>,
    spiffe_refresh_hint: Option<i64>,
}

#[derive(Serialize)]
struct BundleDocOut<'a> {
    keys: &'a [Jwk],
    #[serde(skip_serializing_if = "is_zero_u64")]
    spiffe_sequence: u64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    spiffe_refresh_hint: i64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Pretty-prints JSON with four-space indentation, as SPIRE's `json.MarshalIndent` does.
pub fn to_pretty_json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if value.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

impl Bundle {
    /// An empty bundle for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            refresh_hint: None,
            sequence_number: None,
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Parses the SPIFFE bundle format. Entries with an unknown `use` or `kty` are ignored,
    /// as the standard requires; `x509-svid` entries without `x5c` are ignored too.
    pub fn parse_spiffe_json(trust_domain: TrustDomain, data: &[u8]) -> Result<Self, BundleError> {
        let doc: BundleDocIn =
            serde_json::from_slice(data).map_err(|e| BundleError::Json(e.to_string()))?;
        let keys = doc.keys.ok_or(BundleError::MissingKeys)?;
        let mut bundle = Bundle::new(trust_domain);
        bundle.refresh_hint = doc.spiffe_refresh_hint;
        bundle.sequence_number = doc.spiffe_sequence;
        for (index, raw) in keys.into_iter().enumerate() {
            let jwk: Jwk = serde_json::from_value(raw)
                .map_err(|e| BundleError::Json(format!("key {index}: {e}")))?;
            match jwk.key_use.as_deref() {
                Some(X509_SVID_USE) => {
                    let certs = jwk
                        .certificates()
                        .map_err(|e| BundleError::BadX509Authority {
                            index,
                            reason: e.to_string(),
                        })?;
                    let Some(first) = certs.into_iter().next() else {
                        continue;
                    };
                    x509svid::split_der_certificates(&first).map_err(|e| {
                        BundleError::BadX509Authority {
                            index,
                            reason: e.to_string(),
                        }
                    })?;
                    bundle.add_x509_authority(first);
                }
                Some(JWT_SVID_USE) => {
                    if !jwk.has_known_key_type() {
                        continue;
                    }
                    let kid = jwk.kid.clone().filter(|k| !k.is_empty());
                    let kid = kid.ok_or(BundleError::MissingKeyId(index))?;
                    let public_key = jwk
                        .public_key()
                        .map_err(|source| BundleError::BadJwtAuthority { index, source })?;
                    if bundle.jwt_authorities.iter().any(|a| a.key_id == kid) {
                        return Err(BundleError::DuplicateKeyId(kid));
                    }
                    bundle.jwt_authorities.push(JwtAuthority {
                        key_id: kid,
                        public_key,
                        expires_at: 0,
                        tainted: false,
                    });
                }
                _ => {}
            }
        }
        Ok(bundle)
    }

    /// The JWKS entries of this bundle: X.509 authorities first, then JWT authorities.
    fn jwks(&self, with_x509: bool, with_jwt: bool, with_use: bool) -> Vec<Jwk> {
        let mut keys = Vec::new();
        if with_x509 {
            for authority in &self.x509_authorities {
                let public = x509_parser::parse_x509_certificate(&authority.der)
                    .ok()
                    .and_then(|(_, c)| PublicKey::from_parsed_spki(c.public_key()).ok());
                let mut jwk = public.map(|p| Jwk::from_public_key(&p)).unwrap_or_default();
                if with_use {
                    jwk.key_use = Some(X509_SVID_USE.into());
                }
                jwk.x5c = vec![STANDARD.encode(&authority.der)];
                keys.push(jwk);
            }
        }
        if with_jwt {
            for authority in &self.jwt_authorities {
                let mut jwk = Jwk::from_public_key(&authority.public_key);
                if with_use {
                    jwk.key_use = Some(JWT_SVID_USE.into());
                }
                jwk.kid = Some(authority.key_id.clone());
                keys.push(jwk);
            }
        }
        keys
    }

    /// Serializes in the SPIFFE bundle format exactly as SPIRE prints it (four-space indent,
    /// `spiffe_sequence` and `spiffe_refresh_hint` omitted when zero).
    pub fn to_spiffe_json(&self) -> String {
        let keys = self.jwks(true, true, true);
        to_pretty_json(&BundleDocOut {
            keys: &keys,
            spiffe_sequence: self.sequence_number.unwrap_or(0),
            spiffe_refresh_hint: self.refresh_hint.unwrap_or(0),
        })
    }

    /// The SPIFFE bundle format without indentation (go-spiffe's `Bundle.Marshal`, what
    /// SPIRE's bundle publishers write for the `spiffe` format).
    pub fn to_spiffe_json_compact(&self) -> String {
        let keys = self.jwks(true, true, true);
        serde_json::to_string(&BundleDocOut {
            keys: &keys,
            spiffe_sequence: self.sequence_number.unwrap_or(0),
            spiffe_refresh_hint: self.refresh_hint.unwrap_or(0),
        })
        .unwrap_or_default()
    }

    /// A plain JWKS of every authority (X.509 authorities with `x5c`, JWT authorities with
    /// `kid`), without `use` members or SPIFFE metadata: the bundle publishers' `jwks`
    /// format.
    pub fn to_jwks_json(&self) -> String {
        #[derive(Serialize)]
        struct Jwks {
            keys: Vec<Jwk>,
        }
        serde_json::to_string(&Jwks {
            keys: self.jwks(true, true, false),
        })
        .unwrap_or_default()
    }

    /// A standard JWKS of the JWT authorities only, without `use` members, indented as
    /// SPIRE's agent writes it (`bundleutil.Marshal` with `StandardJWKS`): what the Workload
    /// API's FetchJWTBundles and the Delegated Identity API's SubscribeToJWTBundles serve.
    pub fn to_jwt_jwks_json(&self) -> String {
        #[derive(Serialize)]
        struct Jwks {
            keys: Vec<Jwk>,
        }
        to_pretty_json(&Jwks {
            keys: self.jwks(false, true, false),
        })
    }

    /// Parses a standard JWKS of JWT authorities (FetchJWTBundles' form); keys need a `kid`.
    pub fn parse_jwt_jwks(trust_domain: TrustDomain, data: &[u8]) -> Result<Self, BundleError> {
        let doc: BundleDocIn =
            serde_json::from_slice(data).map_err(|e| BundleError::Json(e.to_string()))?;
        let keys = doc.keys.ok_or(BundleError::MissingKeys)?;
        let mut bundle = Bundle::new(trust_domain);
        for (index, raw) in keys.into_iter().enumerate() {
            let jwk: Jwk = serde_json::from_value(raw)
                .map_err(|e| BundleError::Json(format!("key {index}: {e}")))?;
            if !jwk.has_known_key_type() {
                continue;
            }
            let kid = jwk
                .kid
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or(BundleError::MissingKeyId(index))?;
            let public_key = jwk
                .public_key()
                .map_err(|source| BundleError::BadJwtAuthority { index, source })?;
            bundle.jwt_authorities.push(JwtAuthority {
                key_id: kid,
                public_key,
                expires_at: 0,
                tainted: false,
            });
        }
        Ok(bundle)
    }

    /// Parses a PEM bundle: every `CERTIFICATE` block becomes an X.509 authority.
    pub fn parse_pem(trust_domain: TrustDomain, text: &str) -> Result<Self, BundleError> {
        let mut bundle = Bundle::new(trust_domain);
        for der in x509svid::parse_pem_certificates(text)? {
            bundle.add_x509_authority(der);
        }
        Ok(bundle)
    }

    /// The X.509 authorities as PEM `CERTIFICATE` blocks.
    pub fn x509_authorities_pem(&self) -> String {
        let ders: Vec<Vec<u8>> = self
            .x509_authorities
            .iter()
            .map(|a| a.der.clone())
            .collect();
        x509svid::certificates_to_pem(&ders)
    }

    /// The X.509 authorities concatenated as DER (the Workload API's bundle form).
    pub fn x509_authorities_der(&self) -> Vec<u8> {
        self.x509_authorities
            .iter()
            .flat_map(|a| a.der.iter().copied())
            .collect()
    }

    /// Adds a CA certificate unless it is already present.
    pub fn add_x509_authority(&mut self, der: Vec<u8>) {
        if !self.x509_authorities.iter().any(|a| a.der == der) {
            self.x509_authorities.push(X509Authority {
                der,
                tainted: false,
            });
        }
    }

    /// Finds a JWT authority by key ID.
    pub fn jwt_authority(&self, key_id: &str) -> Option<&JwtAuthority> {
        self.jwt_authorities.iter().find(|a| a.key_id == key_id)
    }

    /// X.509 authorities as DER certificates.
    pub fn x509_ders(&self) -> Vec<Vec<u8>> {
        self.x509_authorities
            .iter()
            .map(|a| a.der.clone())
            .collect()
    }
}

/// Anything that can answer "which CA certificates does trust domain X trust".
pub trait X509BundleSource {
    /// The X.509 authorities (DER) of `td`, if known.
    fn x509_authorities(&self, td: &TrustDomain) -> Option<Vec<&[u8]>>;
}

/// Anything that can answer "which JWT keys does trust domain X use".
pub trait JwtBundleSource {
    /// Whether a bundle for `td` is known at all.
    fn has_jwt_bundle(&self, td: &TrustDomain) -> bool;
    /// The JWT authority `key_id` of `td`, if known.
    fn jwt_authority(&self, td: &TrustDomain, key_id: &str) -> Option<&PublicKey>;
}

impl X509BundleSource for Bundle {
    fn x509_authorities(&self, td: &TrustDomain) -> Option<Vec<&[u8]>> {
        (td == &self.trust_domain).then(|| {
            self.x509_authorities
                .iter()
                .map(|a| a.der.as_slice())
                .collect()
        })
    }
}

impl JwtBundleSource for Bundle {
    fn has_jwt_bundle(&self, td: &TrustDomain) -> bool {
        td == &self.trust_domain
    }
    fn jwt_authority(&self, td: &TrustDomain, key_id: &str) -> Option<&PublicKey> {
        if td != &self.trust_domain {
            return None;
        }
        Bundle::jwt_authority(self, key_id).map(|a| &a.public_key)
    }
}

/// Bundles of several trust domains. Bundles of different trust domains are never merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleSet {
    bundles: BTreeMap<TrustDomain, Bundle>,
}

impl BundleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the bundle of its trust domain.
    pub fn insert(&mut self, bundle: Bundle) {
        self.bundles.insert(bundle.trust_domain().clone(), bundle);
    }

    /// The bundle of `td`.
    pub fn get(&self, td: &TrustDomain) -> Option<&Bundle> {
        self.bundles.get(td)
    }

    /// Removes the bundle of `td`.
    pub fn remove(&mut self, td: &TrustDomain) -> Option<Bundle> {
        self.bundles.remove(td)
    }

    /// All bundles, ordered by trust domain.
    pub fn iter(&self) -> impl Iterator<Item = &Bundle> {
        self.bundles.values()
    }

    /// Number of bundles.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Parses a bundle map `{"trust_domains": {"<td>": <SPIFFE bundle>, ...}}`. Duplicate
    /// trust domains are rejected; per-bundle refresh hints are dropped.
    pub fn parse_bundle_map(data: &[u8]) -> Result<Self, BundleError> {
        #[derive(Deserialize)]
        struct MapDoc {
            trust_domains: DuplicateCheckedMap,
        }
        let doc: MapDoc = serde_json::from_slice(data).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix(DUPLICATE_PREFIX) {
                Some(rest) => BundleError::DuplicateTrustDomain(
                    rest.split(" at line").next().unwrap_or(rest).to_string(),
                ),
                None => BundleError::Json(msg),
            }
        })?;
        let mut set = BundleSet::new();
        for (name, value) in doc.trust_domains.0 {
            let td = TrustDomain::from_name_or_id(&name).map_err(|source| {
                BundleError::BadTrustDomain {
                    name: name.clone(),
                    source,
                }
            })?;
            let raw = serde_json::to_vec(&value).map_err(|e| BundleError::Json(e.to_string()))?;
            let mut bundle = Bundle::parse_spiffe_json(td, &raw)?;
            bundle.refresh_hint = None;
            set.insert(bundle);
        }
        Ok(set)
    }
}

const DUPLICATE_PREFIX: &str = "duplicate trust domain ";

struct DuplicateCheckedMap(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for DuplicateCheckedMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DuplicateCheckedMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of trust domain to bundle")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!("{DUPLICATE_PREFIX}{k}")));
                    }
                    out.push((k, v));
                }
                Ok(DuplicateCheckedMap(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl X509BundleSource for BundleSet {
    fn x509_authorities(&self, td: &TrustDomain) -> Option<Vec<&[u8]>> {
        self.bundles.get(td).and_then(|b| b.x509_authorities(td))
    }
}

impl JwtBundleSource for BundleSet {
    fn has_jwt_bundle(&self, td: &TrustDomain) -> bool {
        self.bundles.contains_key(td)
    }
    fn jwt_authority(&self, td: &TrustDomain, key_id: &str) -> Option<&PublicKey> {
        self.bundles
            .get(td)
            .and_then(|b| Bundle::jwt_authority(b, key_id))
            .map(|a| &a.public_key)
    }
}

#[cfg(test)]
mod tests;
