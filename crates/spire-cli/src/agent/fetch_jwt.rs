//! `spire-agent api fetch jwt` and `spire-agent api validate jwt`.

use spire_goflag::{CommaStringsFlag, Command, Flag, Io, Parsed};
use spire_proto::workload::{JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest};

use super::{ApiAdapter, ApiCommand, WorkloadClient, with_deadline};
use crate::gojson::marshal_protojson;
use crate::grpc::RpcError;
use crate::printer::{OUTPUT_USAGE, OutputFlag, is_json, print_json, print_proto, proto_value};
use crate::server::out;

/// `fetchJWTCommand`.
struct FetchJwt {
    audience: Flag<CommaStringsFlag>,
    spiffe_id: Flag<String>,
    output: Flag<OutputFlag>,
}

pub(crate) fn fetch_command() -> Box<dyn Command> {
    ApiAdapter::new("fetch jwt", |f| {
        let audience = f.var(
            "audience",
            CommaStringsFlag::default(),
            "comma separated list of audience values",
        );
        let spiffe_id = f.string("spiffeID", "", "SPIFFE ID subject (optional)");
        let output = f.var("output", OutputFlag::default(), OUTPUT_USAGE);
        f.alias("format", "deprecated; use -output", &output);
        FetchJwt {
            audience,
            spiffe_id,
            output,
        }
    })
    .boxed()
}

impl ApiCommand for FetchJwt {
    fn synopsis(&self) -> &'static str {
        "Fetches a JWT SVID from the Workload API"
    }

    async fn run(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        client: &mut WorkloadClient,
    ) -> Result<(), String> {
        let audience = m.get(&self.audience).to_vec();
        if audience.is_empty() {
            return Err("audience must be specified".into());
        }
        let timeout = client.timeout();
        // SPIRE wraps errors of the stream set-up (dialing included), not
        // those of receiving; a deadline before the connection is up is a
        // set-up error.
        let connected = std::cell::Cell::new(false);
        let start = std::time::Instant::now();
        let fut = async {
            let req = client.request(JwtBundlesRequest {});
            let mut api = client.client().await.map_err(BundleErr::Wrapped)?;
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(BundleErr::Wrapped(RpcError::deadline()));
            }
            connected.set(true);
            let mut stream = api
                .fetch_jwt_bundles(req)
                .await
                .map_err(|e| BundleErr::Plain(e.into()))?
                .into_inner();
            match stream.message().await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(BundleErr::Eof),
                Err(e) => Err(BundleErr::Plain(e.into())),
            }
        };
        let bundles = match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) if connected.get() => Err(BundleErr::Plain(RpcError::deadline())),
                Err(_) => Err(BundleErr::Wrapped(RpcError::deadline())),
            },
            None => fut.await,
        };
        let bundles = match bundles {
            Ok(b) => b,
            Err(BundleErr::Wrapped(e)) => {
                return Err(format!("failed to receive JWT bundles: {e}"));
            }
            Err(BundleErr::Plain(e)) => return Err(e.to_string()),
            Err(BundleErr::Eof) => return Err("EOF".into()),
        };
        let svids = with_deadline(timeout, async {
            let req = client.request(JwtsvidRequest {
                audience,
                spiffe_id: m.get(&self.spiffe_id).clone(),
            });
            Ok(client
                .client()
                .await?
                .fetch_jwtsvid(req)
                .await?
                .into_inner())
        })
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.output) {
            return print_json(io, vec![proto_value(&svids)?, proto_value(&bundles)?]);
        }
        for svid in &svids.svids {
            out!(io, "token({}):\n\t{}\n", svid.spiffe_id, svid.svid);
            if !svid.hint.is_empty() {
                out!(io, "hint({}):\n\t{}\n", svid.spiffe_id, svid.hint);
            }
        }
        let mut tds: Vec<(&String, &Vec<u8>)> = bundles.bundles.iter().collect();
        tds.sort();
        for (td, jwks) in tds {
            out!(io, "bundle({td}):\n\t{}\n", String::from_utf8_lossy(jwks));
        }
        Ok(())
    }
}

/// How the bundle fetch fails: SPIRE wraps stream set-up errors only.
enum BundleErr {
    Wrapped(RpcError),
    Plain(RpcError),
    Eof,
}

/// `validateJWTCommand`.
struct ValidateJwt {
    audience: Flag<String>,
    svid: Flag<String>,
    output: Flag<OutputFlag>,
}

pub(crate) fn validate_command() -> Box<dyn Command> {
    ApiAdapter::new("validate jwt", |f| ValidateJwt {
        audience: f.string("audience", "", "expected audience value"),
        svid: f.string("svid", "", "JWT SVID"),
        output: f.var("output", OutputFlag::default(), OUTPUT_USAGE),
    })
    .boxed()
}

impl ApiCommand for ValidateJwt {
    fn synopsis(&self) -> &'static str {
        "Validates a JWT SVID"
    }

    async fn run(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        client: &mut WorkloadClient,
    ) -> Result<(), String> {
        let audience = m.get(&self.audience);
        if audience.is_empty() {
            return Err("audience must be specified".into());
        }
        let svid = m.get(&self.svid);
        if svid.is_empty() {
            return Err("svid must be specified".into());
        }
        let timeout = client.timeout();
        let resp = with_deadline(timeout, async {
            let req = client.request(ValidateJwtsvidRequest {
                audience: audience.clone(),
                svid: svid.clone(),
            });
            Ok(client
                .client()
                .await?
                .validate_jwtsvid(req)
                .await?
                .into_inner())
        })
        .await
        .map_err(|e| {
            if e.code == tonic::Code::InvalidArgument {
                format!("SVID is not valid: {}", e.message)
            } else {
                format!("unable to validate JWT SVID: {e}")
            }
        })?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        out!(io, "SVID is valid.\n");
        out!(io, "SPIFFE ID : {}\n", resp.spiffe_id);
        let claims = match &resp.claims {
            Some(c) => serde_json::to_value(c).map_err(|e| e.to_string())?,
            None => serde_json::Value::Object(serde_json::Map::new()),
        };
        let mut text = String::new();
        marshal_protojson(&claims, &mut text);
        out!(io, "Claims    : {text}\n");
        Ok(())
    }
}
