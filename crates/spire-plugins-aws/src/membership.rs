//! `verify_organization` and `validate_eks_cluster_membership`: the server half checks that
//! an attesting node's account belongs to an AWS Organization (its ACTIVE accounts, from
//! `organizations:ListAccounts` under `assume_org_role` in the management account), or
//! that its instance belongs to one of the named EKS clusters (the instances of the Auto
//! Scaling groups of the clusters' node groups).
//!
//! Both lists are cached as SPIRE 1.13 caches them: loaded when empty or older than the TTL
//! (`org_account_map_ttl`, default 3m, at least 1m; 30 s for EKS), and on a miss reloaded
//! at most five times per TTL window, so that a newly added account or node is found
//! without letting unknown IDs trigger a call each.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use spire_gocompat::duration::parse_go_duration;
use tokio::sync::Mutex;

use crate::api::NowFn;
use crate::server::{AwsApi, Session};

/// Reloads allowed on misses between two TTL reloads.
pub const RETRIES: u32 = 5;
/// The organization list's default TTL.
pub const ORG_DEFAULT_TTL: Duration = Duration::from_secs(180);
/// The smallest organization TTL accepted.
pub const ORG_MIN_TTL: Duration = Duration::from_secs(60);
/// The EKS node list's TTL.
pub const EKS_TTL: Duration = Duration::from_secs(30);
/// The management account's region when none is configured.
pub const ORG_DEFAULT_REGION: &str = "us-west-2";

/// `verify_organization { ... }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrgConfig {
    /// The organization's management account.
    #[serde(default)]
    pub management_account_id: String,
    /// The role (name) assumed in the management account to list the accounts.
    #[serde(default)]
    pub assume_org_role: String,
    /// The region of the STS call (default `us-west-2`).
    #[serde(default)]
    pub management_account_region: String,
    /// How long the account list is trusted (Go duration, at least `1m`).
    #[serde(default)]
    pub org_account_map_ttl: String,
}

/// `validate_eks_cluster_membership { ... }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EksConfig {
    /// The clusters whose node groups' instances may attest.
    #[serde(default)]
    pub eks_cluster_names: Vec<String>,
}

/// A checked `verify_organization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// The management account.
    pub account_id: String,
    /// The role name to assume there.
    pub role: String,
    /// The STS region.
    pub region: String,
    /// The list's TTL.
    pub ttl: Duration,
}

impl OrgConfig {
    /// SPIRE's `validateOrganizationConfig`, with its messages.
    pub fn check(&self) -> Result<Org, String> {
        if self.management_account_id.is_empty() || self.assume_org_role.is_empty() {
            return Err(
                "please ensure that \"management_account_id\" & \"assume_org_role\" are present inside block or remove the block: \"verify_organization\" for feature node attestation using account id verification".into(),
            );
        }
        let region = if self.management_account_region.is_empty() {
            ORG_DEFAULT_REGION.to_string()
        } else {
            self.management_account_region.clone()
        };
        let ttl = if self.org_account_map_ttl.is_empty() {
            ORG_DEFAULT_TTL
        } else {
            let d = parse_go_duration(&self.org_account_map_ttl)
                .ok()
                .and_then(|d| d.to_std().or(Some(Duration::ZERO)))
                .ok_or_else(|| {
                    "please ensure that \"org_account_map_ttl\" if configured, it should be in duration and is suffixed with required 'm' for time duration in minute ex. '5m'. Otherwise, remove the: \"org_account_map_ttl\", in the block: \"verify_organization\". Default TTL will be: \"3m\"".to_string()
                })?;
            if d < ORG_MIN_TTL {
                return Err(
                    "please ensure that \"org_account_map_ttl\" if configured, it should be greater than or equal to \"1m\". Otherwise remove the: \"org_account_map_ttl\", in the block: \"verify_organization\". Default TTL will be: \"3m\"".into(),
                );
            }
            d
        };
        Ok(Org {
            account_id: self.management_account_id.clone(),
            role: self.assume_org_role.clone(),
            region,
            ttl,
        })
    }
}

struct State {
    members: HashSet<String>,
    valid_until: SystemTime,
    retries: u32,
}

/// A list of member IDs with SPIRE's TTL and miss-reload rules.
pub struct MembershipCache {
    state: Mutex<State>,
    ttl: Duration,
    now: NowFn,
}

impl std::fmt::Debug for MembershipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl MembershipCache {
    /// An empty cache whose loads are trusted for `ttl`.
    pub fn new(ttl: Duration, now: NowFn) -> Self {
        Self {
            state: Mutex::new(State {
                members: HashSet::new(),
                valid_until: SystemTime::UNIX_EPOCH,
                retries: RETRIES,
            }),
            ttl,
            now,
        }
    }

    /// Whether `id` is a member; `load` fetches the whole list. A load that fails fails the
    /// check and leaves the cache as it was.
    pub async fn is_member<F, Fut>(&self, id: &str, load: F) -> Result<bool, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<HashSet<String>, String>>,
    {
        let mut st = self.state.lock().await;
        let stale = st.members.is_empty() || (self.now)() > st.valid_until;
        if stale {
            let members = load().await?;
            st.members = members;
            st.valid_until = (self.now)() + self.ttl;
            st.retries = RETRIES;
            return Ok(st.members.contains(id));
        }
        if st.members.contains(id) {
            return Ok(true);
        }
        if st.retries == 0 {
            return Ok(false);
        }
        // A miss within the TTL: reload (the window is not extended) and spend a retry.
        match load().await {
            Ok(members) => {
                st.members = members;
                st.retries -= 1;
                Ok(st.members.contains(id))
            }
            Err(e) => {
                tracing::error!(id, error = %e, "Failed to refresh cache, while validating membership");
                Err(e)
            }
        }
    }
}

/// The ACTIVE accounts of the organization, all pages.
pub async fn organization_accounts(
    api: &dyn AwsApi,
    session: &Session,
    org: &Org,
) -> Result<HashSet<String>, String> {
    let role = format!(
        "arn:{}:iam::{}:role/{}",
        session.partition, org.account_id, org.role
    );
    let mut out = HashSet::new();
    let mut next: Option<String> = None;
    let mut first = true;
    loop {
        let (accounts, token) = api
            .list_accounts(session, &org.region, &role, next.as_deref())
            .await
            .map_err(|e| {
                if first {
                    format!("issue while getting list of accounts: {e}")
                } else {
                    format!("issue while getting list of accounts in pagination: {e}")
                }
            })?;
        first = false;
        out.extend(
            accounts
                .into_iter()
                .filter(|(_, status)| status == "ACTIVE")
                .map(|(id, _)| id),
        );
        match token {
            Some(t) => next = Some(t),
            None => return Ok(out),
        }
    }
}

/// The instances of the clusters' node groups, all pages, through the node's own account
/// and region (as SPIRE calls them).
pub async fn eks_instances(
    api: &dyn AwsApi,
    session: &Session,
    region: &str,
    account_id: &str,
    clusters: &[String],
) -> Result<HashSet<String>, String> {
    let mut out = HashSet::new();
    for cluster in clusters {
        let mut next: Option<String> = None;
        let mut first = true;
        loop {
            let (groups, token) = api
                .list_nodegroups(session, region, account_id, cluster, next.as_deref())
                .await
                .map_err(|e| {
                    if first {
                        format!("issue while getting list of EKS Nodegroups: {e}")
                    } else {
                        format!("issue while getting list of EKS Nodegroups in pagination: {e}")
                    }
                })?;
            first = false;
            for ng in groups {
                let asgs = api
                    .nodegroup_auto_scaling_groups(session, region, account_id, cluster, &ng)
                    .await
                    .map_err(|e| format!("issue while getting list of EKS Node Groups: {e}"))?;
                for asg in asgs.into_iter().flatten() {
                    let mut next_asg: Option<String> = None;
                    let mut first_asg = true;
                    loop {
                        let (ids, token) = api
                            .auto_scaling_group_instances(
                                session,
                                region,
                                account_id,
                                &asg,
                                next_asg.as_deref(),
                            )
                            .await
                            .map_err(|e| {
                                if first_asg {
                                    format!("issue while getting list of instances in AutoScalingGroup: {e}")
                                } else {
                                    format!("issue while getting list of instances in AutoScalingGroup in pagination: {e}")
                                }
                            })?;
                        first_asg = false;
                        out.extend(ids);
                        match token {
                            Some(t) => next_asg = Some(t),
                            None => break,
                        }
                    }
                }
            }
            match token {
                Some(t) => next = Some(t),
                None => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    fn clock() -> (Arc<AtomicU64>, NowFn) {
        let t = Arc::new(AtomicU64::new(1_000_000));
        let c = t.clone();
        (
            t,
            Arc::new(move || {
                SystemTime::UNIX_EPOCH + Duration::from_secs(c.load(Ordering::SeqCst))
            }),
        )
    }

    #[tokio::test]
    async fn loads_once_per_ttl_and_reloads_on_misses_at_most_five_times() {
        let (t, now) = clock();
        let cache = MembershipCache::new(Duration::from_secs(180), now);
        let loads = AtomicU32::new(0);
        let list = |ids: &'static [&'static str]| {
            loads.fetch_add(1, Ordering::SeqCst);
            let set: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
            async move { Ok(set) }
        };
        // First use: loaded; a hit afterwards is served from the cache.
        assert!(cache.is_member("a", || list(&["a"])).await.unwrap());
        assert!(cache.is_member("a", || list(&["a"])).await.unwrap());
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Misses reload, five times per window, then answer from the cache.
        for _ in 0..5 {
            assert!(!cache.is_member("b", || list(&["a"])).await.unwrap());
        }
        assert_eq!(loads.load(Ordering::SeqCst), 6);
        assert!(!cache.is_member("b", || list(&["a", "b"])).await.unwrap());
        assert_eq!(loads.load(Ordering::SeqCst), 6);
        // After the TTL the list is reloaded and the retries restored.
        t.fetch_add(181, Ordering::SeqCst);
        assert!(cache.is_member("b", || list(&["a", "b"])).await.unwrap());
        assert_eq!(loads.load(Ordering::SeqCst), 7);
        // A newly added member is found by a miss reload within the window.
        assert!(
            cache
                .is_member("c", || list(&["a", "b", "c"]))
                .await
                .unwrap()
        );
        assert_eq!(loads.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn a_failing_load_fails_the_check() {
        let (_, now) = clock();
        let cache = MembershipCache::new(EKS_TTL, now);
        let err = cache
            .is_member("a", || async {
                Err::<HashSet<String>, _>("boom".to_string())
            })
            .await
            .unwrap_err();
        assert_eq!(err, "boom");
        // An empty list is stale every time: each check loads.
        assert!(
            !cache
                .is_member("a", || async { Ok(HashSet::new()) })
                .await
                .unwrap()
        );
    }

    #[test]
    fn organization_config_as_spire_checks_it() {
        let ok = OrgConfig {
            management_account_id: "111".into(),
            assume_org_role: "r".into(),
            ..Default::default()
        };
        let org = ok.check().unwrap();
        assert_eq!(org.region, "us-west-2");
        assert_eq!(org.ttl, ORG_DEFAULT_TTL);
        let mut c = ok.clone();
        c.org_account_map_ttl = "90s".into();
        assert_eq!(c.check().unwrap().ttl, Duration::from_secs(90));
        c.org_account_map_ttl = "30s".into();
        assert!(
            c.check()
                .unwrap_err()
                .contains("greater than or equal to \"1m\"")
        );
        c.org_account_map_ttl = "5".into();
        assert!(c.check().unwrap_err().contains("should be in duration"));
        let missing = OrgConfig {
            management_account_id: "111".into(),
            ..Default::default()
        };
        assert!(missing.check().unwrap_err().starts_with(
            "please ensure that \"management_account_id\" & \"assume_org_role\" are present"
        ));
    }
}
