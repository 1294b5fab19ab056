//! `spire-server agent list|show|count|ban|evict|purge`.

use spire_goflag::{BoolFlag, Command, Flag, FlagSet, GoDuration, Io, Parsed, StringsFlag};
use spire_proto::spire::api::server::agent::v1::{
    BanAgentRequest, CountAgentsRequest, DeleteAgentRequest, GetAgentRequest, ListAgentsRequest,
    ListAgentsResponse, count_agents_request, list_agents_request,
};
use spire_proto::spire::api::types::{Agent, AgentMask, SelectorMatch, selector_match};

use super::{Adapter, ServerClient, ServerCommand, out, parse_selector, pluralize};
use crate::gofmt::{local_string, now_nanos, parse_expires_before, quote};
use crate::goid::{id_from_proto, parse_id};
use crate::gojson::push_go_string;
use crate::grpc::RpcError;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto, print_struct_json};

pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    vec![
        (vec!["agent", "ban"], id_command(IdOp::Ban)),
        (vec!["agent", "count"], count()),
        (vec!["agent", "evict"], id_command(IdOp::Evict)),
        (vec!["agent", "list"], list()),
        (vec!["agent", "show"], id_command(IdOp::Show)),
        (vec!["agent", "purge"], purge()),
    ]
}

fn bool_value(value: bool) -> pbjson_types::BoolValue {
    pbjson_types::BoolValue { value }
}

/// The filter flags of `agent list` and `agent count`.
struct FilterFlags {
    selectors: Flag<StringsFlag>,
    attestation_type: Flag<String>,
    can_reattest: Flag<BoolFlag>,
    banned: Flag<BoolFlag>,
    expires_before: Flag<String>,
    match_selectors: Flag<String>,
    output: Flag<OutputFlag>,
}

fn filter_flags(fs: &mut FlagSet) -> FilterFlags {
    FilterFlags {
        selectors: fs.strings(
            "selector",
            "A colon-delimited type:value selector. Can be used more than once",
        ),
        attestation_type: fs.string(
            "attestationType",
            "",
            "Filter by attestation type, like join_token or x509pop.",
        ),
        can_reattest: fs.var(
            "canReattest",
            BoolFlag::All,
            "Filter based on string received, 'true': agents that can reattest, 'false': agents that can't reattest, other value will return all.",
        ),
        banned: fs.var(
            "banned",
            BoolFlag::All,
            "Filter based on string received, 'true': banned agents, 'false': not banned agents, other value will return all.",
        ),
        expires_before: fs.string(
            "expiresBefore",
            "",
            "Filter by expiration time (format: \"2006-01-02 15:04:05 -0700 -07\")",
        ),
        match_selectors: fs.string(
            "matchSelectorsOn",
            "superset",
            "The match mode used when filtering by selectors. Options: exact, any, superset and subset",
        ),
        output: output_flag(fs),
    }
}

/// The common filter fields.
struct Filter {
    by_attestation_type: String,
    by_selector_match: Option<SelectorMatch>,
    by_banned: Option<pbjson_types::BoolValue>,
    by_can_reattest: Option<pbjson_types::BoolValue>,
    by_expires_before: String,
}

impl FilterFlags {
    fn filter(&self, m: &Parsed) -> Result<Filter, String> {
        let mut f = Filter {
            by_attestation_type: String::new(),
            by_selector_match: None,
            by_banned: None,
            by_can_reattest: None,
            by_expires_before: String::new(),
        };
        let selectors = m.get(&self.selectors);
        if !selectors.is_empty() {
            use selector_match::MatchBehavior as M;
            let behavior = match m.get(&self.match_selectors).as_str() {
                "exact" => M::MatchExact,
                "any" => M::MatchAny,
                "superset" => M::MatchSuperset,
                "subset" => M::MatchSubset,
                _ => return Err("unsupported match behavior".into()),
            };
            let mut parsed = Vec::new();
            for s in selectors.iter() {
                parsed.push(
                    parse_selector(s)
                        .map_err(|e| format!("error parsing selector {}: {e}", quote(s)))?,
                );
            }
            f.by_selector_match = Some(SelectorMatch {
                selectors: parsed,
                r#match: behavior as i32,
            });
        }
        let expires = m.get(&self.expires_before);
        if !expires.is_empty() {
            parse_expires_before(expires).map_err(|e| format!("date is not valid: {e}"))?;
            expires.clone_into(&mut f.by_expires_before);
        }
        m.get(&self.attestation_type)
            .clone_into(&mut f.by_attestation_type);
        f.by_can_reattest = match m.get(&self.can_reattest) {
            BoolFlag::False => Some(bool_value(false)),
            BoolFlag::True => Some(bool_value(true)),
            BoolFlag::All => None,
        };
        f.by_banned = match m.get(&self.banned) {
            BoolFlag::False => Some(bool_value(false)),
            BoolFlag::True => Some(bool_value(true)),
            BoolFlag::All => None,
        };
        Ok(f)
    }
}

/// `printAgents`.
fn print_agents(io: &mut Io<'_>, agents: &[Agent]) -> Result<(), String> {
    for agent in agents {
        let id = id_from_proto(agent.id.as_ref())?;
        out!(io, "SPIFFE ID         : {id}\n");
        out!(io, "Attestation type  : {}\n", agent.attestation_type);
        out!(
            io,
            "Expiration time   : {}\n",
            local_string(agent.x509svid_expires_at)
        );
        if agent.banned {
            out!(io, "Banned            : true\n");
        } else {
            out!(io, "Serial number     : {}\n", agent.x509svid_serial_number);
        }
        out!(io, "Can re-attest     : {}\n", agent.can_reattest);
        out!(io, "\n");
    }
    Ok(())
}

/// `listCommand`.
struct List(FilterFlags);

fn list() -> Box<dyn Command> {
    Adapter::new("agent list", |f| List(filter_flags(f))).boxed()
}

impl ServerCommand for List {
    fn synopsis(&self) -> &'static str {
        "Lists attested agents and their SPIFFE IDs"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let f = self.0.filter(m)?;
        let filter = list_agents_request::Filter {
            by_attestation_type: f.by_attestation_type,
            by_selector_match: f.by_selector_match,
            by_banned: f.by_banned,
            by_can_reattest: f.by_can_reattest,
            by_expires_before: f.by_expires_before,
        };
        let mut resp = ListAgentsResponse::default();
        let mut token = String::new();
        loop {
            let page = async {
                let r = c
                    .agent()
                    .await?
                    .list_agents(ListAgentsRequest {
                        filter: Some(filter.clone()),
                        output_mask: None,
                        page_size: 1000,
                        page_token: token.clone(),
                    })
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| e.to_string())?;
            resp.agents.extend(page.agents);
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        if is_json(m, &self.0.output) {
            return print_proto(io, &resp);
        }
        let n = resp.agents.len();
        if n == 0 {
            out!(io, "No attested agents found\n");
            return Ok(());
        }
        out!(
            io,
            "{}:\n\n",
            pluralize(&format!("Found {n} attested "), "agent", "agents", n)
        );
        print_agents(io, &resp.agents)
    }
}

/// `countCommand`.
struct Count(FilterFlags);

fn count() -> Box<dyn Command> {
    Adapter::new("agent count", |f| Count(filter_flags(f))).boxed()
}

impl ServerCommand for Count {
    fn synopsis(&self) -> &'static str {
        "Count attested agents"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let f = self.0.filter(m)?;
        let filter = count_agents_request::Filter {
            by_attestation_type: f.by_attestation_type,
            by_selector_match: f.by_selector_match,
            by_banned: f.by_banned,
            by_can_reattest: f.by_can_reattest,
            by_expires_before: f.by_expires_before,
        };
        let resp = async {
            let r = c
                .agent()
                .await?
                .count_agents(CountAgentsRequest {
                    filter: Some(filter),
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.0.output) {
            return print_proto(io, &resp);
        }
        let n = usize::try_from(resp.count).unwrap_or(0);
        out!(
            io,
            "{}\n",
            pluralize(&format!("{} attested ", resp.count), "agent", "agents", n)
        );
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum IdOp {
    Show,
    Ban,
    Evict,
}

/// `agent show`, `agent ban` and `agent evict`.
struct IdCommand {
    op: IdOp,
    spiffe_id: Flag<String>,
    output: Flag<OutputFlag>,
}

fn id_command(op: IdOp) -> Box<dyn Command> {
    let (name, usage) = match op {
        IdOp::Show => (
            "agent show",
            "The SPIFFE ID of the agent to show (agent identity)",
        ),
        IdOp::Ban => (
            "agent ban",
            "The SPIFFE ID of the agent to ban (agent identity)",
        ),
        IdOp::Evict => (
            "agent evict",
            "The SPIFFE ID of the agent to evict (agent identity)",
        ),
    };
    Adapter::new(name, |f| IdCommand {
        op,
        spiffe_id: f.string("spiffeID", "", usage),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for IdCommand {
    fn synopsis(&self) -> &'static str {
        match self.op {
            IdOp::Show => "Shows the details of an attested agent given its SPIFFE ID",
            IdOp::Ban => "Ban an attested agent given its SPIFFE ID",
            IdOp::Evict => "Evicts an attested agent given its SPIFFE ID",
        }
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let raw = m.get(&self.spiffe_id);
        if raw.is_empty() {
            return Err("a SPIFFE ID is required".into());
        }
        let id = parse_id(raw)?.proto();
        let json = is_json(m, &self.output);
        match self.op {
            IdOp::Show => {
                let agent = async {
                    let r = c
                        .agent()
                        .await?
                        .get_agent(GetAgentRequest {
                            id: Some(id),
                            output_mask: None,
                        })
                        .await?;
                    Ok::<_, RpcError>(r.into_inner())
                }
                .await
                .map_err(|e| e.to_string())?;
                if json {
                    return print_proto(io, &agent);
                }
                out!(io, "Found an attested agent given its SPIFFE ID\n\n");
                print_agents(io, std::slice::from_ref(&agent))?;
                for s in &agent.selectors {
                    out!(io, "Selectors         : {}:{}\n", s.r#type, s.value);
                }
                Ok(())
            }
            IdOp::Ban => {
                let resp = async {
                    let r = c
                        .agent()
                        .await?
                        .ban_agent(BanAgentRequest { id: Some(id) })
                        .await?;
                    Ok::<_, RpcError>(r.into_inner())
                }
                .await
                .map_err(|e| e.to_string())?;
                if json {
                    return print_proto(io, &resp);
                }
                out!(io, "Agent banned successfully\n");
                Ok(())
            }
            IdOp::Evict => {
                let resp = async {
                    let r = c
                        .agent()
                        .await?
                        .delete_agent(DeleteAgentRequest { id: Some(id) })
                        .await?;
                    Ok::<_, RpcError>(r.into_inner())
                }
                .await
                .map_err(|e| e.to_string())?;
                if json {
                    return print_proto(io, &resp);
                }
                out!(io, "Agent evicted successfully\n");
                Ok(())
            }
        }
    }
}

/// `purgeCommand`.
struct Purge {
    expired_for: Flag<GoDuration>,
    dry_run: Flag<bool>,
    output: Flag<OutputFlag>,
}

fn purge() -> Box<dyn Command> {
    Adapter::new("agent purge", |f| Purge {
        expired_for: f.duration(
            "expiredFor",
            GoDuration::from_secs(30 * 24 * 3600),
            "Amount of time that has passed since the agent's SVID has expired. It is used to determine which agents to purge.",
        ),
        dry_run: f.bool(
            "dryRun",
            false,
            "Indicates that the command will not perform any action, but will print the agents that would be purged.",
        ),
        output: output_flag(f),
    })
    .boxed()
}

struct Expired {
    id: String,
    deleted: bool,
    error: String,
}

impl ServerCommand for Purge {
    fn synopsis(&self) -> &'static str {
        "Purge expired agents that were attested using a non-TOFU security model based on a given time"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let resp = async {
            let r = c
                .agent()
                .await?
                .list_agents(ListAgentsRequest {
                    filter: Some(list_agents_request::Filter {
                        by_can_reattest: Some(bool_value(true)),
                        ..Default::default()
                    }),
                    output_mask: Some(AgentMask {
                        x509svid_expires_at: true,
                        ..Default::default()
                    }),
                    page_size: 0,
                    page_token: String::new(),
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("failed to list agents: {e}"))?;
        let dry_run = *m.get(&self.dry_run);
        let expired_for = i128::from(m.get(&self.expired_for).as_nanos());
        let now = now_nanos();
        let mut expired = Vec::new();
        for agent in &resp.agents {
            let id = id_from_proto(agent.id.as_ref())?;
            let since = now - i128::from(agent.x509svid_expires_at) * 1_000_000_000;
            if since > expired_for {
                let mut result = Expired {
                    id,
                    deleted: false,
                    error: String::new(),
                };
                if !dry_run {
                    let deleted = async {
                        c.agent()
                            .await?
                            .delete_agent(DeleteAgentRequest {
                                id: agent.id.clone(),
                            })
                            .await?;
                        Ok::<_, RpcError>(())
                    }
                    .await;
                    match deleted {
                        Ok(()) => result.deleted = true,
                        Err(e) => result.error = e.to_string(),
                    }
                }
                expired.push(result);
            }
        }
        if is_json(m, &self.output) {
            let mut text = String::from("[{\"expired_agents\":[");
            for (i, e) in expired.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str("{\"agent_id\":");
                push_go_string(&mut text, &e.id);
                text.push_str(&format!(",\"deleted\":{}", e.deleted));
                if !e.error.is_empty() {
                    text.push_str(",\"error\":");
                    push_go_string(&mut text, &e.error);
                }
                text.push('}');
            }
            text.push_str("]}]");
            return print_struct_json(io, &text);
        }
        if expired.is_empty() {
            out!(io, "No agents to purge.\n");
            return Ok(());
        }
        let n = expired.len();
        out!(
            io,
            "{}\n\n",
            pluralize(&format!("Found {n} expired "), "agent", "agents", n)
        );
        if dry_run {
            out!(io, "\nAgents that can be purged:\n");
            for e in &expired {
                out!(io, "SPIFFE ID         : {}\n", e.id);
            }
            return Ok(());
        }
        let purged: Vec<&Expired> = expired.iter().filter(|e| e.deleted).collect();
        let not_purged: Vec<&Expired> = expired.iter().filter(|e| !e.deleted).collect();
        if !purged.is_empty() {
            out!(io, "Agents purged:\n");
            for e in &purged {
                out!(io, "SPIFFE ID         : {}\n", e.id);
            }
        }
        if !not_purged.is_empty() {
            out!(io, "Agents not purged:\n");
            for e in &not_purged {
                out!(io, "SPIFFE ID         : {}\n", e.id);
                out!(io, "Error             : {}\n", e.error);
            }
        }
        Ok(())
    }
}
