//! The AWS APIs the server half calls — `ec2:DescribeInstances`, `iam:GetInstanceProfile`
//! and, with `assume_role`, `sts:AssumeRole` — as Query API requests signed with Signature
//! Version 4 (our own signer: a few hashes and HMACs, no SDK). Credentials are the
//! configured keys or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`);
//! endpoints are AWS's for the partition, or `AWS_ENDPOINT_URL_<SERVICE>`/`AWS_ENDPOINT_URL`
//! as the SDKs honour them. Every exchange is bounded by the HTTP client's timeout and
//! answers are read into the few fields SPIRE uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lc_rs::{digest, hmac};
use tokio::sync::Mutex;

use crate::server::{AwsApi, BlockDevice, Instance, NetworkInterface, Session};

/// The largest API answer read.
const MAX_BODY: usize = 4 << 20;

/// The environment as a dependency.
pub type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Time as a dependency.
pub type NowFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone)]
struct Creds {
    key: String,
    secret: String,
    token: Option<String>,
    expires: Option<u64>,
}

/// The production [`AwsApi`].
pub struct AwsClient {
    http: spire_http::Client,
    now: NowFn,
    env: EnvFn,
    /// Assumed-role credentials by role ARN.
    assumed: Mutex<HashMap<String, Creds>>,
}

impl std::fmt::Debug for AwsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClient").finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, b).as_ref())
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg)
        .as_ref()
        .to_vec()
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Unix seconds of an RFC 3339 UTC time as the APIs write them (`2025-01-01T00:00:00.000Z`).
pub fn parse_time(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let mut secs = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?) * 86_400
        + h * 3600
        + mi * 60
        + se;
    // An offset other than Z.
    let rest = s
        .get(19..)?
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(off) = rest
        .strip_prefix('+')
        .map(|o| (1, o))
        .or(rest.strip_prefix('-').map(|o| (-1, o)))
    {
        let (sign, o) = off;
        let oh: i64 = o.get(0..2)?.parse().ok()?;
        let om: i64 = o.get(3..5)?.parse().ok()?;
        secs -= sign * (oh * 3600 + om * 60);
    }
    Some(secs)
}

/// `application/x-www-form-urlencoded` as the SDKs encode Query API bodies (RFC 3986
/// unreserved characters kept).
fn form(params: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[allow(clippy::too_many_arguments)]
/// Signature Version 4 headers for a POST of `body` to `host` (path `/`).
pub fn sign_v4(
    key: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    service: &str,
    host: &str,
    body: &[u8],
    now: SystemTime,
) -> Vec<(String, String)> {
    let amz = amz_date(now);
    let date = &amz[..8];
    let ctype = "application/x-www-form-urlencoded; charset=utf-8";
    let mut headers = vec![
        ("content-type".to_string(), ctype.to_string()),
        ("host".to_string(), host.to_string()),
        ("x-amz-date".to_string(), amz.clone()),
    ];
    if let Some(t) = token {
        headers.push(("x-amz-security-token".to_string(), t.to_string()));
    }
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        sha256_hex(body)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac_sha256(&k, part.as_bytes());
    }
    let sig = hex(&hmac_sha256(&k, to_sign.as_bytes()));
    headers.retain(|(k, _)| k != "host");
    headers.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"
        ),
    ));
    headers
}

fn dns_suffix(partition: &str) -> &'static str {
    if partition == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// An XML document's first descendant element named `name` under `node`.
fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).map(|c| c.text().unwrap_or_default().to_string())
}

fn items<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    set: &str,
    item: &str,
) -> Vec<roxmltree::Node<'a, 'i>> {
    child(node, set)
        .map(|s| {
            s.children()
                .filter(|c| c.is_element() && c.tag_name().name() == item)
                .collect()
        })
        .unwrap_or_default()
}

/// The error of an API answer that is not 2xx, as the SDK words it.
fn api_error(service: &str, op: &str, status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let (code, msg, req) = match roxmltree::Document::parse(&text) {
        Ok(doc) => {
            let find = |n: &str| {
                doc.descendants()
                    .find(|d| d.is_element() && d.tag_name().name() == n)
                    .and_then(|d| d.text())
                    .unwrap_or_default()
                    .to_string()
            };
            (find("Code"), find("Message"), {
                let r = find("RequestId");
                if r.is_empty() { find("RequestID") } else { r }
            })
        }
        Err(_) => (String::new(), String::new(), String::new()),
    };
    format!(
        "operation error {service}: {op}, https response error StatusCode: {status}, RequestID: {req}, api error {code}: {msg}"
    )
}

/// Parses a `DescribeInstances` answer.
pub fn parse_describe_instances(xml: &str) -> Result<Vec<Vec<Instance>>, String> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| format!("deserialization failed, {e}"))?;
    let root = doc.root_element();
    let mut out = Vec::new();
    for r in items(root, "reservationSet", "item") {
        let mut instances = Vec::new();
        for i in items(r, "instancesSet", "item") {
            let tags = items(i, "tagSet", "item")
                .into_iter()
                .map(|t| {
                    (
                        text(t, "key").unwrap_or_default(),
                        text(t, "value").unwrap_or_default(),
                    )
                })
                .collect();
            let security_groups = items(i, "groupSet", "item")
                .into_iter()
                .map(|g| {
                    (
                        text(g, "groupId").unwrap_or_default(),
                        text(g, "groupName").unwrap_or_default(),
                    )
                })
                .collect();
            let network_interfaces = items(i, "networkInterfaceSet", "item")
                .into_iter()
                .map(|n| {
                    let a = child(n, "attachment");
                    NetworkInterface {
                        device_index: a
                            .and_then(|a| text(a, "deviceIndex"))
                            .and_then(|v| v.parse().ok()),
                        attach_time: a
                            .and_then(|a| text(a, "attachTime"))
                            .and_then(|v| parse_time(&v)),
                    }
                })
                .collect();
            let block_devices = items(i, "blockDeviceMapping", "item")
                .into_iter()
                .map(|b| BlockDevice {
                    device_name: text(b, "deviceName").unwrap_or_default(),
                    ebs_attach_time: child(b, "ebs")
                        .and_then(|e| text(e, "attachTime"))
                        .and_then(|v| parse_time(&v)),
                })
                .collect();
            instances.push(Instance {
                tags,
                security_groups,
                iam_instance_profile_arn: child(i, "iamInstanceProfile")
                    .and_then(|p| text(p, "arn")),
                network_interfaces,
                root_device_type: text(i, "rootDeviceType").unwrap_or_default(),
                root_device_name: text(i, "rootDeviceName").unwrap_or_default(),
                block_devices,
            });
        }
        out.push(instances);
    }
    Ok(out)
}

/// Parses a `GetInstanceProfile` answer: the roles' ARNs.
pub fn parse_instance_profile(xml: &str) -> Result<Vec<String>, String> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| format!("deserialization failed, {e}"))?;
    let profile = doc
        .descendants()
        .find(|d| d.is_element() && d.tag_name().name() == "InstanceProfile");
    Ok(profile
        .map(|p| {
            items(p, "Roles", "member")
                .into_iter()
                .filter_map(|r| text(r, "Arn"))
                .collect()
        })
        .unwrap_or_default())
}

impl AwsClient {
    /// A client whose every exchange is bounded by `timeout`.
    pub fn new(timeout: Duration, now: NowFn) -> Self {
        Self::with_env(
            timeout,
            now,
            Arc::new(|k| std::env::var(k).ok().filter(|v| !v.is_empty())),
        )
    }

    /// [`AwsClient::new`] with another environment (tests).
    pub fn with_env(timeout: Duration, now: NowFn, env: EnvFn) -> Self {
        Self {
            http: spire_http::Client::new(timeout),
            now,
            env,
            assumed: Mutex::new(HashMap::new()),
        }
    }

    fn endpoint(&self, service: &str, host: &str) -> String {
        let var = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase());
        (self.env)(&var)
            .or_else(|| (self.env)("AWS_ENDPOINT_URL"))
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://{host}"))
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        creds: &Creds,
        service: &str,
        sdk_service: &str,
        op: &str,
        region: &str,
        host: &str,
        params: &[(String, String)],
    ) -> Result<String, String> {
        let url = format!("{}/", self.endpoint(service, host));
        let parsed = url::Url::parse(&url)
            .map_err(|e| format!("operation error {sdk_service}: {op}, {e}"))?;
        let host_header = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => {
                return Err(format!(
                    "operation error {sdk_service}: {op}, invalid endpoint {url:?}"
                ));
            }
        };
        let body = form(params);
        let headers = sign_v4(
            &creds.key,
            &creds.secret,
            creds.token.as_deref(),
            region,
            service,
            &host_header,
            body.as_bytes(),
            (self.now)(),
        );
        let mut req = spire_http::Request::post(&url)
            .map_err(|e| format!("operation error {sdk_service}: {op}, {e}"))?
            .max_body(MAX_BODY);
        for (k, v) in &headers {
            req = req
                .header(k, v)
                .map_err(|e| format!("operation error {sdk_service}: {op}, {e}"))?;
        }
        let resp = self
            .http
            .send(req.body(body.into_bytes()))
            .await
            .map_err(|e| {
                format!("operation error {sdk_service}: {op}, request send failed, {e}")
            })?;
        if !resp.status.is_success() {
            return Err(api_error(sdk_service, op, resp.status.as_u16(), &resp.body));
        }
        resp.text()
            .map(str::to_string)
            .map_err(|e| format!("operation error {sdk_service}: {op}, {e}"))
    }

    fn base_creds(&self, session: &Session) -> Result<Creds, String> {
        if !session.access_key_id.is_empty() && !session.secret_access_key.is_empty() {
            return Ok(Creds {
                key: session.access_key_id.clone(),
                secret: session.secret_access_key.clone(),
                token: None,
                expires: None,
            });
        }
        match ((self.env)("AWS_ACCESS_KEY_ID"), (self.env)("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Ok(Creds {
                key,
                secret,
                token: (self.env)("AWS_SESSION_TOKEN"),
                expires: None,
            }),
            _ => Err("failed to refresh cached credentials, no AWS credentials: set access_key_id and secret_access_key or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()),
        }
    }

    /// The credentials for `account_id`: assumed role when configured (cached until 5 minutes
    /// before they expire).
    async fn creds(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
    ) -> Result<Creds, String> {
        let base = self.base_creds(session)?;
        if session.assume_role.is_empty() {
            return Ok(base);
        }
        let role = format!(
            "arn:{}:iam::{account_id}:role/{}",
            session.partition, session.assume_role
        );
        let now = (self.now)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut cache = self.assumed.lock().await;
        if let Some(c) = cache.get(&role)
            && c.expires.is_some_and(|e| e > now + 300)
        {
            return Ok(c.clone());
        }
        let host = format!("sts.{region}.{}", dns_suffix(&session.partition));
        let params = vec![
            ("Action".to_string(), "AssumeRole".to_string()),
            ("Version".to_string(), "2011-06-15".to_string()),
            ("RoleArn".to_string(), role.clone()),
            ("RoleSessionName".to_string(), format!("spire-rs-{now}")),
        ];
        let xml = self
            .call(&base, "sts", "STS", "AssumeRole", region, &host, &params)
            .await?;
        let doc =
            roxmltree::Document::parse(&xml).map_err(|e| format!("deserialization failed, {e}"))?;
        let c = doc
            .descendants()
            .find(|d| d.is_element() && d.tag_name().name() == "Credentials")
            .ok_or("operation error STS: AssumeRole, no credentials in the answer")?;
        let creds = Creds {
            key: text(c, "AccessKeyId").unwrap_or_default(),
            secret: text(c, "SecretAccessKey").unwrap_or_default(),
            token: text(c, "SessionToken"),
            expires: text(c, "Expiration")
                .and_then(|e| parse_time(&e))
                .and_then(|e| u64::try_from(e).ok()),
        };
        cache.insert(role, creds.clone());
        Ok(creds)
    }
}

impl AwsClient {
    /// A signed Query API call of `action` to `service` (`ec2`, `iam`, `sts`) in `region`
    /// with `session`'s credentials: the answer's XML text.
    pub async fn query(
        &self,
        session: &Session,
        service: &str,
        region: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let creds = self.base_creds(session)?;
        let host = format!("{service}.{region}.{}", dns_suffix(&session.partition));
        let mut all = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), version.to_string()),
        ];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let upper = service.to_ascii_uppercase();
        self.call(&creds, service, &upper, action, region, &host, &all)
            .await
    }
}

#[async_trait]
impl AwsApi for AwsClient {
    async fn describe_instances(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        instance_id: &str,
    ) -> Result<Vec<Vec<Instance>>, String> {
        let creds = self.creds(session, region, account_id).await?;
        let host = format!("ec2.{region}.{}", dns_suffix(&session.partition));
        let params: Vec<(String, String)> = [
            ("Action", "DescribeInstances"),
            ("Filter.1.Name", "instance-state-name"),
            ("Filter.1.Value.1", "pending"),
            ("Filter.1.Value.2", "running"),
            ("InstanceId.1", instance_id),
            ("Version", "2016-11-15"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let xml = self
            .call(
                &creds,
                "ec2",
                "EC2",
                "DescribeInstances",
                region,
                &host,
                &params,
            )
            .await?;
        parse_describe_instances(&xml)
    }

    async fn instance_profile_roles(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        name: &str,
    ) -> Result<Vec<String>, String> {
        let creds = self.creds(session, region, account_id).await?;
        let (host, signing_region) = match session.partition.as_str() {
            "aws-cn" => ("iam.cn-north-1.amazonaws.com.cn".to_string(), "cn-north-1"),
            "aws-us-gov" => ("iam.us-gov.amazonaws.com".to_string(), "us-gov-west-1"),
            _ => ("iam.amazonaws.com".to_string(), "us-east-1"),
        };
        let params: Vec<(String, String)> = [
            ("Action", "GetInstanceProfile"),
            ("InstanceProfileName", name),
            ("Version", "2010-05-08"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let xml = self
            .call(
                &creds,
                "iam",
                "IAM",
                "GetInstanceProfile",
                signing_region,
                &host,
                &params,
            )
            .await?;
        parse_instance_profile(&xml)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sigv4_matches_the_published_example() {
        // AWS's documented IAM ListUsers example (GET) adapted: check the key derivation
        // and date formatting through a known vector instead.
        let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        assert_eq!(amz_date(t), "20150830T123600Z");
        let mut k = hmac_sha256(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20150830");
        for p in ["us-east-1", "iam", "aws4_request"] {
            k = hmac_sha256(&k, p.as_bytes());
        }
        assert_eq!(
            hex(&k),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_eq!(parse_time("2015-08-30T12:36:00.000Z"), Some(1_440_938_160));
        assert_eq!(parse_time("2015-08-30T14:36:00+02:00"), Some(1_440_938_160));
    }

    #[test]
    fn describe_instances_answer_is_read() {
        let xml = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-1</instanceId><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping><item><deviceName>/dev/sda1</deviceName><ebs><volumeId>v</volumeId><attachTime>2015-01-01T00:00:00.000Z</attachTime></ebs></item></blockDeviceMapping><groupSet><item><groupId>sg-1</groupId><groupName>default</groupName></item></groupSet><iamInstanceProfile><arn>arn:aws:iam::1:instance-profile/p</arn><id>x</id></iamInstanceProfile><networkInterfaceSet><item><attachment><deviceIndex>0</deviceIndex><attachTime>2015-01-01T00:00:30.000Z</attachTime></attachment></item></networkInterfaceSet><tagSet><item><key>Name</key><value>web</value></item></tagSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;
        let r = parse_describe_instances(xml).unwrap();
        let i = &r[0][0];
        assert_eq!(i.tags, [("Name".to_string(), "web".to_string())]);
        assert_eq!(
            i.security_groups,
            [("sg-1".to_string(), "default".to_string())]
        );
        assert_eq!(
            i.iam_instance_profile_arn.as_deref(),
            Some("arn:aws:iam::1:instance-profile/p")
        );
        assert_eq!(i.network_interfaces[0].device_index, Some(0));
        assert_eq!(
            i.network_interfaces[0].attach_time.unwrap()
                - i.block_devices[0].ebs_attach_time.unwrap(),
            30
        );
        crate::server::check_block_device(i).unwrap();
        let p = r#"<GetInstanceProfileResponse><GetInstanceProfileResult><InstanceProfile><Roles><member><Arn>arn:aws:iam::1:role/a</Arn></member></Roles></InstanceProfile></GetInstanceProfileResult></GetInstanceProfileResponse>"#;
        assert_eq!(
            parse_instance_profile(p).unwrap(),
            ["arn:aws:iam::1:role/a"]
        );
    }
}
