//! PostgreSQL connection strings naming several hosts, and `target_session_attrs`.
//!
//! SPIRE's PostgreSQL driver (pgx) takes libpq's multi-host form, which is how a SPIRE
//! deployment follows a primary failover:
//! `postgres://user@h1:5432,h2:5432/spire?target_session_attrs=read-write`, or
//! `host=h1,h2 port=5432,5433 target_session_attrs=read-write`. A new connection goes to
//! the first host, in order, that answers and whose session has the wanted attributes.
//!
//! sqlx's pool takes one host, so [`PgHosts`] keeps the list and the attributes, and the
//! pool's current host is switched when the database is found away (see `reach.rs`):
//! [`PgHosts::choose`] tries the hosts in libpq's order and returns the first that
//! qualifies. Every new pool connection is checked too ([`SessionAttrs::check`]), so a
//! connection to a host that became a standby is refused rather than used for writes.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::error::{DataStoreError, Result};

/// libpq's `target_session_attrs`, as pgx accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SessionAttrs {
    #[default]
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

impl SessionAttrs {
    pub(crate) fn parse(v: &str) -> Result<SessionAttrs> {
        Ok(match v {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            other => {
                return Err(DataStoreError::InvalidArgument(format!(
                    "datastore-sql: unknown target_session_attrs value: {other}"
                )));
            }
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    /// Whether `conn`'s session qualifies; the reason (pgx's words) when it does not.
    /// `prefer-standby` takes any session: the preference is applied when choosing a host.
    pub(crate) async fn check(self, conn: &mut PgConnection) -> std::result::Result<(), String> {
        let (query, refuse_when, reason) = match self {
            SessionAttrs::Any | SessionAttrs::PreferStandby => return Ok(()),
            SessionAttrs::ReadWrite => ("show transaction_read_only", "on", "read only connection"),
            SessionAttrs::ReadOnly => (
                "show transaction_read_only",
                "off",
                "connection is not read only",
            ),
            SessionAttrs::Primary => (
                "select pg_is_in_recovery()::text",
                "true",
                "server is in standby mode",
            ),
            SessionAttrs::Standby => (
                "select pg_is_in_recovery()::text",
                "false",
                "server is not in standby mode",
            ),
        };
        let row = sqlx::query(query)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        let value: String = row.try_get(0).map_err(|e| e.to_string())?;
        if value == refuse_when {
            Err(reason.to_string())
        } else {
            Ok(())
        }
    }
}

/// One host of a list, with its port if given.
pub(crate) type HostPort = (String, Option<u16>);

/// A PostgreSQL connection string's hosts, in order, and the session attributes wanted.
#[derive(Debug, Clone)]
pub(crate) struct PgHosts {
    pub(crate) hosts: Vec<PgConnectOptions>,
    pub(crate) attrs: SessionAttrs,
}

impl PgHosts {
    /// Whether choosing among hosts is needed at all (else the pool's one host is used
    /// as it is, with no check per connection).
    pub(crate) fn needs_choice(&self) -> bool {
        self.hosts.len() > 1 || self.attrs != SessionAttrs::Any
    }

    /// The first host, in libpq's order, that answers within `timeout` and qualifies.
    /// With `prefer-standby`, standbys first, then any host. The error names every host
    /// tried and why it was passed over; `Ok(None)` when none qualified but some did not
    /// answer in time (slow, not known to be away).
    pub(crate) async fn choose(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Option<usize>, String> {
        let passes: &[SessionAttrs] = match self.attrs {
            SessionAttrs::PreferStandby => &[SessionAttrs::Standby, SessionAttrs::Any],
            a => &[a],
        };
        let mut reasons = Vec::new();
        let mut slow = false;
        for &attrs in passes {
            for (i, opts) in self.hosts.iter().enumerate() {
                match tokio::time::timeout(timeout, Self::try_host(opts, attrs)).await {
                    Ok(Ok(())) => return Ok(Some(i)),
                    Ok(Err(e)) => reasons.push(format!("{}: {e}", describe(opts))),
                    Err(_) => slow = true,
                }
            }
        }
        if slow {
            return Ok(None);
        }
        Err(if self.hosts.len() == 1 {
            reasons.join("; ")
        } else {
            format!(
                "no host satisfies target_session_attrs={} ({})",
                self.attrs.as_str(),
                reasons.join("; ")
            )
        })
    }

    async fn try_host(
        opts: &PgConnectOptions,
        attrs: SessionAttrs,
    ) -> std::result::Result<(), String> {
        let mut conn = opts.connect().await.map_err(|e| e.to_string())?;
        let res = attrs.check(&mut conn).await;
        // Closing says goodbye to the server; no caller waits for it.
        tokio::spawn(async move {
            let _ = conn.close().await;
        });
        res
    }
}

/// `host:port` (or the socket directory) of one host, for messages.
pub(crate) fn describe(opts: &PgConnectOptions) -> String {
    match opts.get_socket() {
        Some(s) => format!("{}:{}", s.display(), opts.get_port()),
        None if opts.get_host().contains(':') => {
            format!("[{}]:{}", opts.get_host(), opts.get_port())
        }
        None => format!("{}:{}", opts.get_host(), opts.get_port()),
    }
}

/// Whether two options name the same server.
pub(crate) fn same_server(a: &PgConnectOptions, b: &PgConnectOptions) -> bool {
    a.get_host() == b.get_host() && a.get_port() == b.get_port() && a.get_socket() == b.get_socket()
}

/// A URL's host list split off: the URL with only its first host left (for sqlx to parse
/// the rest), each host with its port if given, and `target_session_attrs` taken out of
/// the query (sqlx does not know it).
pub(crate) fn split_url(url: &str) -> Result<(String, Vec<HostPort>, SessionAttrs)> {
    let invalid = |m: String| {
        DataStoreError::InvalidArgument(format!("datastore-sql: invalid connection string: {m}"))
    };
    let scheme_end = url
        .find("://")
        .ok_or_else(|| invalid("missing scheme".into()))?
        + 3;
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut hosts = Vec::new();
    if !hostlist.is_empty() {
        for item in hostlist.split(',') {
            hosts.push(split_host(item).map_err(invalid)?);
        }
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut attrs = SessionAttrs::Any;
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("target_session_attrs", v)) => attrs = SessionAttrs::parse(v)?,
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let first = match hosts.first() {
        Some((h, p)) => {
            let h = if h.contains(':') {
                format!("[{h}]")
            } else {
                h.clone()
            };
            match p {
                Some(p) => format!("{h}:{p}"),
                None => h,
            }
        }
        None => String::new(),
    };
    let mut rebuilt = format!("{}{userinfo}{first}{path}", &url[..scheme_end]);
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    Ok((rebuilt, hosts, attrs))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host(item: &str) -> std::result::Result<HostPort, String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} in host list"))
    };
    if let Some(rest) = item.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unterminated IPv6 address {item:?}"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), Some(parse_port(p)?))),
            None if after.is_empty() => Ok((h.to_string(), None)),
            None => Err(format!("invalid host {item:?}")),
        };
    }
    if item.is_empty() {
        return Err("empty host in host list".into());
    }
    match item.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => {
            Ok((h.to_string(), Some(parse_port(p)?)))
        }
        Some(_) => Err(format!("invalid host {item:?}")),
        None => Ok((item.to_string(), None)),
    }
}

/// libpq's key/value `host` and `port` lists paired: one port applies to every host,
/// otherwise there must be one per host.
pub(crate) fn pair_lists(hosts: &str, ports: Option<&str>) -> Result<Vec<HostPort>> {
    let hs: Vec<&str> = hosts.split(',').collect();
    let ps: Vec<Option<u16>> = match ports {
        None => vec![None; hs.len()],
        Some(p) => {
            let parsed = p
                .split(',')
                .map(|p| {
                    if p.is_empty() {
                        Ok(None)
                    } else {
                        p.parse::<u16>().map(Some).map_err(|_| {
                            DataStoreError::InvalidArgument(format!(
                                "datastore-sql: invalid port {p:?}"
                            ))
                        })
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            match parsed.len() {
                1 => vec![parsed[0]; hs.len()],
                n if n == hs.len() => parsed,
                n => {
                    return Err(DataStoreError::InvalidArgument(format!(
                        "datastore-sql: could not match {n} port numbers to {} hosts",
                        hs.len()
                    )));
                }
            }
        }
    };
    Ok(hs.into_iter().map(String::from).zip(ps).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_lists_are_split() {
        let (url, hosts, attrs) = split_url(
            "postgres://spire:pw@127.0.0.1:26501,127.0.0.1:26502,[::1]/spire?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://spire:pw@127.0.0.1:26501/spire?sslmode=disable"
        );
        assert_eq!(
            hosts,
            vec![
                ("127.0.0.1".to_string(), Some(26501)),
                ("127.0.0.1".to_string(), Some(26502)),
                ("::1".to_string(), None),
            ]
        );
        assert_eq!(attrs, SessionAttrs::ReadWrite);

        let (url, hosts, attrs) = split_url("postgresql://h/db").unwrap();
        assert_eq!(url, "postgresql://h/db");
        assert_eq!(hosts, vec![("h".to_string(), None)]);
        assert_eq!(attrs, SessionAttrs::Any);

        let (url, hosts, _) = split_url("postgres://[::1]:5433?target_session_attrs=any").unwrap();
        assert_eq!(url, "postgres://[::1]:5433");
        assert_eq!(hosts, vec![("::1".to_string(), Some(5433))]);
    }

    #[test]
    fn bad_host_lists_are_refused() {
        for (bad, msg) in [
            ("postgres://a:1,b:x/db", "invalid port \"x\" in host list"),
            ("postgres://a,,b/db", "empty host in host list"),
            ("postgres://[::1/db", "unterminated IPv6 address"),
            (
                "postgres://a/db?target_session_attrs=writable",
                "unknown target_session_attrs value: writable",
            ),
        ] {
            let err = split_url(bad).unwrap_err().to_string();
            assert!(err.contains(msg), "{bad}: {err}");
        }
        assert_eq!(
            pair_lists("a,b,c", Some("1,2")).unwrap_err().to_string(),
            "datastore-sql: could not match 2 port numbers to 3 hosts"
        );
    }

    #[test]
    fn key_value_lists_pair_ports() {
        assert_eq!(
            pair_lists("a,b", Some("5432")).unwrap(),
            vec![("a".into(), Some(5432)), ("b".into(), Some(5432))]
        );
        assert_eq!(
            pair_lists("a,b", Some("1,2")).unwrap(),
            vec![("a".into(), Some(1)), ("b".into(), Some(2))]
        );
        assert_eq!(pair_lists("a", None).unwrap(), vec![("a".into(), None)]);
    }

    #[test]
    fn attrs_round_trip() {
        for v in [
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ] {
            assert_eq!(SessionAttrs::parse(v).unwrap().as_str(), v);
        }
    }
}
