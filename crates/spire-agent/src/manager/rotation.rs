//! The agent's own SVID: rotation at the strategy's time, renewal, re-attestation.

use super::*;

impl Manager {
    pub(super) async fn run_rotator(&self) -> Result<(), ManagerError> {
        let mut backoff = Backoff::new(ROTATION_CHECK_INTERVAL);
        loop {
            let r = self.rotate_if_needed().await;
            if let Err(e) = r {
                let (chain, reattestable) = {
                    let c = self.creds.lock();
                    (c.chain.clone(), c.reattestable)
                };
                let action = if reattestable {
                    "reattest agent"
                } else {
                    "rotate agent SVID"
                };
                tracing::error!(subsystem_name = "svid_rotator", error = %e, "Could not {action}");
                let expired = chain
                    .first()
                    .and_then(|leaf| validity(leaf).ok())
                    .is_some_and(|(_, na)| x509_expired(self.now(), na));
                if expired {
                    return Err(ManagerError::Expired {
                        action,
                        cause: Box::new(e),
                    });
                }
                if e.should_reattest() || e.should_shutdown() {
                    return Err(e);
                }
            } else {
                backoff.reset();
            }
            let wait = backoff
                .next(rand::random())
                .unwrap_or(ROTATION_CHECK_INTERVAL);
            tokio::time::sleep(wait).await;
        }
    }

    pub(super) async fn rotate_if_needed(&self) -> Result<(), ManagerError> {
        let (leaf, reattestable) = {
            let c = self.creds.lock();
            (c.chain.first().cloned().unwrap_or_default(), c.reattestable)
        };
        let (not_before, not_after) = validity(&leaf)?;
        let action = self.cfg.rotation.agent_svid_action(
            self.now(),
            not_before,
            not_after,
            reattestable,
            self.agent_svid_tainted.load(Ordering::Relaxed),
            rand::random(),
        );
        match action {
            AgentSvidAction::Keep => Ok(()),
            AgentSvidAction::Renew => self.renew().await,
            AgentSvidAction::Reattest => self.reattest().await,
        }
    }

    pub(super) fn install_creds(&self, creds: AgentCreds) -> Result<(), ManagerError> {
        self.resolver
            .set_signer(&creds.chain, creds.key.signer.clone())
            .map_err(|e| ManagerError::Tls(e.to_string()))?;
        self.store_svid(&creds.chain, creds.reattestable);
        *self.creds.lock() = creds;
        self.agent_svid_tainted.store(false, Ordering::Relaxed);
        // New connections present the new SVID.
        self.client.release();
        Ok(())
    }

    pub(super) async fn renew(&self) -> Result<(), ManagerError> {
        tracing::debug!(subsystem_name = "svid_rotator", "Rotating agent SVID");
        let current = self.creds.lock().key.id.clone();
        let key = self.keys.generate(Some(&current)).await?;
        let csr = spire_pki::make_csr_with_signer(key.signer.clone(), None).map_err(pki)?;
        let chain = self.client.renew_agent(csr).await?;
        tracing::info!(
            subsystem_name = "svid_rotator",
            spiffe_id = leaf_id(&chain).as_str(),
            "Successfully rotated agent SVID"
        );
        self.install_creds(AgentCreds {
            chain,
            key,
            reattestable: false,
        })
    }

    /// Runs node attestation again over a fresh connection.
    pub async fn reattest(&self) -> Result<(), ManagerError> {
        tracing::debug!(subsystem_name = "svid_rotator", "Reattesting node");
        let bundle = self
            .cache
            .lock()
            .bundle()
            .ok_or_else(|| ManagerError::Pki("bundle not found".into()))?;
        let current = self.creds.lock().key.id.clone();
        let key = self.keys.generate(Some(&current)).await?;
        let csr = spire_pki::make_csr_with_signer(key.signer.clone(), None).map_err(pki)?;
        let mut set = BundleSet::new();
        set.insert((*bundle).clone());
        let connector =
            client::connector(&self.cfg.trust_domain, SharedBundles::new(set), None, false)?;
        let attested = attest(
            &self.cfg.server_address,
            connector,
            &self.cfg.node_attestor_name,
            self.node_attestor.as_ref(),
            csr,
        )
        .await?;
        tracing::info!(
            subsystem_name = "svid_rotator",
            spiffe_id = leaf_id(&attested.svid).as_str(),
            "Successfully reattested node"
        );
        self.install_creds(AgentCreds {
            chain: attested.svid,
            key,
            reattestable: attested.reattestable,
        })
    }
}
