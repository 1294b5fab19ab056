//! For tests: the two halves of a NodeAttestor wired together through channels, as the
//! AttestAgent stream connects them.

use async_trait::async_trait;
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};
use tokio::sync::mpsc;

struct AgentSide {
    to_server: mpsc::Sender<Vec<u8>>,
    from_server: mpsc::Receiver<Option<Vec<u8>>>,
}

#[async_trait]
impl AttestationExchange for AgentSide {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.to_server
            .send(data)
            .await
            .map_err(|e| PluginError::internal(e.to_string()))?;
        self.from_server
            .recv()
            .await
            .ok_or_else(|| PluginError::internal("closed"))
    }
}

struct ServerSide {
    to_agent: mpsc::Sender<Option<Vec<u8>>>,
    from_agent: mpsc::Receiver<Vec<u8>>,
}

#[async_trait]
impl Challenger for ServerSide {
    async fn challenge(&mut self, c: Vec<u8>) -> PluginResult<Vec<u8>> {
        self.to_agent
            .send(Some(c))
            .await
            .map_err(|e| PluginError::internal(e.to_string()))?;
        self.from_agent
            .recv()
            .await
            .ok_or_else(|| PluginError::internal("closed"))
    }
}

/// Runs one attestation; the server's error wins over the agent's.
pub(crate) async fn run(
    agent: &dyn AgentNodeAttestor,
    server: &dyn ServerNodeAttestor,
) -> PluginResult<AttestedAgent> {
    let (a2s_tx, mut a2s_rx) = mpsc::channel(4);
    let (s2a_tx, s2a_rx) = mpsc::channel(4);
    let mut agent_side = AgentSide {
        to_server: a2s_tx,
        from_server: s2a_rx,
    };
    let server_fut = async move {
        let payload = a2s_rx
            .recv()
            .await
            .ok_or_else(|| PluginError::internal("no payload"))?;
        let mut side = ServerSide {
            to_agent: s2a_tx,
            from_agent: a2s_rx,
        };
        let result = server.attest(payload, &mut side).await;
        // The stream ends: the agent's last send returns (or fails, when the server did).
        if result.is_ok() {
            let _ = side.to_agent.send(None).await;
        }
        drop(side);
        result
    };
    let (agent_result, server_result) = tokio::join!(agent.attest(&mut agent_side), server_fut);
    let attested = server_result?;
    agent_result?;
    Ok(attested)
}
