//! The server's certificate authority: the active X.509 CA and JWT signing key, swapped by
//! the CA manager on rotation and read lock-free on every signing request.

pub mod compose;
pub mod journal;
pub mod manager;
pub mod rotation;
pub mod slots;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use spiffe_core::jwt::{self, JwtSvidClaims};
use spiffe_core::{JwsAlgorithm, PublicKey, SpiffeId, TrustDomain};
use spire_pki::{CaRequest, Subject, SvidRequest, SvidTemplate, X509Authority};

use compose::{Composers, SvidKind};
use spire_plugin::Signer;

/// Why the CA could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// No X.509 CA is active yet.
    #[error("X509 CA is not available for signing")]
    NoX509Ca,
    /// No JWT key is active yet.
    #[error("JWT key is not available for signing")]
    NoJwtKey,
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Certificate assembly or signing failed.
    #[error(transparent)]
    Pki(#[from] spire_pki::PkiError),
    /// JWT signing failed.
    #[error(transparent)]
    Jwt(#[from] spiffe_core::JwtSvidError),
    /// A CredentialComposer failed.
    #[error("credential composer: {0}")]
    Composer(#[from] spire_plugin::PluginError),
}

/// An X.509 CA: its authority (certificate + signer) and, when an UpstreamAuthority signed
/// it, the chain from it up to (not including) the upstream root.
#[derive(Debug)]
pub struct X509Ca {
    /// Certificate and signer.
    pub authority: X509Authority,
    /// Upstream chain, CA certificate first; empty when self-signed.
    pub upstream_chain: Vec<Vec<u8>>,
}

/// A JWT signing key.
#[derive(Debug)]
pub struct JwtKey {
    /// The key.
    pub signer: Arc<dyn Signer>,
    /// `kid`.
    pub kid: String,
    /// When it stops being used, and stops being published.
    pub not_after: SystemTime,
}

impl JwtKey {
    /// The JWS algorithm SPIRE uses for this key type.
    pub fn algorithm(&self) -> JwsAlgorithm {
        use spiffe_core::keys::{Curve, PublicKeyKind};
        match self.signer.public_key().kind() {
            PublicKeyKind::Ec(Curve::P384) => JwsAlgorithm::ES384,
            PublicKeyKind::Ec(Curve::P521) => JwsAlgorithm::ES512,
            PublicKeyKind::Ec(_) => JwsAlgorithm::ES256,
            PublicKeyKind::Rsa { .. } => JwsAlgorithm::RS256,
        }
    }
}

/// Lifetimes and subjects of what the CA issues.
/// An X509-SVID as the CA issued it: the chain (leaf first, then our upstream chain) and
/// what the CA chose for the leaf, so handlers never re-parse what they were just handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSvid {
    /// Leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's serial number.
    pub serial: u128,
    /// The leaf's `notAfter`, in seconds since the epoch.
    pub not_after: i64,
}

#[derive(Debug, Clone)]
pub struct CaSettings {
    /// Default X509-SVID TTL.
    pub x509_svid_ttl: Duration,
    /// Default JWT-SVID TTL.
    pub jwt_svid_ttl: Duration,
    /// Agent SVID TTL.
    pub agent_ttl: Duration,
    /// Subject of workload X509-SVIDs.
    pub svid_subject: Subject,
    /// `iss` of JWT-SVIDs, if any.
    pub jwt_issuer: Option<String>,
}

/// The signing side of the CA.
#[derive(Debug)]
pub struct Ca {
    trust_domain: TrustDomain,
    settings: CaSettings,
    x509: ArcSwapOption<X509Ca>,
    jwt: ArcSwapOption<JwtKey>,
    composers: Composers,
    metrics: spire_telemetry::Metrics,
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Ca {
    /// A CA with nothing active yet; `composers` (CredentialComposer plugins) shape what
    /// it issues.
    pub fn new(trust_domain: TrustDomain, settings: CaSettings, composers: Composers) -> Self {
        Self {
            trust_domain,
            settings,
            x509: ArcSwapOption::empty(),
            jwt: ArcSwapOption::empty(),
            composers,
            metrics: spire_telemetry::Metrics::disabled(),
        }
    }

    /// Counts signatures as SPIRE's `server_ca_sign_*` counters.
    pub fn with_metrics(mut self, metrics: spire_telemetry::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Telemetry.
    pub fn metrics(&self) -> &spire_telemetry::Metrics {
        &self.metrics
    }

    /// The CredentialComposers.
    pub fn composers(&self) -> &Composers {
        &self.composers
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Issuance settings.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// Makes `ca` the active X.509 CA.
    pub fn set_x509_ca(&self, ca: Arc<X509Ca>) {
        self.x509.store(Some(ca));
    }

    /// Makes `key` the active JWT key.
    pub fn set_jwt_key(&self, key: Arc<JwtKey>) {
        self.jwt.store(Some(key));
    }

    /// The active X.509 CA.
    pub fn x509_ca(&self) -> Option<Arc<X509Ca>> {
        self.x509.load_full()
    }

    /// The active JWT key.
    pub fn jwt_key(&self) -> Option<Arc<JwtKey>> {
        self.jwt.load_full()
    }

    #[allow(clippy::too_many_arguments)]
    async fn sign_svid(
        &self,
        kind: SvidKind<'_>,
        id: &SpiffeId,
        public_key: &PublicKey,
        dns_names: &[String],
        subject: Option<&Subject>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedSvid, CaError> {
        let ca = self.x509_ca().ok_or(CaError::NoX509Ca)?;
        if !id.is_member_of(&self.trust_domain) {
            return Err(CaError::Invalid(format!(
                "invalid X509-SVID ID: {:?} is not a member of trust domain {:?}",
                id.as_str(),
                self.trust_domain.name()
            )));
        }
        let request = SvidRequest {
            id,
            public_key,
            dns_names,
            subject,
            ttl,
            now,
        };
        let remote = ca.authority.is_remote();
        let leaf = if self.composers.is_empty() && !remote {
            ca.authority.issue_x509_svid(&request)?
        } else {
            let mut subject = subject.cloned().unwrap_or_else(Subject::default_svid);
            if let Some(first) = dns_names.first() {
                subject.common_name = first.clone();
            }
            let (subject, dns_names, extensions) = if self.composers.is_empty() {
                (subject, dns_names.to_vec(), vec![])
            } else {
                compose::x509_svid(&self.composers, kind, &subject, dns_names).await?
            };
            let template = SvidTemplate {
                id,
                public_key,
                subject: &subject,
                dns_names: &dns_names,
                extensions: &extensions,
                ttl,
                now,
            };
            if remote {
                ca.authority
                    .issue_x509_svid_template_async(&template)
                    .await?
            } else {
                ca.authority.issue_x509_svid_template(&template)?
            }
        };
        self.metrics
            .incr_counter(&["server_ca", "sign", "x509_svid"], 1.0, &[]);
        let mut chain = Vec::with_capacity(1 + ca.upstream_chain.len());
        chain.push(leaf.der);
        chain.extend(ca.upstream_chain.iter().cloned());
        Ok(IssuedSvid {
            chain,
            serial: leaf.serial,
            not_after: leaf.not_after,
        })
    }

    /// A workload X509-SVID; `ttl` of zero means the default.
    pub async fn sign_workload_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &PublicKey,
        dns_names: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedSvid, CaError> {
        let ttl = if ttl.is_zero() {
            self.settings.x509_svid_ttl
        } else {
            ttl
        };
        self.sign_svid(
            SvidKind::Workload(id, public_key),
            id,
            public_key,
            dns_names,
            Some(&self.settings.svid_subject),
            ttl,
            now,
        )
        .await
    }

    /// An agent X509-SVID (agent TTL, SPIRE's SVID subject).
    pub async fn sign_agent_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &PublicKey,
        now: SystemTime,
    ) -> Result<IssuedSvid, CaError> {
        let kind = SvidKind::Agent(id, public_key);
        self.sign_svid(
            kind,
            id,
            public_key,
            &[],
            None,
            self.settings.agent_ttl,
            now,
        )
        .await
    }

    /// The server's own X509-SVID, `spiffe://<td>/spire/server`.
    pub async fn sign_server_x509_svid(
        &self,
        public_key: &PublicKey,
        now: SystemTime,
    ) -> Result<IssuedSvid, CaError> {
        let id = self
            .trust_domain
            .id_with_path("/spire/server")
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        let ttl = self.settings.x509_svid_ttl;
        self.sign_svid(SvidKind::Server, &id, public_key, &[], None, ttl, now)
            .await
    }

    /// An intermediate CA for a downstream server: the parent's subject with
    /// `OU=DOWNSTREAM-<n>`. Returns the chain (new CA first, then our upstream chain).
    pub async fn sign_downstream_x509_ca(
        &self,
        public_key: &PublicKey,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<Vec<u8>>, CaError> {
        let ca = self.x509_ca().ok_or(CaError::NoX509Ca)?;
        // SPIRE copies the subject of the first certificate of the CA chain and adds
        // OU=DOWNSTREAM-<length of that chain>.
        let (parent, chain_len) = match ca.upstream_chain.first() {
            Some(first) => (first.as_slice(), ca.upstream_chain.len()),
            None => (ca.authority.certificate(), 1),
        };
        let mut subject = spire_pki::subject_of(parent)?;
        subject.organizational_unit = vec![format!("DOWNSTREAM-{chain_len}")];
        let (subject, extensions) = if self.composers.is_empty() {
            (subject, vec![])
        } else {
            compose::x509_ca(&self.composers, &subject).await?
        };
        let cert = ca.authority.sign_x509_ca(&CaRequest {
            public_key,
            subject,
            extensions,
            ttl,
            now,
        })?;
        self.metrics
            .incr_counter(&["server_ca", "sign", "x509_ca_svid"], 1.0, &[]);
        let mut chain = vec![cert];
        chain.extend(ca.upstream_chain.iter().cloned());
        Ok(chain)
    }

    /// A JWT-SVID; `ttl` of zero means the default. Returns the token and its expiry.
    pub async fn sign_workload_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(String, i64), CaError> {
        let key = self.jwt_key().ok_or(CaError::NoJwtKey)?;
        if !id.is_member_of(&self.trust_domain) || id.path().is_empty() {
            return Err(CaError::Invalid(format!(
                "invalid JWT-SVID ID: {:?} is not a member of trust domain {:?}",
                id.as_str(),
                self.trust_domain.name()
            )));
        }
        let audience: Vec<String> = audience.iter().filter(|a| !a.is_empty()).cloned().collect();
        if audience.is_empty() {
            return Err(CaError::Invalid(
                "invalid JWT-SVID audience: cannot be empty".into(),
            ));
        }
        let ttl = if ttl.is_zero() {
            self.settings.jwt_svid_ttl
        } else {
            ttl
        };
        let expires = (now + ttl).min(key.not_after);
        let claims = JwtSvidClaims {
            subject: id,
            audience: &audience,
            expires_at: secs(expires),
            issued_at: secs(now),
            issuer: self.settings.jwt_issuer.as_deref(),
        };
        let sign = |alg, msg: &[u8]| {
            key.signer
                .sign(msg, spire_plugin::SignatureKind::Jws(alg))
                .map_err(|_| spiffe_core::KeyError::Signing)
        };
        let remote = key.signer.is_remote();
        let mut expires_at = secs(expires);
        let token = if self.composers.is_empty() && !remote {
            jwt::sign_with(&claims, &key.kid, key.algorithm(), sign)?
        } else {
            let mut claims = jwt::claims_map(&claims);
            if !self.composers.is_empty() {
                claims = compose::jwt_svid(&self.composers, id, claims).await?;
                expires_at = self.check_composed_claims(&claims)?;
            }
            if remote {
                // A KeyManager plugin signs without blocking a thread.
                let alg = key.algorithm();
                let input = jwt::signing_input(&claims, &key.kid, alg);
                let signature = key
                    .signer
                    .sign_async(input.as_bytes(), spire_plugin::SignatureKind::Jws(alg))
                    .await
                    .map_err(|_| {
                        spiffe_core::JwtSvidError::Signing(spiffe_core::KeyError::Signing)
                    })?;
                jwt::with_signature(input, &signature)
            } else {
                jwt::sign_claims_with(&claims, &key.kid, key.algorithm(), sign)?
            }
        };
        self.metrics
            .incr_counter(&["server_ca", "sign", "jwt_svid"], 1.0, &[]);
        Ok((token, expires_at))
    }

    /// What CredentialComposers returned must still be a JWT-SVID of our trust domain
    /// (SPIRE validates the token after composing): a `sub` in the trust domain, an
    /// audience, an expiry. Returns the expiry.
    fn check_composed_claims(&self, claims: &spire_plugin::JwtClaims) -> Result<i64, CaError> {
        let invalid = |why: &str| CaError::Invalid(format!("invalid JWT-SVID: {why}"));
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid("missing subject"))?;
        let sub = SpiffeId::parse(sub).map_err(|_| invalid("subject is not a SPIFFE ID"))?;
        if !sub.is_member_of(&self.trust_domain) {
            return Err(invalid("subject is not a member of the trust domain"));
        }
        let audience_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => !a.is_empty(),
            Some(serde_json::Value::Array(a)) => {
                !a.is_empty() && a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            }
            _ => false,
        };
        if !audience_ok {
            return Err(invalid("missing audience"));
        }
        claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| invalid("missing expiry"))
    }
}
