//! Tests of the bundle manager with a fake source and updater, on paused tokio time.

use std::str::FromStr;

use super::*;

fn td(s: &str) -> TrustDomain {
    TrustDomain::from_str(s).unwrap()
}

fn web(url: &str) -> TrustDomainConfig {
    TrustDomainConfig {
        endpoint_url: url.to_owned(),
        profile: EndpointProfile::HttpsWeb,
    }
}

#[derive(Default)]
struct FakeSource(parking_lot::Mutex<BTreeMap<TrustDomain, TrustDomainConfig>>);

#[async_trait::async_trait]
impl ConfigSource for Arc<FakeSource> {
    async fn configs(&self) -> Result<BTreeMap<TrustDomain, TrustDomainConfig>, String> {
        Ok(self.0.lock().clone())
    }
}

/// Records (instant, td, url) of every update and answers `next`, failing when `fail`.
struct FakeUpdater {
    calls: parking_lot::Mutex<Vec<(tokio::time::Instant, TrustDomain, String)>>,
    next: Duration,
    fail: parking_lot::Mutex<bool>,
}

#[async_trait::async_trait]
impl Updater for FakeUpdater {
    async fn update(
        &self,
        td: &TrustDomain,
        config: &TrustDomainConfig,
    ) -> (Duration, Result<bool, String>) {
        self.calls.lock().push((
            tokio::time::Instant::now(),
            td.clone(),
            config.endpoint_url.clone(),
        ));
        if *self.fail.lock() {
            (self.next, Err("endpoint down".into()))
        } else {
            (self.next, Ok(true))
        }
    }
}

fn setup(next: Duration) -> (Arc<FakeSource>, Arc<FakeUpdater>, Arc<Manager>) {
    let source = Arc::new(FakeSource::default());
    let updater = Arc::new(FakeUpdater {
        calls: parking_lot::Mutex::new(Vec::new()),
        next,
        fail: parking_lot::Mutex::new(false),
    });
    let manager = Manager::new(Box::new(source.clone()), updater.clone());
    (source, updater, manager)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn updaters_poll_on_their_schedule_and_stop_when_the_relationship_goes() {
    let (source, updater, manager) = setup(Duration::from_secs(150));
    source.0.lock().insert(td("b.test"), web("https://b/"));
    let start = tokio::time::Instant::now();
    tokio::spawn(manager.clone().run());
    settle().await;
    assert_eq!(manager.managed().await, vec![td("b.test")]);
    assert_eq!(updater.calls.lock().len(), 1);

    // Next poll exactly `next` later (config re-reads in between change nothing).
    tokio::time::sleep(Duration::from_secs(149)).await;
    settle().await;
    assert_eq!(updater.calls.lock().len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    {
        let calls = updater.calls.lock();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].0 - start, Duration::from_secs(150));
    }

    // A changed URL is used from the next poll on.
    source.0.lock().insert(td("b.test"), web("https://b2/"));
    manager.trigger_config_reload();
    tokio::time::sleep(Duration::from_secs(150)).await;
    settle().await;
    assert_eq!(updater.calls.lock().last().unwrap().2, "https://b2/");

    // The relationship is deleted: no more polls.
    source.0.lock().clear();
    manager.trigger_config_reload();
    settle().await;
    assert!(manager.managed().await.is_empty());
    let n = updater.calls.lock().len();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    settle().await;
    assert_eq!(updater.calls.lock().len(), n);
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_retried_on_schedule() {
    let (source, updater, manager) = setup(Duration::from_secs(60));
    *updater.fail.lock() = true;
    source.0.lock().insert(td("b.test"), web("https://b/"));
    tokio::spawn(manager.clone().run());
    settle().await;
    tokio::time::sleep(Duration::from_secs(181)).await;
    settle().await;
    assert_eq!(updater.calls.lock().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn refresh_bundle_for_reads_the_sources_first() {
    let (source, updater, manager) = setup(Duration::from_secs(300));
    assert_eq!(manager.refresh_bundle_for(&td("b.test")).await, Ok(false));
    source.0.lock().insert(td("b.test"), web("https://b/"));
    // Not yet managed when asked: the sources are re-read, then it is updated.
    assert_eq!(manager.refresh_bundle_for(&td("b.test")).await, Ok(true));
    settle().await;
    assert!(updater.calls.lock().len() >= 2);
    *updater.fail.lock() = true;
    assert_eq!(
        manager.refresh_bundle_for(&td("b.test")).await,
        Err("endpoint down".to_owned())
    );
}

#[test]
fn federates_with_maps_to_updater_configs() {
    let fed = BTreeMap::from([(
        td("c.test"),
        spire_config::FederatesWithConfig {
            bundle_endpoint_url: "https://c/".into(),
            profile: spire_config::FederatesWithProfile::HttpsSpiffe {
                endpoint_spiffe_id: spiffe_core::SpiffeId::from_str("spiffe://c.test/x").unwrap(),
            },
        },
    )]);
    let got = from_config(&fed);
    assert_eq!(
        got[&td("c.test")].profile,
        EndpointProfile::HttpsSpiffe(spiffe_core::SpiffeId::from_str("spiffe://c.test/x").unwrap())
    );
}

/// An update that takes a while (it fetched before a change upstream) and a
/// `RefreshBundle` never overlap: the refresh starts after the poll's update has stored.
struct SlowFirst {
    active: parking_lot::Mutex<u32>,
    overlapped: parking_lot::Mutex<bool>,
    calls: parking_lot::Mutex<u32>,
}

#[async_trait::async_trait]
impl Updater for SlowFirst {
    async fn update(
        &self,
        _td: &TrustDomain,
        _config: &TrustDomainConfig,
    ) -> (Duration, Result<bool, String>) {
        let first = {
            let mut calls = self.calls.lock();
            *calls += 1;
            *calls == 1
        };
        {
            let mut active = self.active.lock();
            *active += 1;
            if *active > 1 {
                *self.overlapped.lock() = true;
            }
        }
        if first {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        *self.active.lock() -= 1;
        (Duration::from_secs(3600), Ok(true))
    }
}

#[tokio::test(start_paused = true)]
async fn a_refresh_waits_for_the_update_in_flight() {
    let source = Arc::new(FakeSource::default());
    source.0.lock().insert(td("b.test"), web("https://b/"));
    let updater = Arc::new(SlowFirst {
        active: parking_lot::Mutex::new(0),
        overlapped: parking_lot::Mutex::new(false),
        calls: parking_lot::Mutex::new(0),
    });
    let manager = Manager::new(Box::new(source.clone()), updater.clone());
    tokio::spawn(manager.clone().run());
    settle().await;
    assert_eq!(
        *updater.calls.lock(),
        1,
        "the poll's first update is in flight"
    );
    assert_eq!(manager.refresh_bundle_for(&td("b.test")).await, Ok(true));
    assert_eq!(*updater.calls.lock(), 2);
    assert!(
        !*updater.overlapped.lock(),
        "updates of one trust domain never overlap"
    );
}
