//! The server half: signature, agent ID, trust on first use, selectors.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::template::{PathTemplate, Value};
use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{
    AttestedAgent, Challenger, Code, PluginError, PluginResult, ServerNodeAttestor,
};
use spire_plugin_host::hostservices::AgentLookupCell;

use crate::api::NowFn;
use crate::cacerts::{KeyType, Trust};
use crate::membership::{
    EKS_TTL, EksConfig, MembershipCache, Org, OrgConfig, eks_instances, organization_accounts,
};
use crate::pkcs7::SignedData;
use crate::{IidAttestationData, InstanceIdentityDocument, PLUGIN_NAME};

/// The bound SPIRE puts on each AWS API exchange.
pub const AWS_TIMEOUT: Duration = Duration::from_secs(5);
/// The partitions SPIRE accepts.
pub const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov"];
const DEFAULT_TEMPLATE: &str = "/{{ .PluginName}}/{{ .AccountID }}/{{ .Region }}/{{ .InstanceID }}";
const MAX_SECONDS_BETWEEN_DEVICE_ATTACHMENTS: i64 = 60;

/// `plugin_data` of the server's `aws_iid` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    /// Static credentials (else `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id: String,
    /// Static credentials (else `AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub secret_access_key: String,
    /// A role name assumed in the instance's account for the API calls.
    #[serde(default)]
    pub assume_role: String,
    /// `aws` (default), `aws-cn` or `aws-us-gov`.
    #[serde(default)]
    pub partition: String,
    /// Skips the root device / network interface attach-time check.
    #[serde(default)]
    pub skip_block_device: bool,
    /// No `iamrole:` selectors (no IAM call).
    #[serde(default)]
    pub disable_instance_profile_selectors: bool,
    /// Accounts whose instances skip the block device check.
    #[serde(default)]
    pub account_ids_for_local_validation: Vec<String>,
    /// The agent ID path template.
    #[serde(default)]
    pub agent_path_template: String,
    /// Only nodes of the organization's ACTIVE accounts attest.
    #[serde(default)]
    pub verify_organization: Option<OrgConfig>,
    /// Only instances of the named EKS clusters' node groups attest.
    #[serde(default)]
    pub validate_eks_cluster_membership: Option<EksConfig>,
}

/// Credentials and role settings for the AWS API client (`SessionConfig`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// The access key ID.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The role name to assume, empty for none.
    pub assume_role: String,
    /// The partition.
    pub partition: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_key_id", &self.access_key_id)
            .field("assume_role", &self.assume_role)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

/// A network interface attachment of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInterface {
    /// Its device index.
    pub device_index: Option<i64>,
    /// When it was attached (Unix seconds).
    pub attach_time: Option<i64>,
}

/// A block device mapping of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevice {
    /// `/dev/xvda`.
    pub device_name: String,
    /// When its EBS volume was attached (Unix seconds).
    pub ebs_attach_time: Option<i64>,
}

/// What `DescribeInstances` tells about an instance (the fields SPIRE reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    /// Tags, in the API's order (key, value).
    pub tags: Vec<(String, String)>,
    /// Security groups (id, name).
    pub security_groups: Vec<(String, String)>,
    /// The instance profile ARN.
    pub iam_instance_profile_arn: Option<String>,
    /// Network interfaces.
    pub network_interfaces: Vec<NetworkInterface>,
    /// `ebs` or `instance-store`.
    pub root_device_type: String,
    /// `/dev/xvda`.
    pub root_device_name: String,
    /// Block device mappings.
    pub block_devices: Vec<BlockDevice>,
}

/// The AWS APIs the server half calls, one client per account and region.
#[async_trait]
pub trait AwsApi: Send + Sync + std::fmt::Debug {
    /// `ec2:DescribeInstances` of one instance, filtered to pending and running ones:
    /// the instances of each reservation.
    async fn describe_instances(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        instance_id: &str,
    ) -> Result<Vec<Vec<Instance>>, String>;

    /// `iam:GetInstanceProfile`: the ARNs of the profile's roles.
    async fn instance_profile_roles(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        name: &str,
    ) -> Result<Vec<String>, String>;

    /// `organizations:ListAccounts` (one page) with the credentials of `org_role_arn`,
    /// assumed through STS in `region`: (account ID, status) and the next page's token.
    async fn list_accounts(
        &self,
        session: &Session,
        region: &str,
        org_role_arn: &str,
        next: Option<&str>,
    ) -> Result<crate::api::AccountsPage, String>;

    /// `eks:ListNodegroups` (one page): the node group names and the next page's token.
    async fn list_nodegroups(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), String>;

    /// `eks:DescribeNodegroup`: the names of the node group's Auto Scaling groups.
    async fn nodegroup_auto_scaling_groups(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<Vec<Option<String>>, String>;

    /// `autoscaling:DescribeAutoScalingGroups` of one group (one page): its instance IDs.
    async fn auto_scaling_group_instances(
        &self,
        session: &Session,
        region: &str,
        account_id: &str,
        group: &str,
        next: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), String>;
}

/// The server half of `aws_iid`.
pub struct AwsIidServer {
    trust_domain: TrustDomain,
    template: PathTemplate,
    template_uses_tags: bool,
    session: Session,
    skip_block_device: bool,
    disable_instance_profile_selectors: bool,
    local_accounts: Vec<String>,
    trust: Trust,
    agents: AgentLookupCell,
    api: Arc<dyn AwsApi>,
    org: Option<(Org, MembershipCache)>,
    eks: Option<(Vec<String>, MembershipCache)>,
}

impl std::fmt::Debug for AwsIidServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsIidServer")
            .field("session", &self.session)
            .field("skip_block_device", &self.skip_block_device)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(msg)
}

fn internal(msg: impl Into<String>) -> PluginError {
    PluginError::internal(msg)
}

impl AwsIidServer {
    /// Builds the plugin as SPIRE's `Configure` does; `env` reads the credential variables.
    pub fn new(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        agents: AgentLookupCell,
        api: Arc<dyn AwsApi>,
        env: &dyn Fn(&str) -> Option<String>,
        trust: Trust,
    ) -> PluginResult<Self> {
        let mut session = Session {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: config.secret_access_key.clone(),
            assume_role: config.assume_role.clone(),
            partition: config.partition.clone(),
        };
        if session.access_key_id.is_empty() {
            session.access_key_id = env("AWS_ACCESS_KEY_ID").unwrap_or_default();
        }
        if session.secret_access_key.is_empty() {
            session.secret_access_key = env("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        }
        if session.partition.is_empty() {
            session.partition = "aws".into();
        }
        match (
            session.access_key_id.is_empty(),
            session.secret_access_key.is_empty(),
        ) {
            (false, true) => {
                return Err(invalid(
                    "configuration missing secret access key, but has access key id",
                ));
            }
            (true, false) => {
                return Err(invalid(
                    "configuration missing access key id, but has secret access key",
                ));
            }
            _ => {}
        }
        let template_text = if config.agent_path_template.is_empty() {
            DEFAULT_TEMPLATE
        } else {
            config.agent_path_template.as_str()
        };
        let template = PathTemplate::parse(template_text).map_err(|_| {
            invalid(format!(
                "failed to parse agent svid template: {:?}",
                config.agent_path_template
            ))
        })?;
        if !PARTITIONS.contains(&session.partition.as_str()) {
            return Err(invalid(format!(
                "invalid partition {:?}, must be one of: [{}]",
                session.partition,
                PARTITIONS.join(" ")
            )));
        }
        let now: NowFn = Arc::new(std::time::SystemTime::now);
        let org = match &config.verify_organization {
            Some(c) => {
                let org = c.check().map_err(invalid)?;
                let cache = MembershipCache::new(org.ttl, now.clone());
                Some((org, cache))
            }
            None => None,
        };
        let eks = config.validate_eks_cluster_membership.as_ref().map(|c| {
            (
                c.eks_cluster_names.clone(),
                MembershipCache::new(EKS_TTL, now.clone()),
            )
        });
        Ok(Self {
            trust_domain,
            template,
            template_uses_tags: config.agent_path_template.contains(".Tags"),
            session,
            skip_block_device: config.skip_block_device,
            disable_instance_profile_selectors: config.disable_instance_profile_selectors,
            local_accounts: config.account_ids_for_local_validation.clone(),
            trust,
            agents,
            api,
            org,
            eks,
        })
    }

    /// The same plugin with the membership caches on `now`'s clock.
    pub fn with_clock(mut self, now: NowFn) -> Self {
        if let Some((org, _)) = self.org.take() {
            let cache = MembershipCache::new(org.ttl, now.clone());
            self.org = Some((org, cache));
        }
        if let Some((names, _)) = self.eks.take() {
            self.eks = Some((names, MembershipCache::new(EKS_TTL, now)));
        }
        self
    }

    /// `verify_organization`: the node's account is an ACTIVE account of the organization.
    async fn check_organization(&self, doc: &InstanceIdentityDocument) -> PluginResult<()> {
        let Some((org, cache)) = &self.org else {
            return Ok(());
        };
        let api = self.api.as_ref();
        let check = cache.is_member(&doc.account_id, || {
            organization_accounts(api, &self.session, org)
        });
        let member = tokio::time::timeout(AWS_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| Err("context deadline exceeded".into()))
            .map_err(|e| {
                internal(format!(
                    "failed aws ec2 attestation, issue while verifying if nodes account id: {} belong to org: {e}",
                    doc.account_id
                ))
            })?;
        if member {
            Ok(())
        } else {
            Err(internal(format!(
                "failed aws ec2 attestation, nodes account id: {} is not part of configured organization or doesn't have ACTIVE status",
                doc.account_id
            )))
        }
    }

    /// `validate_eks_cluster_membership`: the instance is in one of the clusters' node
    /// groups (listed through the node's own account and region, as SPIRE does).
    async fn check_eks(&self, doc: &InstanceIdentityDocument) -> PluginResult<()> {
        let Some((clusters, cache)) = &self.eks else {
            return Ok(());
        };
        let api = self.api.as_ref();
        let check = cache.is_member(&doc.instance_id, || {
            eks_instances(api, &self.session, &doc.region, &doc.account_id, clusters)
        });
        let member = tokio::time::timeout(AWS_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| Err("context deadline exceeded".into()))
            .map_err(|e| {
                internal(format!(
                    "failed aws eks attestation, issue while verifying if nodes id: {} belong to cluster: {e}",
                    doc.instance_id
                ))
            })?;
        if member {
            Ok(())
        } else {
            Err(internal(format!(
                "failed aws eks attestation, nodes id: {} is not part of configured EKS cluster",
                doc.instance_id
            )))
        }
    }

    async fn assess_tofu(&self, agent_id: &str) -> PluginResult<()> {
        let Some(lookup) = self.agents.get() else {
            return Err(PluginError::new(
                Code::FailedPrecondition,
                "unable to get agent info: AgentStore host service has not been initialized",
            ));
        };
        match lookup.is_attested(agent_id).await {
            Ok(false) => Ok(()),
            Ok(true) => {
                tracing::error!(
                    spiffe_id = %agent_id,
                    "Attestation data has already been used to attest an agent"
                );
                Err(PluginError::permission_denied(
                    "attestation data has already been used to attest an agent",
                ))
            }
            Err(e) => Err(internal(format!("unable to get agent info: {e}"))),
        }
    }
}

/// SPIRE's `unmarshalAndValidateIdentityDocument`: the payload parsed and its signature
/// checked with the certificate `trust` gives for the document's region.
pub fn validate_payload(
    payload: &[u8],
    trust: &Trust,
) -> PluginResult<(IidAttestationData, InstanceIdentityDocument)> {
    let data: IidAttestationData = serde_json::from_slice(payload)
        .map_err(|e| invalid(format!("failed to unmarshal the attestation data: {e}")))?;
    let doc: InstanceIdentityDocument = serde_json::from_str(&data.document)
        .map_err(|e| invalid(format!("failed to unmarshal the IID: {e}")))?;
    let (signature, key_type) = if !data.signature_rsa2048.is_empty() {
        (data.signature_rsa2048.as_str(), KeyType::Rsa2048)
    } else {
        (data.signature.as_str(), KeyType::Rsa1024)
    };
    if signature.is_empty() {
        return Err(invalid(
            "instance identity cryptographic signature is required",
        ));
    }
    let cert = trust.certificate(&doc.region, key_type).map_err(|e| {
        internal(format!(
            "failed to load the AWS CA certificate for region {:?}: {e}",
            doc.region
        ))
    })?;
    match key_type {
        KeyType::Rsa1024 => verify_rsa(&cert, &data.document, signature)?,
        KeyType::Rsa2048 => {
            let der = decode_pem_body(signature).ok_or_else(|| {
                invalid("failed to decode the instance identity cryptographic signature")
            })?;
            let sd = SignedData::parse(&der).map_err(|e| {
                invalid(format!(
                    "failed to parse the instance identity cryptographic signature: {e}"
                ))
            })?;
            sd.verify(&cert).map_err(|e| {
                invalid(format!(
                    "failed verification of instance identity cryptographic signature: {e}"
                ))
            })?;
            // SPIRE verifies the PKCS #7 content without comparing it with the document it
            // then trusts; the signed content must be the document here.
            if sd.content() != data.document.as_bytes() {
                return Err(invalid(
                    "failed verification of instance identity cryptographic signature: the signed content is not the instance identity document",
                ));
            }
        }
    }
    Ok((data, doc))
}

/// Go's `pem.Decode` of the signature wrapped in `BEGIN/END PKCS7` lines: base64 with
/// line breaks and spaces allowed.
fn decode_pem_body(signature: &str) -> Option<Vec<u8>> {
    let compact: String = signature
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r' | ' ' | '\t'))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
        .filter(|d| !d.is_empty())
}

fn verify_rsa(cert_der: &[u8], doc: &str, signature: &str) -> PluginResult<()> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|e| invalid(format!("failed to decode the IID signature: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| internal(format!("x509: {e}")))?;
    let spki = cert
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .as_ref();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        spki,
    )
    .verify(doc.as_bytes(), &sig)
    .map_err(|_| {
        invalid("failed to verify the cryptographic signature: crypto/rsa: verification error")
    })
}

/// SPIRE's `checkBlockDevice`.
pub fn check_block_device(instance: &Instance) -> Result<(), String> {
    let iface = instance
        .network_interfaces
        .iter()
        .find(|n| n.device_index == Some(0))
        .ok_or("the EC2 instance network interface with device index 0 is inaccessible")?;
    if instance.root_device_type != "instance-store" {
        let root = instance
            .block_devices
            .iter()
            .find(|b| b.device_name == instance.root_device_name)
            .ok_or_else(|| {
                format!(
                    "failed to locate the root device block mapping with name {:?}",
                    instance.root_device_name
                )
            })?;
        let a = iface.attach_time.unwrap_or(i64::MIN / 4);
        let b = root.ebs_attach_time.unwrap_or(i64::MIN / 4);
        let disparity = (a - b).abs();
        if disparity > MAX_SECONDS_BETWEEN_DEVICE_ATTACHMENTS {
            return Err(format!(
                "failed checking the disparity device attach times, root BlockDeviceMapping and NetworkInterface[0] attach times differ by {disparity} seconds"
            ));
        }
    }
    Ok(())
}

/// SPIRE's `instanceProfileNameFromArn`.
pub fn instance_profile_name(arn: &str) -> PluginResult<String> {
    // arn:partition:service:region:account-id:resource
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        let why = if arn.starts_with("arn:") {
            "arn: not enough sections"
        } else {
            "arn: invalid prefix"
        };
        return Err(internal(format!("failed to parse {why}")));
    }
    let resource = parts[5];
    let Some(pos) = resource.find("instance-profile") else {
        return Err(internal("arn is not for an instance profile"));
    };
    let rest = &resource[pos + "instance-profile".len()..];
    let name = rest
        .strip_prefix('/')
        .or_else(|| rest.strip_prefix(':'))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| internal("arn is not for an instance profile"))?;
    Ok(name.rsplit('/').next().unwrap_or(name).to_string())
}

/// The selectors SPIRE derives from the instance(s) and the document, sorted.
pub fn selectors(
    reservations: &[Vec<Instance>],
    roles: &[String],
    doc: &InstanceIdentityDocument,
) -> Vec<String> {
    let mut set = BTreeSet::new();
    for instance in reservations.iter().flatten() {
        for (k, v) in &instance.tags {
            set.insert(format!("tag:{k}:{v}"));
        }
        for (id, name) in &instance.security_groups {
            set.insert(format!("sg:id:{id}"));
            set.insert(format!("sg:name:{name}"));
        }
    }
    for arn in roles {
        set.insert(format!("iamrole:{arn}"));
    }
    set.insert(format!("image:id:{}", doc.image_id));
    set.insert(format!("instance:id:{}", doc.instance_id));
    set.insert(format!("region:{}", doc.region));
    set.insert(format!("az:{}", doc.availability_zone));
    set.into_iter().collect()
}

impl AwsIidServer {
    /// The agent ID for `doc` (and the instance's tags).
    pub fn agent_id(
        &self,
        doc: &InstanceIdentityDocument,
        tags: &[(String, String)],
    ) -> PluginResult<SpiffeId> {
        let data = Value::structure(
            "awsiid.agentPathTemplateData",
            [
                ("InstanceID", Value::from(doc.instance_id.as_str())),
                ("AccountID", Value::from(doc.account_id.as_str())),
                ("Region", Value::from(doc.region.as_str())),
                ("PluginName", Value::from(PLUGIN_NAME)),
                // SPIRE leaves the template's TrustDomain empty.
                ("TrustDomain", Value::from("")),
                (
                    "Tags",
                    Value::str_map("awsiid.instanceTags", tags.iter().cloned()),
                ),
            ],
        );
        let path = self
            .template
            .execute(&data, &mut |b: &mut [u8]| {
                // uuidv4's randomness; a failing system RNG leaves zeros (no secret).
                let _ = aws_lc_rs::rand::fill(b);
            })
            .map_err(|e| internal(format!("failed to create spiffe ID: {e}")))?;
        self.trust_domain
            .id_with_path(&format!("/spire/agent{path}"))
            .map_err(|e| internal(format!("failed to create spiffe ID: {e}")))
    }
}

#[async_trait]
impl ServerNodeAttestor for AwsIidServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        _challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(invalid("missing attestation payload"));
        }
        let (_, doc) = validate_payload(&payload, &self.trust)?;
        self.check_organization(&doc).await?;
        self.check_eks(&doc).await?;
        let in_trust_list = self.local_accounts.contains(&doc.account_id);
        let reservations = tokio::time::timeout(
            AWS_TIMEOUT,
            self.api.describe_instances(
                &self.session,
                &doc.region,
                &doc.account_id,
                &doc.instance_id,
            ),
        )
        .await
        .unwrap_or_else(|_| Err("context deadline exceeded".into()))
        .map_err(|e| internal(format!("failed to describe instance: {e}")))?;

        let check_block_device = !in_trust_list && !self.skip_block_device;
        let mut tags = Vec::new();
        if self.template_uses_tags || check_block_device {
            let first = reservations.first().ok_or_else(|| {
                internal("failed to query AWS via describe-instances: returned no reservations")
            })?;
            let instance = first.first().ok_or_else(|| {
                internal("failed to query AWS via describe-instances: returned no instances")
            })?;
            tags = instance.tags.clone();
            if check_block_device {
                check_block_device_or(instance)?;
            }
        }
        let agent_id = self.agent_id(&doc, &tags)?;
        self.assess_tofu(agent_id.as_str()).await?;

        let mut roles = Vec::new();
        if !self.disable_instance_profile_selectors {
            for instance in reservations.iter().flatten() {
                let Some(arn) = &instance.iam_instance_profile_arn else {
                    continue;
                };
                let name = instance_profile_name(arn)?;
                let got = tokio::time::timeout(
                    AWS_TIMEOUT,
                    self.api.instance_profile_roles(
                        &self.session,
                        &doc.region,
                        &doc.account_id,
                        &name,
                    ),
                )
                .await
                .unwrap_or_else(|_| Err("context deadline exceeded".into()))
                .map_err(|e| internal(format!("failed to get intance profile: {e}")))?;
                roles.extend(got);
            }
        }
        Ok(AttestedAgent {
            agent_id,
            selector_values: selectors(&reservations, &roles, &doc),
            can_reattest: false,
        })
    }
}

fn check_block_device_or(instance: &Instance) -> PluginResult<()> {
    check_block_device(instance).map_err(|e| internal(format!("failed aws ec2 attestation: {e}")))
}
