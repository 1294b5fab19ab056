//! The certificates AWS signs instance identity documents with, as SPIRE 1.13.3 embeds them:
//! RSA-2048 (PKCS #7 signatures) per region, unknown regions refused; RSA-1024 (plain
//! signatures) per region, one shared certificate for every region not listed.
//!
//! Tests may replace all of them with one certificate: [`TEST_CA_ENV`] names a PEM file.
//! That override exists for test fixtures only and is logged at warn level whenever used.

#[path = "cacerts_table.rs"]
mod table;

/// Which signature, hence which certificate family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `instance-identity/signature`.
    Rsa1024,
    /// `instance-identity/rsa2048`.
    Rsa2048,
}

/// The test-only trust override: a PEM certificate used for every region and key type.
pub const TEST_CA_ENV: &str = "SPIRE_RS_TEST_AWS_IID_CA";

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("failed to parse certificate PEM: {e}"))?;
    if p.label != "CERTIFICATE" {
        return Err(format!("expected a CERTIFICATE block, found {:?}", p.label));
    }
    x509_parser::parse_x509_certificate(&p.contents)
        .map_err(|e| format!("x509: malformed certificate: {e}"))?;
    Ok(p.contents)
}

/// The embedded certificate (DER) for `region`, SPIRE's `getAWSCACertificate`.
pub fn embedded(region: &str, key_type: KeyType) -> Result<Vec<u8>, String> {
    let pem = match key_type {
        KeyType::Rsa1024 => table::RSA1024
            .iter()
            .find(|(r, _)| *r == region)
            .map_or(table::RSA1024_DEFAULT, |(_, p)| *p),
        KeyType::Rsa2048 => table::RSA2048
            .iter()
            .find(|(r, _)| *r == region)
            .map(|(_, p)| *p)
            .ok_or_else(|| format!("unsupported region {region:?}"))?,
    };
    pem_to_der(pem)
}

/// Where the server's certificates come from.
#[derive(Debug, Clone)]
pub enum Trust {
    /// AWS's certificates (production).
    Embedded,
    /// One certificate for everything, from [`TEST_CA_ENV`] (tests only).
    TestOverride { path: String, der: Vec<u8> },
}

impl Trust {
    /// From the environment: the override when [`TEST_CA_ENV`] is set, else the embedded set.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(TEST_CA_ENV) {
            Ok(path) if !path.is_empty() => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| format!("failed to read {TEST_CA_ENV} {path:?}: {e}"))?;
                let der = pem_to_der(&pem)?;
                tracing::warn!(
                    path = %path,
                    "{TEST_CA_ENV} is set: aws_iid trusts this test certificate INSTEAD OF AWS's region certificates; never set it outside tests"
                );
                Ok(Self::TestOverride { path, der })
            }
            _ => Ok(Self::Embedded),
        }
    }

    /// The certificate for `region` and `key_type`.
    pub fn certificate(&self, region: &str, key_type: KeyType) -> Result<Vec<u8>, String> {
        match self {
            Self::Embedded => embedded(region, key_type),
            Self::TestOverride { path, der } => {
                tracing::warn!(
                    path = %path,
                    region = %region,
                    "aws_iid: verifying with the {TEST_CA_ENV} test certificate, not AWS's"
                );
                Ok(der.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_certificate_parses() {
        for (r, _) in table::RSA2048 {
            embedded(r, KeyType::Rsa2048).unwrap();
            embedded(r, KeyType::Rsa1024).unwrap();
        }
        assert_eq!(table::RSA2048.len(), 31);
        assert_eq!(table::RSA1024.len(), 14);
    }

    #[test]
    fn unknown_regions_follow_spire() {
        assert_eq!(
            embedded("mars-1", KeyType::Rsa2048).unwrap_err(),
            "unsupported region \"mars-1\""
        );
        // RSA-1024 falls back to the shared certificate.
        assert_eq!(
            embedded("mars-1", KeyType::Rsa1024).unwrap(),
            embedded("us-east-1", KeyType::Rsa1024).unwrap()
        );
        assert_ne!(
            embedded("us-east-1", KeyType::Rsa2048).unwrap(),
            embedded("us-west-2", KeyType::Rsa2048).unwrap()
        );
    }
}
