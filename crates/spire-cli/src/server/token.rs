//! `spire-server token generate`.

use spire_goflag::{Command, Flag, Io, Parsed};
use spire_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;

use super::{Adapter, ServerClient, ServerCommand, out};
use crate::goid::parse_id;
use crate::grpc::RpcError;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};

/// `generateCommand`.
struct Generate {
    ttl: Flag<i64>,
    spiffe_id: Flag<String>,
    output: Flag<OutputFlag>,
}

pub(crate) fn command() -> Box<dyn Command> {
    Adapter::new("generate", |f| Generate {
        ttl: f.int("ttl", 600, "Token TTL in seconds"),
        spiffe_id: f.string(
            "spiffeID",
            "",
            "Additional SPIFFE ID to assign the token owner (optional)",
        ),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Generate {
    fn synopsis(&self) -> &'static str {
        "Generates a join token"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let raw = m.get(&self.spiffe_id);
        let agent_id = if raw.is_empty() {
            None
        } else {
            Some(parse_id(raw)?.proto())
        };
        let ttl = *m.get(&self.ttl);
        let ttl = i32::try_from(ttl).map_err(|_| {
            format!("invalid value for TTL: overflow converting int({ttl}) to int32")
        })?;
        let token = async {
            let r = c
                .agent()
                .await?
                .create_join_token(CreateJoinTokenRequest {
                    ttl,
                    token: String::new(),
                    agent_id,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.output) {
            return print_proto(io, &token);
        }
        out!(io, "Token: {}\n", token.value);
        if raw.is_empty() {
            out!(io, "Warning: Missing SPIFFE ID.\n");
        }
        Ok(())
    }
}
