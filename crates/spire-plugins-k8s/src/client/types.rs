//! The parts of Kubernetes API objects the plugins read and write, in the API's JSON field
//! names. Unknown fields are ignored and missing ones default, as client-go's decoding does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metav1.Status`, the body of error answers.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Always `Status`.
    pub kind: String,
    /// Human-readable description.
    pub message: String,
    /// Machine-readable reason (`NotFound`, `Conflict`, …).
    pub reason: String,
}

/// `authentication.k8s.io/v1` `TokenReview`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenReview {
    /// `authentication.k8s.io/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `TokenReview`.
    pub kind: String,
    /// What to review.
    pub spec: TokenReviewSpec,
    /// The answer.
    #[serde(skip_serializing)]
    pub status: TokenReviewStatus,
}

/// `TokenReviewSpec`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenReviewSpec {
    /// The bearer token.
    pub token: String,
    /// Audiences the token must be valid for (any one of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// `TokenReviewStatus`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TokenReviewStatus {
    /// Whether the token is valid.
    pub authenticated: bool,
    /// Who the token belongs to.
    pub user: UserInfo,
    /// The audiences the token is valid for, among those asked.
    pub audiences: Vec<String>,
    /// Why the token could not be checked.
    pub error: String,
}

/// `UserInfo`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct UserInfo {
    /// `system:serviceaccount:<ns>:<name>` for service accounts.
    pub username: String,
    /// The service account's UID.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// `authentication.kubernetes.io/pod-name`, `…/pod-uid`, `…/node-name`, …
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `ObjectMeta`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ObjectMeta {
    /// Name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// UID.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Owners.
    #[serde(rename = "ownerReferences", skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Optimistic-concurrency version.
    #[serde(rename = "resourceVersion", skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

/// `OwnerReference`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct OwnerReference {
    /// Kind of the owner.
    pub kind: String,
    /// Name of the owner.
    pub name: String,
    /// UID of the owner.
    pub uid: String,
}

/// `Pod`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Pod {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PodSpec,
    /// Status.
    pub status: PodStatus,
}

/// `PodSpec`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodSpec {
    /// The node the pod runs on.
    #[serde(rename = "nodeName")]
    pub node_name: String,
    /// The service account.
    #[serde(rename = "serviceAccountName")]
    pub service_account_name: String,
    /// Containers.
    pub containers: Vec<Container>,
    /// Init containers.
    #[serde(rename = "initContainers")]
    pub init_containers: Vec<Container>,
    /// Ephemeral containers.
    #[serde(rename = "ephemeralContainers")]
    pub ephemeral_containers: Vec<Container>,
}

/// `Container` (name and image).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Container {
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
}

/// `PodStatus`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodStatus {
    /// The node's IP.
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    /// The pod's IP.
    #[serde(rename = "podIP")]
    pub pod_ip: String,
    /// Phase.
    pub phase: String,
    /// Container statuses.
    #[serde(rename = "containerStatuses")]
    pub container_statuses: Vec<ContainerStatus>,
    /// Init container statuses.
    #[serde(rename = "initContainerStatuses")]
    pub init_container_statuses: Vec<ContainerStatus>,
    /// Ephemeral container statuses.
    #[serde(rename = "ephemeralContainerStatuses")]
    pub ephemeral_container_statuses: Vec<ContainerStatus>,
}

/// `ContainerStatus`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ContainerStatus {
    /// Container name.
    pub name: String,
    /// Image reference as run.
    pub image: String,
    /// Image ID (digest).
    #[serde(rename = "imageID")]
    pub image_id: String,
    /// `<runtime>://<id>`.
    #[serde(rename = "containerID")]
    pub container_id: String,
}

/// `PodList`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodList {
    /// Pods.
    pub items: Vec<Pod>,
}

/// `Node`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Node {
    /// Metadata.
    pub metadata: ObjectMeta,
}

/// `ConfigMap`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConfigMap {
    /// `v1`.
    #[serde(rename = "apiVersion", skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `ConfigMap`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Data.
    pub data: BTreeMap<String, String>,
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
