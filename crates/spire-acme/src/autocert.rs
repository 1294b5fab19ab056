//! Go's `autocert.Manager`: which ClientHellos get a certificate, obtaining it on the first
//! hello for a name (TLS-ALPN-01 answered on the same listener), caching it, and renewing it
//! 30 days (minus up to an hour of jitter) before it expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spire_clock::SharedClock;
use spire_plugin::Signer;
use tokio_rustls::rustls;
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::client::Client;
use crate::http::AcmeHttp;
use crate::jws::AccountKey;
use crate::store::Store;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Let's Encrypt's production directory: Go's `acme.LetsEncryptURL`.
pub const LETS_ENCRYPT_URL: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// How long before expiry a certificate is renewed (autocert's default).
pub const RENEW_BEFORE: Duration = Duration::from_secs(720 * 3600);
/// Up to this much earlier still, at random, so that many servers do not renew at once.
pub const RENEW_JITTER: Duration = Duration::from_secs(3600);
/// The bound on obtaining one certificate (account, order, challenge, finalization).
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a failed issuance is remembered before a new ClientHello tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a ClientHello got no certificate (autocert's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// No SNI.
    #[error("acme/autocert: missing server name")]
    MissingServerName,
    /// A name without a dot (`localhost`).
    #[error("acme/autocert: server name component count invalid")]
    ComponentCount,
    /// A name IDNA lookup refuses.
    #[error("acme/autocert: server name contains invalid character")]
    InvalidCharacter,
    /// A TLS-ALPN-01 probe for a name with no challenge in progress.
    #[error("acme/autocert: no token cert for {0}")]
    NoTokenCert(String),
    /// A name outside the allowed hosts.
    #[error("acme/autocert: host {0} not configured in HostWhitelist")]
    NotAllowed(String),
    /// Obtaining the certificate failed.
    #[error("{0}")]
    Issue(String),
}

/// Checks the SNI as autocert does and returns the name to look up (lowercase).
pub fn server_name(sni: Option<&str>) -> Result<String, HelloError> {
    let name = match sni {
        None | Some("") => return Err(HelloError::MissingServerName),
        Some(n) => n,
    };
    if !name.trim_matches('.').contains('.') {
        return Err(HelloError::ComponentCount);
    }
    // SNI is ASCII on the wire; IDNA lookup (STD3 rules, hyphen checks) lowercases it and
    // refuses other characters and labels that begin or end with a hyphen.
    let bad_label = |l: &str| l.starts_with('-') || l.ends_with('-');
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || name.split('.').any(bad_label)
    {
        return Err(HelloError::InvalidCharacter);
    }
    Ok(name.to_ascii_lowercase())
}

/// A ClientHello from a CA validating TLS-ALPN-01 offers exactly `acme-tls/1`.
pub fn wants_token_cert(alpn: &[Vec<u8>]) -> bool {
    alpn.len() == 1 && alpn[0] == ACME_TLS_ALPN
}

fn quote(s: &str) -> String {
    spire_gocompat::strconv::quote(s)
}

/// autocert's `HostWhitelist`.
#[derive(Debug, Clone)]
pub struct HostPolicy(Vec<String>);

impl HostPolicy {
    /// The allowed names (lowercase punycode).
    pub fn new(domains: &[String]) -> HostPolicy {
        HostPolicy(domains.iter().map(|d| d.to_ascii_lowercase()).collect())
    }

    /// Whether `host` (as returned by [`server_name`]) may get a certificate.
    pub fn check(&self, host: &str) -> Result<(), HelloError> {
        if self.0.iter().any(|d| d == host) {
            Ok(())
        } else {
            Err(HelloError::NotAllowed(quote(host)))
        }
    }
}

/// A certificate ready to present.
#[derive(Clone)]
pub struct Issued {
    /// The key and chain for rustls.
    pub certified: Arc<CertifiedKey>,
    /// The private key's signer.
    pub key: Arc<dyn Signer>,
    /// The chain, leaf first (DER).
    pub chain: Vec<Vec<u8>>,
    /// The leaf's expiry.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// autocert's `validCert`: the leaf is valid at `now`, names `domain` and holds `key`'s
/// public key.
pub fn valid_cert(
    domain: &str,
    chain: Vec<Vec<u8>>,
    key: Arc<dyn Signer>,
    now: SystemTime,
) -> Result<Issued, String> {
    use x509_parser::prelude::*;
    let leaf_der = chain
        .first()
        .ok_or("acme/autocert: no public key found")?
        .clone();
    let (_, leaf) = X509Certificate::from_der(&leaf_der)
        .map_err(|_| "acme/autocert: no public key found".to_string())?;
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if now_s < leaf.validity().not_before.timestamp() {
        return Err("acme/autocert: certificate is not valid yet".into());
    }
    let not_after = leaf.validity().not_after.timestamp();
    if now_s > not_after {
        return Err("acme/autocert: expired certificate".into());
    }
    let names: Vec<String> = match leaf.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !names.iter().any(|n| host_matches(n, domain)) {
        return Err(format!(
            "x509: certificate is valid for {}, not {domain}",
            names.join(", ")
        ));
    }
    if leaf.public_key().raw != key.public_key().spki_der() {
        return Err("acme/autocert: private key does not match public key".into());
    }
    let certified =
        spire_tls::certified_key_with_signer(&chain, key.clone()).map_err(|e| e.to_string())?;
    Ok(Issued {
        certified,
        key,
        chain,
        not_after: SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(not_after).unwrap_or(0)),
    })
}

/// A certificate name matching a host, with a wildcard allowed as the whole first label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(rest), Some((first, tail))) => !first.is_empty() && rest == tail,
        _ => false,
    }
}

/// The TLS-ALPN-01 challenge certificate (RFC 8737) for `domain`: self-signed, fresh P-256
/// key, the name as CN and SAN, valid 24 hours from `now`, and the critical
/// `id-pe-acmeIdentifier` extension holding the SHA-256 digest of the key authorization.
/// Returns the certificate's DER and the key's PKCS#8.
pub fn challenge_cert(
    domain: &str,
    digest: &[u8],
    now: SystemTime,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    if digest.len() != 32 {
        return Err("the key authorization digest must be 32 bytes".into());
    }
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut p =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, domain);
    p.distinguished_name = dn;
    p.serial_number = Some(rcgen::SerialNumber::from(vec![1u8]));
    let start = time::OffsetDateTime::from(now);
    p.not_before = start;
    p.not_after = start + time::Duration::hours(24);
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// What a ClientHello gets.
#[derive(Debug, Clone)]
pub enum HelloCert {
    /// The domain's certificate.
    Site(Arc<CertifiedKey>),
    /// A TLS-ALPN-01 challenge certificate: the handshake completes with `acme-tls/1`
    /// and the connection is closed.
    Token(Arc<CertifiedKey>),
}

#[derive(Default)]
struct Slot {
    current: Option<Issued>,
    failed: Option<SystemTime>,
    renewing: bool,
}

/// Asked once per account registration with the directory's terms of service URL;
/// whether they are accepted.
pub type Prompt = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What the manager needs.
pub struct Settings {
    /// The names that may get certificates.
    pub domains: Vec<String>,
    /// The directory URL (empty: Let's Encrypt).
    pub directory_url: String,
    /// The account's contact address (empty: none).
    pub email: String,
    /// The terms-of-service decision.
    pub prompt: Prompt,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("domains", &self.domains)
            .field("directory_url", &self.directory_url)
            .finish_non_exhaustive()
    }
}

/// autocert's `Manager`.
pub struct Manager {
    policy: HostPolicy,
    store: Arc<dyn Store>,
    directory_url: String,
    email: String,
    prompt: Prompt,
    http: AcmeHttp,
    clock: SharedClock,
    jitter: fn(Duration) -> Duration,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    slots: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    tokens: parking_lot::Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("policy", &self.policy)
            .field("store", &self.store)
            .field("directory_url", &self.directory_url)
            .finish_non_exhaustive()
    }
}

/// A random duration in `[0, max)`.
pub fn random_jitter(max: Duration) -> Duration {
    let n = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::random_range(0..n))
}

impl Manager {
    /// A manager for `s`; `jitter(max)` draws the renewal jitter.
    pub fn new(
        s: Settings,
        store: Arc<dyn Store>,
        http: AcmeHttp,
        clock: SharedClock,
        jitter: fn(Duration) -> Duration,
    ) -> Arc<Manager> {
        Arc::new(Manager {
            policy: HostPolicy::new(&s.domains),
            store,
            directory_url: if s.directory_url.is_empty() {
                LETS_ENCRYPT_URL.to_string()
            } else {
                s.directory_url
            },
            email: s.email,
            prompt: s.prompt,
            http,
            clock,
            jitter,
            client: tokio::sync::Mutex::new(None),
            slots: parking_lot::Mutex::new(HashMap::new()),
            tokens: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// autocert's `GetCertificate`: the certificate a ClientHello with this SNI and these
    /// ALPN protocols gets, obtaining it first when needed.
    pub async fn get_certificate(
        self: &Arc<Self>,
        sni: Option<&str>,
        alpn: &[Vec<u8>],
    ) -> Result<HelloCert, HelloError> {
        let name = server_name(sni)?;
        if wants_token_cert(alpn) {
            return match self.tokens.lock().get(&name) {
                Some(c) => Ok(HelloCert::Token(c.clone())),
                None => Err(HelloError::NoTokenCert(quote(&name))),
            };
        }
        // The host policy comes first (autocert checks it only before issuing): state is
        // kept per allowed name only, so random server names cannot grow it.
        self.policy.check(&name)?;
        let domain = name.trim_end_matches('.').to_string();
        let slot = self.slots.lock().entry(domain.clone()).or_default().clone();
        let mut s = slot.lock().await;
        if let Some(i) = &s.current {
            return Ok(HelloCert::Site(i.certified.clone()));
        }
        if let Some(i) = self.cache_get(&domain).await {
            s.current = Some(i.clone());
            self.start_renew(&domain, &mut s, slot.clone());
            return Ok(HelloCert::Site(i.certified));
        }
        let now = self.clock.now();
        if let Some(at) = s.failed
            && now < at + RETRY_AFTER
        {
            // autocert keeps the failed state for a minute: hellos meanwhile get this.
            return Err(HelloError::Issue(
                "acme/autocert: missing certificate".to_string(),
            ));
        }
        let issued = async {
            let key = self.store.new_key(&domain).await?;
            self.issue(&domain, key).await
        };
        match tokio::time::timeout(ISSUE_TIMEOUT, issued).await {
            Ok(Ok(i)) => {
                self.cache_put(&domain, &i).await;
                s.current = Some(i.clone());
                s.failed = None;
                self.start_renew(&domain, &mut s, slot.clone());
                Ok(HelloCert::Site(i.certified))
            }
            Ok(Err(e)) => {
                s.failed = Some(now);
                Err(HelloError::Issue(e))
            }
            Err(_) => {
                s.failed = Some(now);
                Err(HelloError::Issue(
                    "acme/autocert: context deadline exceeded".to_string(),
                ))
            }
        }
    }

    async fn cache_get(&self, domain: &str) -> Option<Issued> {
        let (chain, key) = self.store.load(domain).await?;
        valid_cert(domain, chain, key, self.clock.now()).ok()
    }

    async fn cache_put(&self, domain: &str, i: &Issued) {
        if let Err(e) = self.store.save(domain, &i.chain).await {
            tracing::warn!(error = %e, "Failed to write the ACME cache");
        }
    }

    fn start_renew(
        self: &Arc<Self>,
        domain: &str,
        s: &mut Slot,
        slot: Arc<tokio::sync::Mutex<Slot>>,
    ) {
        if s.renewing {
            return;
        }
        s.renewing = true;
        let me = self.clone();
        let domain = domain.to_string();
        tokio::spawn(async move { me.renew_loop(domain, slot).await });
    }

    /// How long to wait before renewing a certificate expiring at `not_after`.
    pub fn renew_in(&self, not_after: SystemTime) -> Duration {
        let left = not_after
            .duration_since(self.clock.now())
            .unwrap_or_default();
        left.saturating_sub(RENEW_BEFORE)
            .saturating_sub((self.jitter)(RENEW_JITTER))
    }

    async fn renew_loop(self: Arc<Self>, domain: String, slot: Arc<tokio::sync::Mutex<Slot>>) {
        let mut wait = match &slot.lock().await.current {
            Some(i) => self.renew_in(i.not_after),
            None => return,
        };
        loop {
            tokio::time::sleep(wait).await;
            wait = match tokio::time::timeout(2 * ISSUE_TIMEOUT, self.renew_once(&domain, &slot))
                .await
            {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::error!(domain = %domain, error = %e, "Failed to renew the ACME certificate");
                    RENEW_JITTER / 2 + (self.jitter)(RENEW_JITTER / 2)
                }
                Err(_) => {
                    tracing::error!(domain = %domain, "Renewing the ACME certificate timed out");
                    RENEW_JITTER / 2 + (self.jitter)(RENEW_JITTER / 2)
                }
            };
        }
    }

    /// One renewal: a fresher certificate from the cache (another instance renewed it) or
    /// a new one for the same key. Returns the wait before the next renewal.
    async fn renew_once(
        &self,
        domain: &str,
        slot: &tokio::sync::Mutex<Slot>,
    ) -> Result<Duration, String> {
        if let Some(i) = self.cache_get(domain).await {
            let next = self.renew_in(i.not_after);
            if next > RENEW_BEFORE + RENEW_JITTER {
                slot.lock().await.current = Some(i);
                return Ok(next);
            }
        }
        let current = slot.lock().await.current.as_ref().map(|i| i.key.clone());
        let key = match current {
            Some(k) => k,
            None => self.store.new_key(domain).await?,
        };
        let i = self.issue(domain, key).await?;
        self.cache_put(domain, &i).await;
        let next = self.renew_in(i.not_after);
        tracing::info!(domain = %domain, "Renewed the ACME certificate");
        slot.lock().await.current = Some(i);
        Ok(next)
    }

    /// The registered client (autocert's `acmeClient`): the account key from the store,
    /// registered with the contact and the prompt's answer; an account that already exists
    /// for the key is used as it is.
    async fn client(&self) -> Result<Arc<Client>, String> {
        let mut g = self.client.lock().await;
        if let Some(c) = &*g {
            return Ok(c.clone());
        }
        let key = AccountKey::new(self.store.account_key().await?)?;
        let client = Client::discover(self.http.clone(), &self.directory_url, key).await?;
        let terms = client.directory().terms.clone();
        let agreed = !terms.is_empty() && (self.prompt)(&terms);
        let contact: Vec<String> = if self.email.is_empty() {
            Vec::new()
        } else {
            vec![format!("mailto:{}", self.email)]
        };
        client.register(&contact, agreed).await?;
        let client = Arc::new(client);
        *g = Some(client.clone());
        Ok(client)
    }

    /// Obtains a certificate for `domain` with `key` (autocert's `authorizedCert` and
    /// `verifyRFC`).
    async fn issue(&self, domain: &str, key: Arc<dyn Signer>) -> Result<Issued, String> {
        let csr = spire_pki::make_dns_csr(key.clone(), domain).map_err(|e| e.to_string())?;
        let client = self.client().await?;
        let order = client.new_order(domain).await?;
        match order.status.as_str() {
            "ready" => {}
            "pending" => {
                let authorized = self.authorize(&client, &order, domain).await;
                self.tokens.lock().remove(domain);
                authorized?;
            }
            other => {
                return Err(format!(
                    "acme/autocert: invalid new order status {}; order URL: {}",
                    quote(other),
                    quote(&order.url)
                ));
            }
        }
        let ready = client.wait_order(&order.url, &["ready", "valid"]).await?;
        let chain = client.finalize(&ready, &csr).await?;
        valid_cert(domain, chain, key, self.clock.now())
    }

    async fn authorize(
        &self,
        client: &Client,
        order: &crate::client::Order,
        domain: &str,
    ) -> Result<(), String> {
        for zurl in &order.authorizations {
            let (z, _) = client.authorization(zurl).await?;
            if z.status != "pending" {
                continue;
            }
            let unsatisfied = || {
                format!(
                    "acme/autocert: unable to satisfy {} for domain {}: no viable challenge type found",
                    quote(zurl),
                    quote(domain)
                )
            };
            let Some(ch) = z.challenges.iter().find(|c| c.kind == "tls-alpn-01") else {
                return Err(unsatisfied());
            };
            let auth = client.key().key_authorization(&ch.token);
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, auth.as_bytes());
            let (der, pkcs8) = challenge_cert(domain, digest.as_ref(), self.clock.now())?;
            let ck = spire_tls::certified_key(&[der], &pkcs8).map_err(|e| e.to_string())?;
            self.tokens.lock().insert(domain.to_string(), ck);
            let validated = match client.accept(&ch.url).await {
                Ok(()) => client.wait_authorization(zurl).await,
                Err(e) => Err(e),
            };
            if let Err(e) = validated {
                // autocert tries the next challenge type on a new order; TLS-ALPN-01 is the
                // only one it has here, so it ends with this error.
                tracing::warn!(domain = %domain, error = %e, "ACME challenge failed");
                return Err(unsatisfied());
            }
        }
        Ok(())
    }
}

/// Reads a ClientHello on `stream` and completes the handshake with the certificate the
/// manager gives it: `Some` stream to serve for a site certificate (ALPN `protos`), `None`
/// after a TLS-ALPN-01 challenge handshake (closed at once). Bounded by ten seconds per
/// step, plus the issuance on a first hello.
pub async fn accept(
    stream: tokio::net::TcpStream,
    manager: &Arc<Manager>,
    protos: &[&[u8]],
) -> Result<Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>, String> {
    let start = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let alpn: Vec<Vec<u8>> = hello
        .alpn()
        .map(|it| it.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    let (key, protos, token): (_, &[&[u8]], bool) = match manager
        .get_certificate(sni.as_deref(), &alpn)
        .await
        .map_err(|e| e.to_string())?
    {
        HelloCert::Site(k) => (k, protos, false),
        HelloCert::Token(k) => (k, &[ACME_TLS_ALPN], true),
    };
    let config = spire_tls::fixed_cert_server_config(key, protos).map_err(|e| e.to_string())?;
    let mut tls = tokio::time::timeout(Duration::from_secs(10), start.into_stream(config))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if token {
        use tokio::io::AsyncWriteExt as _;
        let _ = tls.shutdown().await;
        return Ok(None);
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DirCache, FileStore, KeyManagerStore, generate_key};
    use spire_plugin::LocalSigner;

    #[test]
    fn server_names_as_autocert() {
        assert_eq!(server_name(None), Err(HelloError::MissingServerName));
        assert_eq!(server_name(Some("")), Err(HelloError::MissingServerName));
        assert_eq!(
            server_name(Some("localhost")),
            Err(HelloError::ComponentCount)
        );
        assert_eq!(
            server_name(Some(".localhost.")),
            Err(HelloError::ComponentCount)
        );
        assert_eq!(
            server_name(Some("a b.c")),
            Err(HelloError::InvalidCharacter)
        );
        assert_eq!(
            server_name(Some("OIDC.Example.org")).unwrap(),
            "oidc.example.org"
        );
        assert_eq!(
            HelloError::ComponentCount.to_string(),
            "acme/autocert: server name component count invalid"
        );
        let p = HostPolicy::new(&["oidc.example.org".into()]);
        assert!(p.check("oidc.example.org").is_ok());
        assert_eq!(
            p.check("other.example.org").unwrap_err().to_string(),
            "acme/autocert: host \"other.example.org\" not configured in HostWhitelist"
        );
        assert!(wants_token_cert(&[b"acme-tls/1".to_vec()]));
        assert!(!wants_token_cert(&[
            b"acme-tls/1".to_vec(),
            b"http/1.1".to_vec()
        ]));
        assert!(!wants_token_cert(&[]));
    }

    #[test]
    fn challenge_cert_carries_the_acme_identifier() {
        use x509_parser::prelude::*;
        let digest = [7u8; 32];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (der, pkcs8) = challenge_cert("oidc.example.org", &digest, now).unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        let ext = c
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // DER OCTET STRING of the digest.
        let mut want = vec![0x04, 32];
        want.extend_from_slice(&digest);
        assert_eq!(ext.value, want.as_slice());
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("oidc.example.org")]
        );
        assert_eq!(c.validity().not_before.timestamp(), 1_800_000_000);
        assert_eq!(c.validity().not_after.timestamp(), 1_800_000_000 + 86_400);
        assert!(crate::store::key_from_der(&pkcs8).is_ok());
        assert!(challenge_cert("oidc.example.org", &[1, 2], now).is_err());
    }

    pub(crate) fn leaf(domain: &str, pkcs8: &[u8], not_after_days: i64) -> Vec<u8> {
        let kp = rcgen::KeyPair::try_from(pkcs8).unwrap();
        let mut p = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        p.not_after = p.not_before + time::Duration::days(not_after_days);
        p.self_signed(&kp).unwrap().der().to_vec()
    }

    fn local(pkcs8: &[u8]) -> Arc<dyn Signer> {
        Arc::new(LocalSigner::new(
            "k",
            spiffe_core::PrivateKey::from_pkcs8_der(pkcs8).unwrap(),
        ))
    }

    #[test]
    fn valid_cert_checks_time_name_and_key() {
        let key = generate_key().unwrap();
        let pkcs8 = key.pkcs8_der().to_vec();
        let chain = vec![leaf("oidc.example.org", &pkcs8, 90)];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 86_400);
        let got = valid_cert("oidc.example.org", chain.clone(), local(&pkcs8), now).unwrap();
        assert_eq!(
            got.not_after,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 90 * 86_400)
        );
        let err = valid_cert("other.example.org", chain.clone(), local(&pkcs8), now).unwrap_err();
        assert_eq!(
            err,
            "x509: certificate is valid for oidc.example.org, not other.example.org"
        );
        let late = now + Duration::from_secs(100 * 86_400);
        assert_eq!(
            valid_cert("oidc.example.org", chain.clone(), local(&pkcs8), late).unwrap_err(),
            "acme/autocert: expired certificate"
        );
        let other = generate_key().unwrap();
        assert_eq!(
            valid_cert("oidc.example.org", chain, local(other.pkcs8_der()), now).unwrap_err(),
            "acme/autocert: private key does not match public key"
        );
        assert!(host_matches("*.example.org", "oidc.example.org"));
        assert!(!host_matches("*.example.org", "example.org"));
    }

    #[derive(Debug)]
    struct Fixed(SystemTime);
    impl spire_clock::Clock for Fixed {
        fn now(&self) -> SystemTime {
            self.0
        }
    }

    fn unreachable_http() -> AcmeHttp {
        let k = generate_key().unwrap();
        let c = leaf("x.example.org", k.pkcs8_der(), 1);
        AcmeHttp::with_tls(spire_tls::web_client_config(&[c.into()]).unwrap(), "test").unwrap()
    }

    fn manager(store: Arc<dyn Store>, now: SystemTime) -> Arc<Manager> {
        Manager::new(
            Settings {
                domains: vec!["oidc.example.org".into()],
                directory_url: "https://127.0.0.1:1/dir".into(),
                email: "a@example.org".into(),
                prompt: Box::new(|_| true),
            },
            store,
            unreachable_http(),
            Arc::new(Fixed(now)),
            |_| Duration::ZERO,
        )
    }

    #[tokio::test]
    async fn cached_certificate_is_served_and_renewal_is_scheduled_30_days_ahead() {
        let d = tempfile::tempdir().unwrap();
        let key = generate_key().unwrap();
        let chain = vec![leaf("oidc.example.org", key.pkcs8_der(), 90)];
        DirCache(d.path().to_path_buf())
            .put(
                "oidc.example.org",
                &FileStore::encode_entry(&key, &chain).unwrap(),
            )
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 86_400);
        let m = manager(Arc::new(FileStore::new(Some(d.path().into()))), now);
        match m
            .get_certificate(Some("oidc.example.org"), &[b"http/1.1".to_vec()])
            .await
        {
            Ok(HelloCert::Site(ck)) => assert_eq!(ck.cert[0].as_ref(), chain[0].as_slice()),
            other => panic!("{other:?}"),
        }
        // 89 days left, renewed 30 days before expiry.
        assert_eq!(
            m.renew_in(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 90 * 86_400)),
            Duration::from_secs(59 * 86_400)
        );
        assert!(matches!(
            m.get_certificate(Some("oidc.example.org"), &[ACME_TLS_ALPN.to_vec()])
                .await,
            Err(HelloError::NoTokenCert(_))
        ));
        assert!(matches!(
            m.get_certificate(Some("x.example.org"), &[]).await,
            Err(HelloError::NotAllowed(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_issuance_is_remembered_for_a_minute() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let m = manager(Arc::new(FileStore::new(None)), now);
        let first = m
            .get_certificate(Some("oidc.example.org"), &[])
            .await
            .unwrap_err();
        assert!(first.to_string().contains("127.0.0.1:1"), "{first}");
        assert_eq!(
            m.get_certificate(Some("oidc.example.org"), &[])
                .await
                .unwrap_err()
                .to_string(),
            "acme/autocert: missing certificate"
        );
    }

    #[tokio::test]
    async fn keymanager_layout_keeps_keys_out_of_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let km: Arc<dyn spire_plugin::KeyManager> =
            Arc::new(spire_plugins::keymanager::LocalKeyManager::memory());
        let store = KeyManagerStore::new(km.clone(), d.path().join("bundle-acme"), "test");
        let acct = store.account_key().await.unwrap();
        assert_eq!(acct.key_id(), "bundle-acme-acme_account+key");
        // The same key comes back.
        let again = store.account_key().await.unwrap();
        assert_eq!(acct.public_key(), again.public_key());
        let key = store.new_key("td.example.org").await.unwrap();
        assert_eq!(key.key_id(), "bundle-acme-td.example.org");
        // A chain for that key, stored: only certificates on disk.
        let kp = ExternalKey(key.clone());
        let cert = kp.self_signed("td.example.org");
        store
            .save("td.example.org", std::slice::from_ref(&cert))
            .await
            .unwrap();
        let text = std::fs::read_to_string(d.path().join("bundle-acme/td.example.org")).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
        assert!(!text.contains("PRIVATE"), "{text}");
        let (chain, back) = store.load("td.example.org").await.unwrap();
        assert_eq!(chain, vec![cert]);
        assert_eq!(back.public_key(), key.public_key());
        // Garbage after the blocks, or no key in the KeyManager: a miss.
        std::fs::write(
            d.path().join("bundle-acme/td.example.org"),
            format!("{text}junk"),
        )
        .unwrap();
        assert!(store.load("td.example.org").await.is_none());
        assert!(store.load("other.example.org").await.is_none());
    }

    /// A KeyManager key as an rcgen signing key, to self-sign a test leaf with it.
    struct ExternalKey(Arc<dyn Signer>);
    impl rcgen::PublicKeyData for ExternalKey {
        fn der_bytes(&self) -> &[u8] {
            // The BIT STRING contents of the SPKI: the uncompressed point (last 65 bytes).
            let spki = self.0.public_key().spki_der();
            &spki[spki.len() - 65..]
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P256_SHA256
        }
    }
    impl rcgen::SigningKey for ExternalKey {
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
            self.0
                .sign(msg, spire_plugin::SignatureKind::X509)
                .map_err(|_| rcgen::Error::RemoteKeyError)
        }
    }
    impl ExternalKey {
        fn self_signed(&self, domain: &str) -> Vec<u8> {
            let p = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
            p.self_signed(self).unwrap().der().to_vec()
        }
    }
}
