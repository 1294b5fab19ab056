//! The JSON messages of SPIRE's `tpm_devid` (pkg/common/plugin/tpmdevid): Go field names,
//! byte fields as standard base64, `null` for absent ones.

use serde::{Deserialize, Serialize};

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }

    pub(crate) mod list {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|c| STANDARD.encode(c)))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Vec<u8>>, D::Error> {
            let v = Option::<Vec<Option<String>>>::deserialize(d)?.unwrap_or_default();
            v.iter()
                .map(|s| {
                    STANDARD
                        .decode(s.as_deref().unwrap_or_default().as_bytes())
                        .map_err(serde::de::Error::custom)
                })
                .collect()
        }
    }
}

/// The agent's payload (`AttestationRequest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AttestationRequest {
    /// DevID certificate, then its intermediates (DER).
    #[serde(rename = "DevIDCert", with = "b64::list", default)]
    pub(crate) devid_cert: Vec<Vec<u8>>,
    /// DevID key `TPMT_PUBLIC`.
    #[serde(rename = "DevIDPub", with = "b64", default)]
    pub(crate) devid_pub: Vec<u8>,
    /// EK certificate (DER).
    #[serde(rename = "EKCert", with = "b64", default)]
    pub(crate) ek_cert: Vec<u8>,
    /// EK `TPMT_PUBLIC`.
    #[serde(rename = "EKPub", with = "b64", default)]
    pub(crate) ek_pub: Vec<u8>,
    /// AK `TPMT_PUBLIC`.
    #[serde(rename = "AKPub", with = "b64", default)]
    pub(crate) ak_pub: Vec<u8>,
    /// `TPMS_ATTEST` of the AK certifying the DevID key.
    #[serde(rename = "CertifiedDevID", with = "b64", default)]
    pub(crate) certified_devid: Vec<u8>,
    /// `TPMT_SIGNATURE` of that attestation.
    #[serde(rename = "CertificationSignature", with = "b64", default)]
    pub(crate) certification_signature: Vec<u8>,
}

/// The credential-activation half of the challenge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CredActivation {
    #[serde(rename = "Credential", with = "b64", default)]
    pub(crate) credential: Vec<u8>,
    #[serde(rename = "Secret", with = "b64", default)]
    pub(crate) secret: Vec<u8>,
}

/// The server's challenge (`ChallengeRequest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ChallengeRequest {
    /// Nonce the DevID key signs.
    #[serde(rename = "DevID", with = "b64", default)]
    pub(crate) devid: Vec<u8>,
    #[serde(rename = "CredActivation", default)]
    pub(crate) cred_activation: Option<CredActivation>,
}

/// The agent's answer (`ChallengeResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ChallengeResponse {
    /// Signature of the DevID nonce.
    #[serde(rename = "DevID", with = "b64", default)]
    pub(crate) devid: Vec<u8>,
    /// The activated credential (the server's nonce).
    #[serde(rename = "CredActivation", with = "b64", default)]
    pub(crate) cred_activation: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_field_names_and_nulls() {
        let json = br#"{"DevIDCert":["AQI="],"DevIDPub":"Aw==","EKCert":null,"EKPub":"","AKPub":"BA==","CertifiedDevID":null,"CertificationSignature":null}"#;
        let req: AttestationRequest = serde_json::from_slice(json).unwrap_or_default();
        assert_eq!(req.devid_cert, vec![vec![1, 2]]);
        assert_eq!(req.devid_pub, vec![3]);
        assert!(req.ek_cert.is_empty());
        assert_eq!(req.ak_pub, vec![4]);
        let challenge = ChallengeRequest {
            devid: vec![1],
            cred_activation: Some(CredActivation {
                credential: vec![2],
                secret: vec![3],
            }),
        };
        let text = serde_json::to_string(&challenge).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"DevID":"AQ==","CredActivation":{"Credential":"Ag==","Secret":"Aw=="}}"#
        );
    }
}
