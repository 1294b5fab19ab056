//! `shutdown_all` (its own test binary: it ends every plugin the process started).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use spire_plugin_host::ExternalPlugin;
use spire_plugin_host::broker::HostServices;
use spire_plugin_host::workloadattestor::ExternalWorkloadAttestor;

mod common;
use common::{core, plugins_dir, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn every_started_plugin_is_shut_down() {
    let path = plugins_dir().join("workloadattestor-pidinfo");
    let mut pids = Vec::new();
    let mut attestors = Vec::new();
    for name in ["a", "b"] {
        let attestor = ExternalPlugin::start(
            &spec(name, "WorkloadAttestor", &path, None),
            &core(),
            Some("tag = \"x\""),
            HostServices::none(),
            |p| {
                pids.push(p.pid().unwrap());
                ExternalWorkloadAttestor::bind(p)
            },
        )
        .await
        .unwrap();
        attestors.push(attestor);
    }
    spire_plugin_host::shutdown_all().await;
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "plugin {pid} still running"
        );
    }
    // The adapters still hold their plugins: their calls now fail, naming the plugin.
    use spire_plugin::WorkloadAttestor as _;
    let err = attestors[0].attest(1).await.unwrap_err();
    assert!(err.message.contains("\"a\""), "{err:?}");
}
