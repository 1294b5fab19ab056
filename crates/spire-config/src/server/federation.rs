//! The `federation` section of `server.conf`: the bundle endpoint (profiles, ACME) and
//! `federates_with`.

use super::*;

/// SPIRE's `parseBundleEndpointProfileASTNode` followed by decoding the printed profile.
pub(super) fn decode_profile<T: serde::de::DeserializeOwned>(raw: &RawNode) -> Result<T, String> {
    let Node::ObjectList(list) = &raw.node else {
        return Err("malformed configuration".to_owned());
    };
    if list.items.len() != 1 {
        return Err("exactly one bundle endpoint profile is expected".to_owned());
    }
    let ctx = DecodeCtx {
        json: raw.json,
        ..DecodeCtx::default()
    };
    decode_nodes("root", vec![raw.node.clone()], Parent::Other, &ctx)
        .map_err(|e| format!("failed to decode configuration: {e}"))
}

pub(super) fn acme_config(acme: &RawAcme, data_dir: &Path) -> AcmeConfig {
    AcmeConfig {
        directory_url: if acme.directory_url.is_empty() {
            LETS_ENCRYPT_DIRECTORY_URL.to_owned()
        } else {
            acme.directory_url.clone()
        },
        domain_name: acme.domain_name.clone(),
        email: acme.email.clone(),
        tos_accepted: acme.tos_accepted,
        cache_dir: data_dir.join("bundle-acme"),
    }
}

pub(super) fn build_federation(
    fed: &RawFederation,
    data_dir: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<FederationConfig, ConfigError> {
    let mut out = FederationConfig::default();
    if let Some(be) = &fed.bundle_endpoint {
        let refresh_hint = match nonempty(&be.refresh_hint) {
            Some(v) => {
                let hint = duration("refresh_hint", v, |e| {
                    format!("could not parse refresh_hint {}: {e}", go_quote(&v.value))
                })?;
                if hint >= Duration::from_secs(24 * 3600) {
                    warn(
                        warnings,
                        "Bundle endpoint refresh hint set to a high value. To cover the case of unscheduled trust bundle updates, it's recommended to have a smaller value, e.g. 5m",
                    );
                }
                if hint < MINIMUM_REFRESH_HINT {
                    warn(
                        warnings,
                        "Bundle endpoint refresh hint set too low. SPIRE will not refresh more often than 1 minute",
                    );
                }
                hint
            }
            None => DEFAULT_REFRESH_HINT,
        };
        let profile_err = |msg: String| ConfigError::invalid("profile", 0, msg);
        let profile = match (&be.acme, &be.profile) {
            (Some(_), Some(_)) => {
                return Err(profile_err(
                    "either bundle endpoint 'acme' or 'profile' can be set, but not both"
                        .to_owned(),
                ));
            }
            (Some(acme), None) => {
                warn(
                    warnings,
                    "ACME configuration within the bundle_endpoint is deprecated. Please use ACME configuration as part of the https_web profile instead.",
                );
                BundleEndpointProfile::HttpsWebAcme(acme_config(acme, data_dir))
            }
            (None, None) => {
                warn(
                    warnings,
                    "Bundle endpoint is configured but has no profile set, using https_spiffe as default; please configure a profile explicitly. This will be fatal in a future release.",
                );
                BundleEndpointProfile::HttpsSpiffe
            }
            (None, Some(node)) => {
                let p: RawBundleEndpointProfile = decode_profile(node).map_err(profile_err)?;
                match (p.https_web, p.https_spiffe) {
                    (Some(web), _) => match (web.acme, web.serving_cert_file) {
                        (Some(acme), _) => {
                            BundleEndpointProfile::HttpsWebAcme(acme_config(&acme, data_dir))
                        }
                        (None, Some(sc)) => {
                            let mut interval = parse_go_duration(&sc.file_sync_interval)
                                .map_err(|e| profile_err(e.to_string()))?;
                            if interval.is_zero() {
                                interval = DEFAULT_FILE_SYNC_INTERVAL;
                            }
                            BundleEndpointProfile::HttpsWebServingCert(ServingCertFile {
                                cert_file_path: PathBuf::from(sc.cert_file_path),
                                key_file_path: PathBuf::from(sc.key_file_path),
                                file_sync_interval: interval,
                            })
                        }
                        (None, None) => {
                            return Err(profile_err(
                                "malformed https_web profile configuration: 'acme' or 'serving_cert_file' is required".to_owned(),
                            ));
                        }
                    },
                    (None, Some(_)) => BundleEndpointProfile::HttpsSpiffe,
                    (None, None) => {
                        return Err(profile_err(
                            "unknown bundle endpoint profile configured; current supported profiles are \"https_spiffe\" and 'https_web\"".to_owned(),
                        ));
                    }
                }
            }
        };
        let port = match &be.port {
            None => 0,
            Some(p) => u16::try_from(p.value).map_err(|_| {
                ConfigError::invalid(
                    "port",
                    p.line,
                    format!("invalid bundle endpoint port {}", p.value),
                )
            })?,
        };
        out.bundle_endpoint = Some(BundleEndpointConfig {
            address: be.address.parse().ok(),
            port,
            refresh_hint,
            profile,
        });
    }
    for (td_text, cfg) in &fed.federates_with {
        let td = crate::ids::parse_trust_domain(td_text)
            .map_err(|e| ConfigError::invalid("federates_with", 0, e))?;
        let Some(node) = &cfg.bundle_endpoint_profile else {
            return Err(ConfigError::missing(
                "bundle_endpoint_profile",
                format!(
                    "federation configuration for trust domain {}: missing bundle endpoint configuration",
                    go_quote(td_text)
                ),
            ));
        };
        let wrap = |msg: String| {
            ConfigError::invalid(
                "bundle_endpoint_profile",
                0,
                format!(
                    "error parsing federation relationship for trust domain {}: {msg}",
                    go_quote(td_text)
                ),
            )
        };
        let p: RawFederatesWithProfile = decode_profile(node).map_err(wrap)?;
        let profile = match (p.https_web, p.https_spiffe) {
            (Some(_), _) => FederatesWithProfile::HttpsWeb,
            (None, Some(s)) => FederatesWithProfile::HttpsSpiffe {
                endpoint_spiffe_id: crate::ids::parse_spiffe_id(&s.endpoint_spiffe_id)
                    .map_err(|e| wrap(format!("could not get endpoint SPIFFE ID: {e}")))?,
            },
            (None, None) => {
                return Err(wrap(
                    "no bundle endpoint profile defined; current supported profiles are \"https_spiffe\" and 'https_web\"".to_owned(),
                ));
            }
        };
        out.federates_with.insert(
            td,
            FederatesWithConfig {
                bundle_endpoint_url: cfg.bundle_endpoint_url.clone(),
                profile,
            },
        );
    }
    Ok(out)
}
