//! The JWT-SVID cache: one token per (SPIFFE ID, audience set), least recently used evicted
//! beyond `jwt_svid_cache_max_size`.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use spiffe_core::SpiffeId;

/// SPIRE's default `jwt_svid_cache_max_size`.
pub const DEFAULT_JWT_CACHE_MAX_SIZE: usize = 1000;

/// A JWT-SVID issued by the server.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedJwtSvid {
    /// The compact JWS.
    pub token: String,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `exp`.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for CachedJwtSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: never printed.
        f.debug_struct("CachedJwtSvid")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The cache key: the SPIFFE ID and the sorted audience, NUL separated (SPIRE hashes the
/// same bytes; the key never leaves the process, so it is kept as is).
pub fn cache_key(id: &SpiffeId, audience: &[String]) -> String {
    let mut aud: Vec<&str> = audience.iter().map(String::as_str).collect();
    aud.sort_unstable();
    let mut key = String::with_capacity(id.as_str().len() + 16);
    key.push_str(id.as_str());
    key.push('\0');
    for a in aud {
        key.push_str(a);
        key.push('\0');
    }
    key
}

/// The cache.
#[derive(Debug)]
pub struct JwtCache {
    max: usize,
    tick: u64,
    map: HashMap<String, (CachedJwtSvid, u64)>,
}

impl JwtCache {
    /// A cache of at most `max` tokens (0 means the default).
    pub fn new(max: usize) -> Self {
        Self {
            max: if max == 0 {
                DEFAULT_JWT_CACHE_MAX_SIZE
            } else {
                max
            },
            tick: 0,
            map: HashMap::new(),
        }
    }

    /// Number of tokens held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The token for `id` and `audience`, marking it recently used.
    pub fn get(&mut self, id: &SpiffeId, audience: &[String]) -> Option<CachedJwtSvid> {
        self.tick += 1;
        let tick = self.tick;
        self.map
            .get_mut(&cache_key(id, audience))
            .map(|(svid, used)| {
                *used = tick;
                svid.clone()
            })
    }

    /// Stores a token, evicting the least recently used one when full.
    pub fn set(&mut self, id: &SpiffeId, audience: &[String], svid: CachedJwtSvid) {
        self.tick += 1;
        let key = cache_key(id, audience);
        if !self.map.contains_key(&key)
            && self.map.len() >= self.max
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(key, (svid, self.tick));
    }

    /// Drops tokens signed by one of `key_ids` (tainted JWT authorities); returns how many
    /// were dropped per key ID.
    pub fn remove_signed_by(&mut self, key_ids: &[String]) -> BTreeMap<String, usize> {
        let mut removed = BTreeMap::new();
        self.map.retain(|_, (svid, _)| {
            let kid = spiffe_core::JwtSvid::parse_insecure(&svid.token)
                .ok()
                .and_then(|j| j.key_id().map(str::to_string));
            match kid {
                Some(k) if key_ids.contains(&k) => {
                    *removed.entry(k).or_insert(0) += 1;
                    false
                }
                _ => true,
            }
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn svid(n: u64) -> CachedJwtSvid {
        CachedJwtSvid {
            token: format!("t{n}"),
            issued_at: UNIX_EPOCH,
            expires_at: UNIX_EPOCH + Duration::from_secs(n),
        }
    }

    #[test]
    fn key_ignores_audience_order() {
        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        assert_eq!(
            cache_key(&id, &["b".into(), "a".into()]),
            cache_key(&id, &["a".into(), "b".into()])
        );
        assert_ne!(
            cache_key(&id, &["ab".into()]),
            cache_key(&id, &["a".into(), "b".into()])
        );
    }

    #[test]
    fn lru_eviction() {
        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let mut c = JwtCache::new(2);
        assert!(c.is_empty());
        c.set(&id, &["a".into()], svid(1));
        c.set(&id, &["b".into()], svid(2));
        assert_eq!(c.get(&id, &["a".into()]), Some(svid(1)));
        c.set(&id, &["c".into()], svid(3));
        assert_eq!(c.len(), 2);
        assert!(c.get(&id, &["b".into()]).is_none());
        assert!(c.get(&id, &["a".into()]).is_some());
        // Replacing an existing key evicts nothing.
        c.set(&id, &["a".into()], svid(4));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&id, &["a".into()]), Some(svid(4)));
        assert!(c.remove_signed_by(&["k".into()]).is_empty());
    }

    #[test]
    fn tokens_signed_by_tainted_keys_are_dropped() {
        let key = spiffe_core::PrivateKey::generate(spiffe_core::KeyType::EcP256).unwrap();
        let token = |kid: &str, sub: &str| {
            let mut claims = serde_json::Map::new();
            claims.insert("sub".into(), sub.into());
            claims.insert("aud".into(), "a".into());
            claims.insert("exp".into(), 4_000_000_000u64.into());
            CachedJwtSvid {
                token: spiffe_core::jwt::sign_raw(
                    &claims,
                    &key,
                    kid,
                    spiffe_core::JwsAlgorithm::ES256,
                )
                .unwrap(),
                issued_at: UNIX_EPOCH,
                expires_at: UNIX_EPOCH + Duration::from_secs(4_000_000_000),
            }
        };
        let w1 = SpiffeId::parse("spiffe://example.org/w1").unwrap();
        let w2 = SpiffeId::parse("spiffe://example.org/w2").unwrap();
        let mut c = JwtCache::new(0);
        c.set(&w1, &["a".into()], token("old", w1.as_str()));
        c.set(&w1, &["b".into()], token("old", w1.as_str()));
        c.set(&w2, &["a".into()], token("new", w2.as_str()));
        let removed = c.remove_signed_by(&["old".into(), "older".into()]);
        assert_eq!(removed.into_iter().collect::<Vec<_>>(), [("old".into(), 2)]);
        assert!(c.get(&w1, &["a".into()]).is_none());
        assert!(c.get(&w2, &["a".into()]).is_some());
    }
}
