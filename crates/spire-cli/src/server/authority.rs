//! `spire-server localauthority x509|jwt show|prepare|activate|taint|revoke`
//! and `spire-server upstreamauthority taint|revoke`.

use spire_goflag::{Command, Flag, Io, Parsed};
use spire_proto::spire::api::server::localauthority::v1::{
    ActivateJwtAuthorityRequest, ActivateX509AuthorityRequest, AuthorityState,
    GetJwtAuthorityStateRequest, GetX509AuthorityStateRequest, PrepareJwtAuthorityRequest,
    PrepareX509AuthorityRequest, RevokeJwtAuthorityRequest, RevokeX509AuthorityRequest,
    RevokeX509UpstreamAuthorityRequest, TaintJwtAuthorityRequest, TaintX509AuthorityRequest,
    TaintX509UpstreamAuthorityRequest,
};

use super::{Adapter, ServerClient, ServerCommand, out};
use crate::gofmt::utc_string;
use crate::grpc::RpcError;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    X509,
    Jwt,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Show,
    Prepare,
    Activate,
    Taint,
    Revoke,
}

pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    let mut v: Vec<(Vec<&'static str>, Box<dyn Command>)> = Vec::new();
    for (kind, word) in [(Kind::X509, "x509"), (Kind::Jwt, "jwt")] {
        for (op, name) in [
            (Op::Show, "show"),
            (Op::Prepare, "prepare"),
            (Op::Activate, "activate"),
            (Op::Taint, "taint"),
            (Op::Revoke, "revoke"),
        ] {
            v.push((vec!["localauthority", word, name], local(kind, op)));
        }
    }
    v.push((vec!["upstreamauthority", "taint"], upstream(false)));
    v.push((vec!["upstreamauthority", "revoke"], upstream(true)));
    v
}

/// `authoritycommon.prettyPrintAuthorityState`.
fn print_state(io: &mut Io<'_>, s: &AuthorityState, kind: Kind) {
    out!(io, "  Authority ID: {}\n", s.authority_id);
    out!(io, "  Expires at: {}\n", utc_string(s.expires_at));
    if kind == Kind::Jwt {
        return;
    }
    if s.upstream_authority_subject_key_id.is_empty() {
        out!(io, "  Upstream authority ID: No upstream authority\n");
    } else {
        out!(
            io,
            "  Upstream authority Subject Key ID: {}\n",
            s.upstream_authority_subject_key_id
        );
    }
}

struct Local {
    kind: Kind,
    op: Op,
    authority_id: Option<Flag<String>>,
    output: Flag<OutputFlag>,
}

fn local(kind: Kind, op: Op) -> Box<dyn Command> {
    let (word, label) = match kind {
        Kind::X509 => ("x509", "X.509"),
        Kind::Jwt => ("jwt", "JWT"),
    };
    let verb = match op {
        Op::Show => "show",
        Op::Prepare => "prepare",
        Op::Activate => "activate",
        Op::Taint => "taint",
        Op::Revoke => "revoke",
    };
    let name = format!("localauthority {word} {verb}");
    Adapter::new(&name, |f| Local {
        kind,
        op,
        authority_id: matches!(op, Op::Activate | Op::Taint | Op::Revoke).then(|| {
            f.string(
                "authorityID",
                "",
                &format!("The authority ID of the {label} authority to {verb}"),
            )
        }),
        output: output_flag(f),
    })
    .boxed()
}

impl Local {
    fn label(&self) -> &'static str {
        match self.kind {
            Kind::X509 => "X.509",
            Kind::Jwt => "JWT",
        }
    }

    fn print_slot(&self, io: &mut Io<'_>, title: &str, s: Option<&AuthorityState>) {
        let label = self.label();
        out!(io, "{title} {label} authority:\n");
        match s {
            Some(s) => print_state(io, s, self.kind),
            None => out!(
                io,
                "  No {} {label} authority found\n",
                title.to_lowercase()
            ),
        }
    }
}

impl ServerCommand for Local {
    fn synopsis(&self) -> &'static str {
        match (self.kind, self.op) {
            (Kind::X509, Op::Show) => "Shows the local X.509 authorities",
            (Kind::X509, Op::Prepare) => {
                "Prepares a new X.509 authority for use by generating a new key and injecting the resulting CA certificate into the bundle"
            }
            (Kind::X509, Op::Activate) => {
                "Activates a prepared X.509 authority for use, which will cause it to be used for all X.509 signing operations serviced by this server going forward"
            }
            (Kind::X509, Op::Taint) => {
                "Marks the previously active X.509 authority as being tainted"
            }
            (Kind::X509, Op::Revoke) => {
                "Revokes the previously active X.509 authority by removing it from the bundle and propagating this update throughout the cluster"
            }
            (Kind::Jwt, Op::Show) => "Shows the local JWT authorities",
            (Kind::Jwt, Op::Prepare) => {
                "Prepares a new JWT authority for use by generating a new key and injecting it into the bundle"
            }
            (Kind::Jwt, Op::Activate) => {
                "Activates a prepared JWT authority for use, which will cause it to be used for all JWT signing operations serviced by this server going forward"
            }
            (Kind::Jwt, Op::Taint) => "Marks the previously active JWT authority as being tainted",
            (Kind::Jwt, Op::Revoke) => {
                "Revokes the previously active JWT authority by removing it from the bundle and propagating this update throughout the cluster"
            }
        }
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let label = self.label();
        let json = is_json(m, &self.output);
        let id = self
            .authority_id
            .as_ref()
            .map(|f| m.get(f).clone())
            .unwrap_or_default();
        if self.authority_id.is_some() && id.is_empty() {
            return Err("an authority ID is required".into());
        }
        let verb = match self.op {
            Op::Show => "get",
            Op::Prepare => "prepare",
            Op::Activate => "activate",
            Op::Taint => "taint",
            Op::Revoke => "revoke",
        };
        let wrap = |e: RpcError| -> String {
            match (self.kind, self.op) {
                (Kind::Jwt, Op::Show) => e.to_string(),
                (Kind::X509, Op::Show) => format!("could not get X.509 authorities: {e}"),
                _ => format!("could not {verb} {label} authority: {e}"),
            }
        };
        if self.op == Op::Show {
            let (active, prepared, old) = match self.kind {
                Kind::X509 => {
                    let r = async {
                        let r = c
                            .local_authority()
                            .await?
                            .get_x509_authority_state(GetX509AuthorityStateRequest {})
                            .await?;
                        Ok::<_, RpcError>(r.into_inner())
                    }
                    .await
                    .map_err(wrap)?;
                    if json {
                        return print_proto(io, &r);
                    }
                    (r.active, r.prepared, r.old)
                }
                Kind::Jwt => {
                    let r = async {
                        let r = c
                            .local_authority()
                            .await?
                            .get_jwt_authority_state(GetJwtAuthorityStateRequest {})
                            .await?;
                        Ok::<_, RpcError>(r.into_inner())
                    }
                    .await
                    .map_err(wrap)?;
                    if json {
                        return print_proto(io, &r);
                    }
                    (r.active, r.prepared, r.old)
                }
            };
            self.print_slot(io, "Active", active.as_ref());
            out!(io, "\n");
            self.print_slot(io, "Prepared", prepared.as_ref());
            out!(io, "\n");
            self.print_slot(io, "Old", old.as_ref());
            return Ok(());
        }
        let state = async {
            let mut client = c.local_authority().await?;
            macro_rules! call {
                ($method:ident, $req:expr, $field:ident) => {{
                    let r = client.$method($req).await?.into_inner();
                    if json {
                        return Ok::<_, RpcError>(Err(crate::printer::proto_value(&r)));
                    }
                    Ok(Ok(r.$field))
                }};
            }
            match (self.kind, self.op) {
                (Kind::X509, Op::Prepare) => {
                    call!(
                        prepare_x509_authority,
                        PrepareX509AuthorityRequest {},
                        prepared_authority
                    )
                }
                (Kind::X509, Op::Activate) => call!(
                    activate_x509_authority,
                    ActivateX509AuthorityRequest {
                        authority_id: id.clone()
                    },
                    activated_authority
                ),
                (Kind::X509, Op::Taint) => call!(
                    taint_x509_authority,
                    TaintX509AuthorityRequest {
                        authority_id: id.clone()
                    },
                    tainted_authority
                ),
                (Kind::X509, _) => call!(
                    revoke_x509_authority,
                    RevokeX509AuthorityRequest {
                        authority_id: id.clone()
                    },
                    revoked_authority
                ),
                (Kind::Jwt, Op::Prepare) => {
                    call!(
                        prepare_jwt_authority,
                        PrepareJwtAuthorityRequest {},
                        prepared_authority
                    )
                }
                (Kind::Jwt, Op::Activate) => call!(
                    activate_jwt_authority,
                    ActivateJwtAuthorityRequest {
                        authority_id: id.clone()
                    },
                    activated_authority
                ),
                (Kind::Jwt, Op::Taint) => call!(
                    taint_jwt_authority,
                    TaintJwtAuthorityRequest {
                        authority_id: id.clone()
                    },
                    tainted_authority
                ),
                (Kind::Jwt, _) => call!(
                    revoke_jwt_authority,
                    RevokeJwtAuthorityRequest {
                        authority_id: id.clone()
                    },
                    revoked_authority
                ),
            }
        }
        .await
        .map_err(wrap)?;
        let state = match state {
            Err(json_value) => {
                return crate::printer::print_json(io, vec![json_value?]);
            }
            Ok(s) => s,
        };
        let title = match self.op {
            Op::Prepare => "Prepared",
            Op::Activate => "Activated",
            Op::Taint => "Tainted",
            _ => "Revoked",
        };
        out!(io, "{title} {label} authority:\n");
        let Some(state) = state else {
            return Err(format!(
                "internal error: expected to have {} {label} authority information",
                title.to_lowercase()
            ));
        };
        print_state(io, &state, self.kind);
        Ok(())
    }
}

struct Upstream {
    revoke: bool,
    skid: Flag<String>,
    output: Flag<OutputFlag>,
}

fn upstream(revoke: bool) -> Box<dyn Command> {
    let (name, usage) = if revoke {
        (
            "upstreamauthority revoke",
            "The X.509 Subject Key Identifier (or SKID) of the authority's CA certificate of the X.509 upstream authority to revoke",
        )
    } else {
        (
            "upstreamauthority taint",
            "The X.509 Subject Key Identifier (or SKID) of the authority's CA certificate of the upstream X.509 authority to taint",
        )
    };
    Adapter::new(name, |f| Upstream {
        revoke,
        skid: f.string("subjectKeyID", "", usage),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Upstream {
    fn synopsis(&self) -> &'static str {
        if self.revoke {
            "Revokes the previously active X.509 upstream authority by removing it from the bundle and propagating this update throughout the cluster"
        } else {
            "Marks the provided X.509 upstream authority as being tainted"
        }
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let skid = m.get(&self.skid);
        if skid.is_empty() {
            return Err("the Subject Key ID of the X.509 upstream authority is required".into());
        }
        let json = is_json(m, &self.output);
        let (title, key) = if self.revoke {
            let r = async {
                let r = c
                    .local_authority()
                    .await?
                    .revoke_x509_upstream_authority(RevokeX509UpstreamAuthorityRequest {
                        subject_key_id: skid.clone(),
                    })
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("could not revoke X.509 upstream authority: {e}"))?;
            if json {
                return print_proto(io, &r);
            }
            ("Revoked", r.upstream_authority_subject_key_id)
        } else {
            let r = async {
                let r = c
                    .local_authority()
                    .await?
                    .taint_x509_upstream_authority(TaintX509UpstreamAuthorityRequest {
                        subject_key_id: skid.clone(),
                    })
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("could not taint X.509 upstream authority: {e}"))?;
            if json {
                return print_proto(io, &r);
            }
            ("Tainted", r.upstream_authority_subject_key_id)
        };
        out!(io, "{title} X.509 upstream authority:\n");
        out!(io, "  Subject Key ID: {key}\n");
        Ok(())
    }
}
