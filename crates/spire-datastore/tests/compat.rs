//! Cross-compatibility with reference SPIRE 1.13.3:
//! - a SQLite database written by reference SPIRE (testdata) reads back;
//! - our schema is the one reference SPIRE creates, on every backend;
//! - reference `spire-server` runs on a database we wrote, lists our
//!   records, writes its own, and we read those back.
//!
//! The reference binary is found through the repo's scripts
//! (`spire_testsupport::reference_bin_dir`: `$SPIRE_REF_BIN_DIR`, else
//! `conformance/build-reference.sh`). The tests that need it are ignored by a
//! plain `cargo test` and run by `scripts/test.sh`, where it is required.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{id, now_unix, sels, td};
use serde_json::Value;
use spire_datastore::*;

const REFERENCE_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/spire-1.13.3-datastore.sqlite3"
);

fn reference_binary() -> Option<PathBuf> {
    // Only the ignored tests that scripts/test.sh runs ask for it: required there.
    Some(spire_testsupport::require_reference_bin_dir().join("spire-server"))
}

fn is_sqlite_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b.len() >= 25
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with("+00:00");
    let frac = &s[19..s.len() - 6];
    shape
        && (frac.is_empty()
            || (frac.starts_with('.')
                && frac.len() <= 10
                && frac[1..].bytes().all(|c| c.is_ascii_digit())))
}

#[tokio::test]
async fn reads_database_written_by_reference_spire() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datastore.sqlite3");
    std::fs::copy(REFERENCE_DB, &path).unwrap();
    let store = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        path.to_string_lossy().to_string(),
    ))
    .await
    .unwrap();
    // SPIRE raises the recorded code version when a newer release opens it.
    assert_eq!(
        store.migration_outcome(),
        &MigrationOutcome::CodeVersionUpdated {
            previous: "1.13.3-dev-unk".into()
        }
    );
    assert_eq!(store.migration_info().await.unwrap(), (23, "1.13.3".into()));

    let entries = store
        .list_registration_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 5);
    let by_id = |i: &str| entries.iter().find(|e| e.entry_id == i).unwrap().clone();
    let web = by_id("f0cd2e9a-0ab0-4564-a694-0dfeff39b4e8");
    assert_eq!(web.spiffe_id, id("spiffe://example.org/web"));
    assert_eq!(
        web.parent_id,
        id("spiffe://example.org/spire/agent/join_token/x")
    );
    assert_eq!(web.selectors, sels(&["unix:uid:1000", "unix:gid:1000"]));
    assert_eq!(
        web.dns_names,
        vec!["web.example.org".to_string(), "www.example.org".to_string()]
    );
    assert_eq!(web.federates_with, vec![td("other.org"), td("third.org")]);
    assert_eq!(
        (web.x509_svid_ttl, web.jwt_svid_ttl, web.hint.as_str()),
        (3600, 300, "webhint")
    );
    assert_eq!(web.created_at, 1_795_886_114, "rounded creation time");
    let dbe = by_id("b397a90e-e031-493d-886a-2b1adf70e0c2");
    assert!(dbe.admin && dbe.downstream && dbe.store_svid);
    assert_eq!(dbe.entry_expiry, 4_102_444_800);
    let wl = by_id("2bb9ff29-59e5-4818-afa2-07903f2d94c1");
    assert_eq!(wl.revision_number, 1);
    assert_eq!(wl.x509_svid_ttl, 600);
    assert_eq!(
        wl.selectors,
        sels(&[
            "docker:label:app:x",
            "docker:image_id:abc",
            "docker:env:PROD=1"
        ])
    );
    assert_eq!(
        by_id("my-custom-id.1").parent_id,
        id("spiffe://example.org/spire/server")
    );
    let alias = by_id("09f13696-3e33-4acf-9807-40158ae402c7");
    assert_eq!(
        alias.selectors,
        sels(&[
            "spiffe_id:spiffe://example.org/spire/agent/join_token/0462de17-8925-4d41-8a9c-08fd543a56d1"
        ])
    );
    // Filters run on SPIRE's rows.
    let found = store
        .list_registration_entries(ListEntriesRequest {
            by_selectors: Some(BySelectors {
                selectors: sels(&["unix:gid:1000", "unix:uid:1000"]),
                match_behavior: MatchBehavior::Exact,
            }),
            by_federates_with: Some(ByFederatesWith {
                trust_domains: vec![td("third.org")],
                match_behavior: MatchBehavior::Any,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.entries, vec![web.clone()]);
    let events = store
        .list_registration_entry_events(ListEventsRequest::default())
        .await
        .unwrap();
    assert_eq!(events.len(), 8);
    assert_eq!(events[6].entry_id, "to-delete");

    let nodes = store
        .list_attested_nodes(ListNodesRequest {
            fetch_selectors: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .nodes;
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        nodes[0].spiffe_id,
        id("spiffe://example.org/spire/agent/join_token/ef020eac-917e-4851-9729-8cdbd94596b7")
    );
    assert_eq!(nodes[0].attestation_data_type, "join_token");
    assert_eq!(
        nodes[0].cert_serial_number,
        "62804360209862944822982082641003530076"
    );
    assert_eq!(nodes[0].cert_not_after, 1_795_889_717);
    assert_eq!(nodes[0].new_cert_not_after, 0);
    assert!(!nodes[0].can_reattest && !nodes[0].is_banned());
    assert!(nodes[1].is_banned());
    let banned = store
        .list_attested_nodes(ListNodesRequest {
            by_banned: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(banned.nodes, vec![nodes[1].clone()]);
    assert_eq!(
        store
            .list_attested_node_events(ListEventsRequest::default())
            .await
            .unwrap()
            .len(),
        5
    );

    assert_eq!(
        store
            .fetch_join_token("0462de17-8925-4d41-8a9c-08fd543a56d1")
            .await
            .unwrap(),
        Some(JoinToken {
            token: "0462de17-8925-4d41-8a9c-08fd543a56d1".into(),
            expiry: 1_795_972_514
        })
    );
    let bundles = store.list_bundles(None).await.unwrap().bundles;
    assert_eq!(
        bundles
            .iter()
            .map(|b| b.trust_domain.name().to_string())
            .collect::<Vec<_>>(),
        ["example.org", "other.org", "third.org"]
    );
    let own = &bundles[0];
    assert_eq!(own.root_cas.len(), 1);
    assert_eq!(own.jwt_signing_keys.len(), 1);
    assert_eq!(
        own.jwt_signing_keys[0].kid,
        "N725weL91RPkM45U9BWCui9V34iSHJ2P"
    );
    // Converts to spiffe-core's bundle (keys parse).
    let core = spiffe_core::Bundle::try_from(own).unwrap();
    assert_eq!(core.jwt_authorities.len(), 1);
    assert_eq!(&StoredBundle::from(&core), own);
    let frs = store
        .list_federation_relationships(None)
        .await
        .unwrap()
        .relationships;
    assert_eq!(frs.len(), 2);
    assert_eq!(
        frs[0].bundle_endpoint_url.as_str(),
        "https://other.org:8443/bundle"
    );
    assert_eq!(
        frs[0].bundle_endpoint_profile,
        BundleEndpointProfile::HttpsWeb
    );
    assert_eq!(
        frs[0].trust_domain_bundle.as_ref().unwrap().trust_domain,
        td("other.org")
    );
    assert_eq!(
        frs[1].bundle_endpoint_profile,
        BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: id("spiffe://third.org/spire/server")
        }
    );
    let j = store
        .fetch_ca_journal("bb0691b53a47b90d6af22e86fce4f6bde8ea71bb")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.id, 1);
    {
        use prost::Message;
        let entries = spire_proto::journal::Entries::decode(j.data.as_slice()).unwrap();
        assert_eq!(
            entries.x509_c_as[0].authority_id,
            "bb0691b53a47b90d6af22e86fce4f6bde8ea71bb"
        );
    }
    // The subject key ID we compute matches SPIRE's authority ID.
    assert!(
        store
            .taint_x509_ca(
                &td("example.org"),
                "bb0691b53a47b90d6af22e86fce4f6bde8ea71bb"
            )
            .await
            .is_ok()
    );

    // Our writes use the same timestamp format as SPIRE's rows.
    store
        .create_join_token(JoinToken {
            token: "ours".into(),
            expiry: now_unix() + 60,
        })
        .await
        .unwrap();
    for row in store
        .raw_query("SELECT created_at, updated_at FROM join_tokens", 2)
        .await
        .unwrap()
    {
        for v in row {
            let v = v.unwrap();
            assert!(is_sqlite_timestamp(&v), "{v}");
        }
    }
    store.close().await;
}

#[tokio::test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn schema_is_identical_to_reference_spire() {
    // SQLite: the catalog text of a fresh database equals SPIRE's.
    let dir = tempfile::tempdir().unwrap();
    let ours = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        dir.path().join("a.db").to_string_lossy().to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(ours.migration_outcome(), &MigrationOutcome::Initialized);
    assert_eq!(
        ours.migration_info().await.unwrap(),
        (23, SPIRE_CODE_VERSION.to_string())
    );
    let copy = dir.path().join("ref.db");
    std::fs::copy(REFERENCE_DB, &copy).unwrap();
    let reference = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        copy.to_string_lossy().to_string(),
    ))
    .await
    .unwrap();
    // gorm creates a table's indexes in Go map order: compare sorted.
    let q = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name";
    assert_eq!(
        ours.raw_query(q, 4).await.unwrap(),
        reference.raw_query(q, 4).await.unwrap()
    );
    let migration_row = ours
        .raw_query(
            "SELECT created_at, updated_at, code_version FROM migrations",
            3,
        )
        .await
        .unwrap();
    assert!(is_sqlite_timestamp(migration_row[0][0].as_deref().unwrap()));
    ours.close().await;
    reference.close().await;

    // PostgreSQL and MySQL: compare catalogs with a database reference SPIRE initialised.
    let Some(bin) = reference_binary() else {
        return;
    };
    for (ours_db, theirs_db) in [
        (common::postgres_db().await, common::postgres_db().await),
        (common::mysql_db().await, common::mysql_db().await),
    ] {
        let (Some(ours_db), Some(theirs_db)) = (ours_db, theirs_db) else {
            continue;
        };
        let n = ours_db.name;
        let ours = ours_db.open().await;
        let work = tempfile::tempdir().unwrap();
        let server = RefServer::start(&bin, work.path(), &theirs_db.config);
        drop(server);
        let theirs = SqlStore::open(&theirs_db.config).await.unwrap();
        assert_eq!(
            theirs.migration_outcome(),
            &MigrationOutcome::CodeVersionUpdated {
                previous: "1.13.3-dev-unk".into()
            }
        );
        let queries: &[(&str, usize)] = if n == "postgres" {
            &[
                (
                    "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, COALESCE(column_default, '')::text \
                     FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
                    5,
                ),
                (
                    "SELECT indexname::text, indexdef::text FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname",
                    2,
                ),
                (
                    "SELECT conname::text, pg_get_constraintdef(oid)::text FROM pg_constraint \
                     WHERE connamespace = current_schema()::regnamespace ORDER BY conname",
                    2,
                ),
                (
                    "SELECT sequence_name::text, data_type::text, start_value::text, increment::text FROM information_schema.sequences \
                     WHERE sequence_schema = current_schema() ORDER BY sequence_name",
                    4,
                ),
            ]
        } else {
            &[
                (
                    "SELECT CONCAT(table_name, '.', column_name), CONCAT(column_type, ' ', is_nullable, ' ', IFNULL(column_default, 'NULL'), ' ', column_key, ' ', extra, ' ', IFNULL(collation_name, '')) \
                     FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position",
                    2,
                ),
                (
                    "SELECT CONCAT(table_name, ' ', index_name, ' ', non_unique, ' ', seq_in_index, ' ', column_name) \
                     FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY table_name, index_name, seq_in_index",
                    1,
                ),
                (
                    "SELECT CONCAT(table_name, ' ', engine, ' ', row_format, ' ', table_collation, ' ', IFNULL(create_options, '')) \
                     FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name",
                    1,
                ),
            ]
        };
        for (q, cols) in queries {
            let a = ours.raw_query(q, *cols).await.unwrap();
            let b = theirs.raw_query(q, *cols).await.unwrap();
            assert!(!a.is_empty(), "[{n}] {q}");
            assert_eq!(a, b, "[{n}] catalog differs: {q}");
        }
        ours.close().await;
        theirs.close().await;
        ours_db.cleanup().await;
        theirs_db.cleanup().await;
    }
}

/// A reference `spire-server run` on a database; killed on drop.
struct RefServer {
    child: Child,
    bin: PathBuf,
    socket: PathBuf,
}

impl RefServer {
    fn start(bin: &Path, dir: &Path, cfg: &SqlConfig) -> RefServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socket = dir.join("api.sock");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let db_type = cfg.database_type().unwrap().as_str();
        let conf = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "example.org"
    data_dir = "{data}"
    log_level = "DEBUG"
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "{db_type}"
            connection_string = "{conn}"
        }}
    }}
    KeyManager "memory" {{ plugin_data {{}} }}
    NodeAttestor "join_token" {{ plugin_data {{}} }}
}}
"#,
            socket = socket.display(),
            data = data.display(),
            conn = cfg.connection_string,
        );
        let conf_path = dir.join("server.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(bin)
            .arg("run")
            .arg("-config")
            .arg(&conf_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let server = RefServer {
            child,
            bin: bin.to_path_buf(),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(bin)
                .args(["healthcheck", "-shallow", "-socketPath"])
                .arg(&server.socket)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                panic!("reference spire-server did not become healthy:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "spire-server {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-output", "json"]);
        serde_json::from_str(&self.cli(&a)).unwrap()
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ca_cert() -> Vec<u8> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec()
}

#[tokio::test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn reference_server_shares_our_database() {
    let Some(bin) = reference_binary() else {
        return;
    };
    for db in common::databases().await {
        let n = db.name;
        let store = db.open().await;
        let now = now_unix();
        let mut other = StoredBundle::new(td("other.org"));
        other.root_cas = vec![RootCa {
            der: ca_cert(),
            tainted: false,
        }];
        store
            .create_federation_relationship(FederationRelationship {
                trust_domain: td("other.org"),
                bundle_endpoint_url: spire_datastore::BundleEndpointUrl::parse(
                    "https://other.org:8443/bundle",
                )
                .unwrap(),
                bundle_endpoint_profile: BundleEndpointProfile::HttpsWeb,
                trust_domain_bundle: Some(other),
            })
            .await
            .unwrap();
        let mut web = RegistrationEntry::new(
            id("spiffe://example.org/web"),
            id("spiffe://example.org/spire/agent/x509pop/n1"),
            sels(&["unix:uid:1000", "unix:gid:1000"]),
        );
        web.entry_id = "ours-web".into();
        web.dns_names = vec!["web.example.org".into()];
        web.federates_with = vec![td("other.org")];
        web.hint = "h".into();
        web.x509_svid_ttl = 3600;
        web.jwt_svid_ttl = 120;
        let mut db_entry = RegistrationEntry::new(
            id("spiffe://example.org/db"),
            id("spiffe://example.org/spire/agent/x509pop/n1"),
            sels(&["k8s:ns:db"]),
        );
        db_entry.entry_id = "ours-db".into();
        db_entry.admin = true;
        db_entry.downstream = true;
        db_entry.entry_expiry = 4_102_444_800;
        for r in store
            .create_or_return_registration_entries(vec![web.clone(), db_entry.clone()])
            .await
            .unwrap()
        {
            r.unwrap();
        }
        let node = AttestedNode {
            spiffe_id: id("spiffe://example.org/spire/agent/x509pop/n1"),
            attestation_data_type: "x509pop".into(),
            cert_serial_number: "1234".into(),
            cert_not_after: now + 3600,
            new_cert_serial_number: String::new(),
            new_cert_not_after: 0,
            selectors: Vec::new(),
            can_reattest: true,
        };
        store.create_attested_node(node.clone()).await.unwrap();
        store
            .set_node_selectors(&node.spiffe_id, sels(&["x509pop:subject:cn:n1"]))
            .await
            .unwrap();
        store.close().await;

        let work = tempfile::tempdir().unwrap();
        let server = RefServer::start(&bin, work.path(), &db.config);
        let shown = server.json(&["entry", "show"]);
        let entries = shown["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "[{n}] {shown}");
        let w = entries.iter().find(|e| e["id"] == "ours-web").unwrap();
        assert_eq!(w["spiffe_id"]["path"], "/web");
        assert_eq!(w["parent_id"]["path"], "/spire/agent/x509pop/n1");
        assert_eq!(w["dns_names"], serde_json::json!(["web.example.org"]));
        assert_eq!(w["federates_with"], serde_json::json!(["other.org"]));
        assert_eq!(w["hint"], "h");
        assert_eq!(w["x509_svid_ttl"], 3600);
        assert_eq!(w["jwt_svid_ttl"], 120);
        assert_eq!(w["revision_number"], "0");
        let mut s: Vec<String> = w["selectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    s["type"].as_str().unwrap(),
                    s["value"].as_str().unwrap()
                )
            })
            .collect();
        s.sort();
        assert_eq!(s, vec!["unix:gid:1000", "unix:uid:1000"], "[{n}]");
        let d = entries.iter().find(|e| e["id"] == "ours-db").unwrap();
        assert_eq!(
            (
                d["admin"].as_bool(),
                d["downstream"].as_bool(),
                d["expires_at"].as_str()
            ),
            (Some(true), Some(true), Some("4102444800"))
        );
        // SPIRE's own selector query on our rows.
        let by_sel = server.json(&[
            "entry",
            "show",
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:gid:1000",
        ]);
        assert_eq!(
            by_sel["entries"].as_array().unwrap().len(),
            1,
            "[{n}] {by_sel}"
        );
        let fed = server.json(&["entry", "show", "-federatesWith", "spiffe://other.org"]);
        assert_eq!(fed["entries"][0]["id"], "ours-web", "[{n}]");

        let agent = server.json(&[
            "agent",
            "show",
            "-spiffeID",
            "spiffe://example.org/spire/agent/x509pop/n1",
        ]);
        assert_eq!(agent["x509svid_serial_number"], "1234", "[{n}] {agent}");
        assert_eq!(agent["x509svid_expires_at"], (now + 3600).to_string());
        assert_eq!(agent["selectors"][0]["value"], "subject:cn:n1");
        assert_eq!(agent["can_reattest"], true);
        let feds = server.json(&["federation", "list"]);
        assert_eq!(
            feds["federation_relationships"][0]["trust_domain"], "other.org",
            "[{n}] {feds}"
        );
        assert_eq!(
            feds["federation_relationships"][0]["bundle_endpoint_url"],
            "https://other.org:8443/bundle"
        );
        let bundles = server.json(&["bundle", "list"]);
        assert_eq!(
            bundles["bundles"].as_array().unwrap().len(),
            1,
            "[{n}] federated bundles: {bundles}"
        );

        // Reference SPIRE writes; we read.
        server.cli(&[
            "entry",
            "create",
            "-entryID",
            "theirs",
            "-parentID",
            "spiffe://example.org/spire/agent/x509pop/n1",
            "-spiffeID",
            "spiffe://example.org/theirs",
            "-selector",
            "docker:label:a:b",
            "-dns",
            "t.example.org",
            "-federatesWith",
            "spiffe://other.org",
        ]);
        server.cli(&[
            "entry",
            "update",
            "-entryID",
            "ours-db",
            "-parentID",
            "spiffe://example.org/spire/agent/x509pop/n1",
            "-spiffeID",
            "spiffe://example.org/db2",
            "-selector",
            "k8s:ns:db",
            "-selector",
            "k8s:sa:x",
        ]);
        server.cli(&[
            "agent",
            "ban",
            "-spiffeID",
            "spiffe://example.org/spire/agent/x509pop/n1",
        ]);
        server.cli(&["entry", "delete", "-entryID", "ours-web"]);
        drop(server);

        let store = db.open().await;
        assert_eq!(
            store.migration_outcome(),
            &MigrationOutcome::UpToDate,
            "[{n}]"
        );
        let theirs = store
            .fetch_registration_entry("theirs")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(theirs.selectors, sels(&["docker:label:a:b"]), "[{n}]");
        assert_eq!(theirs.dns_names, vec!["t.example.org".to_string()]);
        assert_eq!(theirs.federates_with, vec![td("other.org")]);
        let updated = store
            .fetch_registration_entry("ours-db")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.revision_number, 1, "[{n}]");
        assert_eq!(updated.spiffe_id, id("spiffe://example.org/db2"));
        assert_eq!(updated.selectors, sels(&["k8s:ns:db", "k8s:sa:x"]));
        assert!(
            store
                .fetch_registration_entry("ours-web")
                .await
                .unwrap()
                .is_none()
        );
        let node_now = store
            .fetch_attested_node(&node.spiffe_id)
            .await
            .unwrap()
            .unwrap();
        assert!(node_now.is_banned(), "[{n}]");
        // Events written by both servers, in one sequence.
        let events: Vec<String> = store
            .list_registration_entry_events(ListEventsRequest::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.entry_id)
            .collect();
        assert_eq!(
            events,
            ["ours-web", "ours-db", "theirs", "ours-db", "ours-web"],
            "[{n}]"
        );
        let node_events = store
            .list_attested_node_events(ListEventsRequest::default())
            .await
            .unwrap();
        assert_eq!(node_events.len(), 3, "[{n}] create, set selectors, ban");
        // SPIRE's own bundle and CA journal are readable.
        let own = store
            .fetch_bundle(&td("example.org"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            !own.root_cas.is_empty() && !own.jwt_signing_keys.is_empty(),
            "[{n}]"
        );
        assert_eq!(store.list_ca_journals().await.unwrap().len(), 1);
        store.close().await;
        db.cleanup().await;
    }
}
