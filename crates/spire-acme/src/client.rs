//! The ACME protocol (RFC 8555) as Go's `x/crypto/acme` client speaks it for autocert:
//! directory, nonces (a `badNonce` answer is retried with the fresh nonce it carries),
//! account registration, orders, authorizations, challenges, finalization and the
//! certificate download. Errors read as that client's (`<status> <problem type>: <detail>`).

use std::time::Duration;

use parking_lot::Mutex;

use crate::http::{AcmeHttp, Answer};
use crate::jws::AccountKey;

const JOSE: &str = "application/jose+json";
/// How often a `badNonce` answer is retried.
const NONCE_RETRIES: usize = 3;
/// The polling interval when the CA gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// The longest a `Retry-After` is honoured.
const MAX_POLL: Duration = Duration::from_secs(10);

/// The directory's URLs.
#[derive(Debug, Clone)]
pub struct Directory {
    /// `newNonce`.
    pub new_nonce: String,
    /// `newAccount`.
    pub new_account: String,
    /// `newOrder`.
    pub new_order: String,
    /// `meta.termsOfService`, empty when none.
    pub terms: String,
}

/// An order.
#[derive(Debug, Clone, Default)]
pub struct Order {
    /// Its URL.
    pub url: String,
    /// `status`.
    pub status: String,
    /// `authorizations`.
    pub authorizations: Vec<String>,
    /// `finalize`.
    pub finalize: String,
    /// `certificate`, once issued.
    pub certificate: String,
    /// `error.detail`, when the CA gave one.
    pub error: String,
}

/// A challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// `type`.
    pub kind: String,
    /// `url`.
    pub url: String,
    /// `token`.
    pub token: String,
}

/// An authorization.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// Its URL.
    pub url: String,
    /// `status`.
    pub status: String,
    /// `challenges`.
    pub challenges: Vec<Challenge>,
    /// The first failed challenge's `error.detail`.
    pub error: String,
}

fn text(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

fn json(a: &Answer) -> Result<serde_json::Value, String> {
    serde_json::from_slice(&a.body).map_err(|e| format!("acme: invalid response: {e}"))
}

/// The error for a non-success answer: the problem document's type and detail.
fn problem(a: &Answer) -> String {
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
    let (kind, detail) = (text(&v, "type"), text(&v, "detail"));
    if kind.is_empty() && detail.is_empty() {
        let body = String::from_utf8_lossy(&a.body);
        return format!("{} : {}", a.status.as_u16(), body.trim());
    }
    format!("{} {kind}: {detail}", a.status.as_u16())
}

fn is_bad_nonce(a: &Answer) -> bool {
    a.status.as_u16() == 400
        && serde_json::from_slice::<serde_json::Value>(&a.body)
            .map(|v| text(&v, "type").ends_with(":badNonce"))
            .unwrap_or(false)
}

fn retry_after(a: &Answer) -> Duration {
    a.header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_POLL))
        .unwrap_or(DEFAULT_POLL)
}

fn order_from(url: &str, v: &serde_json::Value) -> Order {
    Order {
        url: url.to_string(),
        status: text(v, "status"),
        authorizations: v
            .get("authorizations")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        finalize: text(v, "finalize"),
        certificate: text(v, "certificate"),
        error: v
            .get("error")
            .map(|e| text(e, "detail"))
            .unwrap_or_default(),
    }
}

/// A client for one CA with one account key.
#[derive(Debug)]
pub struct Client {
    http: AcmeHttp,
    dir: Directory,
    key: AccountKey,
    kid: Mutex<Option<String>>,
    nonce: Mutex<Option<String>>,
}

impl Client {
    /// Reads the directory at `url`.
    pub async fn discover(http: AcmeHttp, url: &str, key: AccountKey) -> Result<Client, String> {
        let a = http.request(http::Method::GET, url, None).await?;
        if !a.status.is_success() {
            return Err(format!("acme: directory: {}", problem(&a)));
        }
        let v = json(&a)?;
        let dir = Directory {
            new_nonce: text(&v, "newNonce"),
            new_account: text(&v, "newAccount"),
            new_order: text(&v, "newOrder"),
            terms: v
                .get("meta")
                .map(|m| text(m, "termsOfService"))
                .unwrap_or_default(),
        };
        if dir.new_nonce.is_empty() || dir.new_account.is_empty() || dir.new_order.is_empty() {
            return Err("acme: the directory lacks newNonce, newAccount or newOrder".into());
        }
        Ok(Client {
            http,
            dir,
            key,
            kid: Mutex::new(None),
            nonce: Mutex::new(None),
        })
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// The account key.
    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    async fn fresh_nonce(&self) -> Result<String, String> {
        if let Some(n) = self.nonce.lock().take() {
            return Ok(n);
        }
        let a = self
            .http
            .request(http::Method::HEAD, &self.dir.new_nonce, None)
            .await?;
        a.header("replay-nonce")
            .map(str::to_string)
            .ok_or_else(|| "acme: nonce not found".to_string())
    }

    /// A signed POST (a POST-as-GET when `payload` is `None`); a failed answer is an
    /// error. `jwk` names the key in full (account creation).
    async fn post(
        &self,
        url: &str,
        payload: Option<&serde_json::Value>,
        jwk: bool,
    ) -> Result<Answer, String> {
        let kid = if jwk { None } else { self.kid.lock().clone() };
        if !jwk && kid.is_none() {
            return Err("acme: no account registered".into());
        }
        let mut tries = 0;
        loop {
            let nonce = self.fresh_nonce().await?;
            let body = self.key.sign(payload, &nonce, url, kid.as_deref()).await?;
            let a = self
                .http
                .request(http::Method::POST, url, Some((body, JOSE)))
                .await?;
            if let Some(n) = a.header("replay-nonce") {
                *self.nonce.lock() = Some(n.to_string());
            }
            if is_bad_nonce(&a) && tries < NONCE_RETRIES {
                tries += 1;
                continue;
            }
            if !a.status.is_success() {
                return Err(problem(&a));
            }
            return Ok(a);
        }
    }

    /// Registers the account (or finds the one the key already has): `terms_agreed` is
    /// sent only when the directory has terms of service. Returns whether the account
    /// already existed.
    pub async fn register(&self, contact: &[String], terms_agreed: bool) -> Result<bool, String> {
        let mut req = serde_json::Map::new();
        if !self.dir.terms.is_empty() && terms_agreed {
            req.insert("termsOfServiceAgreed".into(), true.into());
        }
        if !contact.is_empty() {
            req.insert("contact".into(), contact.to_vec().into());
        }
        let a = self
            .post(
                &self.dir.new_account,
                Some(&serde_json::Value::Object(req)),
                true,
            )
            .await?;
        let kid = a
            .header("location")
            .ok_or("acme: the CA gave no account URL")?
            .to_string();
        *self.kid.lock() = Some(kid);
        Ok(a.status.as_u16() == 200)
    }

    /// A new order for `domain`.
    pub async fn new_order(&self, domain: &str) -> Result<Order, String> {
        let req = serde_json::json!({"identifiers": [{"type": "dns", "value": domain}]});
        let a = self.post(&self.dir.new_order, Some(&req), false).await?;
        let url = a
            .header("location")
            .ok_or("acme: the CA gave no order URL")?
            .to_string();
        Ok(order_from(&url, &json(&a)?))
    }

    /// The order at `url`, and how long the CA asks to wait before the next look.
    pub async fn order(&self, url: &str) -> Result<(Order, Duration), String> {
        let a = self.post(url, None, false).await?;
        Ok((order_from(url, &json(&a)?), retry_after(&a)))
    }

    /// The authorization at `url`, and how long the CA asks to wait before the next look.
    pub async fn authorization(&self, url: &str) -> Result<(Authorization, Duration), String> {
        let a = self.post(url, None, false).await?;
        let v = json(&a)?;
        let challenges: Vec<serde_json::Value> = v
            .get("challenges")
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default();
        let error = challenges
            .iter()
            .find_map(|c| c.get("error").map(|e| text(e, "detail")))
            .unwrap_or_default();
        Ok((
            Authorization {
                url: url.to_string(),
                status: text(&v, "status"),
                challenges: challenges
                    .iter()
                    .map(|c| Challenge {
                        kind: text(c, "type"),
                        url: text(c, "url"),
                        token: text(c, "token"),
                    })
                    .collect(),
                error,
            },
            retry_after(&a),
        ))
    }

    /// Tells the CA the challenge at `url` is ready to be validated.
    pub async fn accept(&self, url: &str) -> Result<(), String> {
        self.post(url, Some(&serde_json::json!({})), false)
            .await
            .map(|_| ())
    }

    /// Polls the authorization until it is valid (an error when it becomes invalid).
    pub async fn wait_authorization(&self, url: &str) -> Result<(), String> {
        loop {
            let (z, wait) = self.authorization(url).await?;
            match z.status.as_str() {
                "valid" => return Ok(()),
                "invalid" | "revoked" | "deactivated" | "expired" => {
                    return Err(format!(
                        "acme: authorization error for {}: {}",
                        z.url, z.error
                    ));
                }
                _ => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Polls the order until it leaves `pending`/`processing`.
    pub async fn wait_order(&self, url: &str, until: &[&str]) -> Result<Order, String> {
        loop {
            let (o, wait) = self.order(url).await?;
            if until.contains(&o.status.as_str()) {
                return Ok(o);
            }
            if o.status == "invalid" {
                return Err(format!(
                    "acme: order {} is invalid: {}",
                    spire_gocompat::strconv::quote(url),
                    o.error
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Finalizes `order` with the DER `csr` and downloads the chain (DER, leaf first).
    /// The order is followed at its own URL (some CAs give no `Location` here).
    pub async fn finalize(&self, order: &Order, csr: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        use base64::Engine as _;
        let csr = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(csr);
        self.post(
            &order.finalize,
            Some(&serde_json::json!({"csr": csr})),
            false,
        )
        .await?;
        let done = self.wait_order(&order.url, &["valid"]).await?;
        if done.certificate.is_empty() {
            return Err("acme: the valid order has no certificate URL".into());
        }
        let a = self.post(&done.certificate, None, false).await?;
        let chain: Vec<Vec<u8>> = pem::parse_many(&a.body)
            .map_err(|e| format!("acme: invalid certificate chain: {e}"))?
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect();
        if chain.is_empty() {
            return Err("acme: no certificate in the CA's answer".into());
        }
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: http::StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: body.to_string().into(),
        }
    }

    #[test]
    fn problems_read_as_go_acme_errors() {
        let a = answer(
            403,
            r#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"must agree to terms of service"}"#,
        );
        assert_eq!(
            problem(&a),
            "403 urn:ietf:params:acme:error:unauthorized: must agree to terms of service"
        );
        assert!(!is_bad_nonce(&a));
        let bad = answer(
            400,
            r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}"#,
        );
        assert!(is_bad_nonce(&bad));
        assert_eq!(problem(&answer(502, "bad gateway")), "502 : bad gateway");
    }

    #[test]
    fn orders_parse_and_retry_after_is_bounded() {
        let v = serde_json::json!({
            "status": "pending",
            "authorizations": ["https://ca/authz/1"],
            "finalize": "https://ca/finalize/1",
        });
        let o = order_from("https://ca/order/1", &v);
        assert_eq!(o.status, "pending");
        assert_eq!(o.authorizations, vec!["https://ca/authz/1"]);
        assert_eq!(o.certificate, "");
        let mut a = answer(200, "{}");
        assert_eq!(retry_after(&a), DEFAULT_POLL);
        a.headers
            .insert("retry-after", http::HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&a), MAX_POLL);
    }
}
