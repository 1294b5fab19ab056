//! The parts of Kubernetes API objects the plugins read and write, in the API's JSON field
//! names. Unknown fields are ignored and missing ones default, as client-go's decoding does.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// A JSON `null` reads as the field's zero value, as Go's decoding has it (the API server
/// and kubelets write `null` for some empty lists).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `metav1.Status`, the body of error answers.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Always `Status`.
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// Human-readable description.
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// Machine-readable reason (`NotFound`, `Conflict`, …).
    #[serde(deserialize_with = "nullable")]
    pub reason: String,
}

/// `authentication.k8s.io/v1` `TokenReview`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenReview {
    /// `authentication.k8s.io/v1`.
    #[serde(rename = "apiVersion")]
    #[serde(deserialize_with = "nullable")]
    pub api_version: String,
    /// `TokenReview`.
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// What to review.
    #[serde(deserialize_with = "nullable")]
    pub spec: TokenReviewSpec,
    /// The answer.
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "nullable")]
    pub status: TokenReviewStatus,
}

/// `TokenReviewSpec`.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenReviewSpec {
    /// The bearer token.
    #[serde(deserialize_with = "nullable")]
    pub token: String,
    /// Audiences the token must be valid for (any one of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub audiences: Vec<String>,
}

/// `TokenReviewStatus`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TokenReviewStatus {
    /// Whether the token is valid.
    #[serde(deserialize_with = "nullable")]
    pub authenticated: bool,
    /// Who the token belongs to.
    #[serde(deserialize_with = "nullable")]
    pub user: UserInfo,
    /// The audiences the token is valid for, among those asked.
    #[serde(deserialize_with = "nullable")]
    pub audiences: Vec<String>,
    /// Why the token could not be checked.
    #[serde(deserialize_with = "nullable")]
    pub error: String,
}

/// `UserInfo`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct UserInfo {
    /// `system:serviceaccount:<ns>:<name>` for service accounts.
    #[serde(deserialize_with = "nullable")]
    pub username: String,
    /// The service account's UID.
    #[serde(deserialize_with = "nullable")]
    pub uid: String,
    /// Groups.
    #[serde(deserialize_with = "nullable")]
    pub groups: Vec<String>,
    /// `authentication.kubernetes.io/pod-name`, `…/pod-uid`, `…/node-name`, …
    #[serde(deserialize_with = "nullable")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `ObjectMeta`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ObjectMeta {
    /// Name.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
    /// UID.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub uid: String,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    /// Owners.
    #[serde(rename = "ownerReferences", skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub owner_references: Vec<OwnerReference>,
    /// Optimistic-concurrency version.
    #[serde(rename = "resourceVersion", skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub resource_version: String,
}

/// `OwnerReference`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct OwnerReference {
    /// Kind of the owner.
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// Name of the owner.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// UID of the owner.
    #[serde(deserialize_with = "nullable")]
    pub uid: String,
}

/// `Pod`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Pod {
    /// Metadata.
    #[serde(deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(deserialize_with = "nullable")]
    pub spec: PodSpec,
    /// Status.
    #[serde(deserialize_with = "nullable")]
    pub status: PodStatus,
}

/// `PodSpec`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodSpec {
    /// The node the pod runs on.
    #[serde(rename = "nodeName")]
    #[serde(deserialize_with = "nullable")]
    pub node_name: String,
    /// The service account.
    #[serde(rename = "serviceAccountName")]
    #[serde(deserialize_with = "nullable")]
    pub service_account_name: String,
    /// Containers.
    #[serde(deserialize_with = "nullable")]
    pub containers: Vec<Container>,
    /// Init containers.
    #[serde(rename = "initContainers")]
    #[serde(deserialize_with = "nullable")]
    pub init_containers: Vec<Container>,
    /// Ephemeral containers.
    #[serde(rename = "ephemeralContainers")]
    #[serde(deserialize_with = "nullable")]
    pub ephemeral_containers: Vec<Container>,
}

/// `Container` (name and image).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Container {
    /// Name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Image reference.
    #[serde(deserialize_with = "nullable")]
    pub image: String,
}

/// `PodStatus`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodStatus {
    /// The node's IP.
    #[serde(rename = "hostIP")]
    #[serde(deserialize_with = "nullable")]
    pub host_ip: String,
    /// The pod's IP.
    #[serde(rename = "podIP")]
    #[serde(deserialize_with = "nullable")]
    pub pod_ip: String,
    /// Phase.
    #[serde(deserialize_with = "nullable")]
    pub phase: String,
    /// Container statuses.
    #[serde(rename = "containerStatuses")]
    #[serde(deserialize_with = "nullable")]
    pub container_statuses: Vec<ContainerStatus>,
    /// Init container statuses.
    #[serde(rename = "initContainerStatuses")]
    #[serde(deserialize_with = "nullable")]
    pub init_container_statuses: Vec<ContainerStatus>,
    /// Ephemeral container statuses.
    #[serde(rename = "ephemeralContainerStatuses")]
    #[serde(deserialize_with = "nullable")]
    pub ephemeral_container_statuses: Vec<ContainerStatus>,
}

/// `ContainerStatus`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ContainerStatus {
    /// Container name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Image reference as run.
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    /// Image ID (digest).
    #[serde(rename = "imageID")]
    #[serde(deserialize_with = "nullable")]
    pub image_id: String,
    /// `<runtime>://<id>`.
    #[serde(rename = "containerID")]
    #[serde(deserialize_with = "nullable")]
    pub container_id: String,
}

/// `PodList`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodList {
    /// Pods.
    #[serde(deserialize_with = "nullable")]
    pub items: Vec<Pod>,
}

/// `Node`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Node {
    /// Metadata.
    #[serde(deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
}

/// `ConfigMap`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConfigMap {
    /// `v1`.
    #[serde(rename = "apiVersion", skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub api_version: String,
    /// `ConfigMap`.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// Metadata.
    #[serde(deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    /// Data.
    #[serde(deserialize_with = "nullable")]
    pub data: BTreeMap<String, String>,
}

impl std::fmt::Debug for TokenReviewSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewSpec")
            .field("token", &"(redacted)")
            .field("audiences", &self.audiences)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TokenReview answer as kube-apiserver v1.37.2 gives it for a bound PSAT (captured
    /// from the loopback cluster of conformance/k8s/cluster.sh).
    #[test]
    fn token_review_status_from_the_real_api_server() {
        let body = r#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"token":"x","audiences":["spire-server"]},"status":{"authenticated":true,"user":{"username":"system:serviceaccount:spire:spire-agent","uid":"6f0c…","groups":["system:serviceaccounts","system:serviceaccounts:spire","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=1"],"authentication.kubernetes.io/node-name":["node-1"],"authentication.kubernetes.io/node-uid":["n-uid"],"authentication.kubernetes.io/pod-name":["agent-1"],"authentication.kubernetes.io/pod-uid":["p-uid"]}},"audiences":["spire-server"]}}"#;
        let r: TokenReview = serde_json::from_str(body).unwrap();
        assert!(r.status.authenticated);
        assert_eq!(
            r.status.user.username,
            "system:serviceaccount:spire:spire-agent"
        );
        assert_eq!(
            r.status.user.extra["authentication.kubernetes.io/pod-uid"],
            vec!["p-uid".to_string()]
        );
        assert_eq!(r.status.audiences, vec!["spire-server".to_string()]);
    }

    #[test]
    fn nulls_read_as_empty_and_tokens_stay_out_of_debug() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p","labels":null,"ownerReferences":null},"spec":{"containers":null,"nodeName":null},"status":null}"#,
        )
        .unwrap();
        assert_eq!(pod.metadata.name, "p");
        assert!(pod.spec.containers.is_empty());
        let spec = TokenReviewSpec {
            token: "secret-token".into(),
            audiences: vec![],
        };
        assert!(!format!("{spec:?}").contains("secret-token"));
    }

    #[test]
    fn token_review_request_shape() {
        let r = TokenReview {
            api_version: "authentication.k8s.io/v1".into(),
            kind: "TokenReview".into(),
            spec: TokenReviewSpec {
                token: "t".into(),
                audiences: vec!["a".into()],
            },
            status: TokenReviewStatus::default(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","audiences":["a"]}}"#
        );
    }
}
