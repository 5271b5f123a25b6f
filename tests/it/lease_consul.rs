//! The Consul lease against a real Consul agent (1.8.7): acquire with LiteFS's key value,
//! blocking-query watches, a crashed holder's session expiring and a candidate taking over
//! after the lock-delay with a higher epoch, graceful release handing over at once, and a
//! primary that cannot reach Consul demoting itself before its session could expire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::consul::Consul;
use crate::common::{need, tmp};
use litefleet::core::lease::{Holder, LeaseView};
use litefleet::core::types::Epoch;
use litefleet::lease::actor::{LeaseActor, LeaseArgs};
use litefleet::lease::consul::ConsulLease;
use litefleet::lease::{LeaseBackend, LeaseError};
use ractor::{Actor, ActorRef};

const TTL: Duration = Duration::from_secs(10);
const LOCK_DELAY: Duration = Duration::from_secs(1);

type Views = Arc<Mutex<Vec<(&'static str, LeaseView, Instant)>>>;
/// Each node's newest write fence (`None`: no fence).
type Fences = Arc<Mutex<std::collections::HashMap<&'static str, Option<Instant>>>>;

fn holder(name: &str) -> Holder {
    Holder { hostname: name.into(), advertise_url: format!("http://{name}:20202") }
}

fn backend(c: &Consul, key: &str, name: &str) -> Arc<ConsulLease> {
    Arc::new(ConsulLease::new(&c.url(), key, TTL, LOCK_DELAY, 1, holder(name)).unwrap())
}

async fn node(
    name: &'static str,
    b: Arc<ConsulLease>,
    views: &Views,
    fences: &Fences,
) -> ActorRef<litefleet::lease::actor::LeaseMsg> {
    let f = fences.clone();
    let on_fence = Box::new(move |until: Option<Instant>| {
        f.lock().unwrap().insert(name, until);
    });
    let v = views.clone();
    let on_change = Box::new(move |view: LeaseView| {
        #[allow(clippy::disallowed_methods)]
        v.lock().unwrap().push((name, view, Instant::now()));
    });
    let backend: Arc<dyn LeaseBackend> = b;
    let args = LeaseArgs { backend, candidate: true, on_change, on_fence };
    Actor::spawn(None, LeaseActor, args).await.unwrap().0
}

/// Waits for `name`'s newest view to satisfy `f`; returns it and when it was published.
#[allow(clippy::disallowed_methods)]
async fn wait_view(
    views: &Views,
    name: &str,
    timeout: Duration,
    f: impl Fn(&LeaseView) -> bool,
) -> (LeaseView, Instant) {
    let t = Instant::now();
    loop {
        let last = views.lock().unwrap().iter().rev().find(|(n, _, _)| *n == name).cloned();
        if let Some((_, v, at)) = last
            && f(&v)
        {
            return (v, at);
        }
        assert!(t.elapsed() < timeout, "{name}: timed out; views {:?}", views.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn epoch(v: &LeaseView) -> Epoch {
    match v {
        LeaseView::Primary { epoch } => *epoch,
        _ => panic!("not primary: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)]
async fn consul_lease_failover_handoff_and_self_demotion() {
    need::consul();
    let mut consul = Consul::start(tmp("consul-lease").join("consul"));
    let key = "litefleet-test/primary";
    let views: Views = Arc::default();
    let fences: Fences = Arc::default();

    // x holds the lease, then "crashes": it never renews.
    let x = backend(&consul, key, "x");
    let e1 = x.acquire().await.unwrap().expect("first acquire wins");
    let crashed = Instant::now();
    // a follows x, learning of it from the watch.
    let a = node("a", backend(&consul, key, "a"), &views, &fences).await;
    wait_view(&views, "a", Duration::from_secs(5), |v| {
        *v == LeaseView::Replica { holder: Some(holder("x")) }
    })
    .await;
    // Consul invalidates x's session between TTL and 2×TTL, deletes the key (behavior
    // delete), and a may take it after the lock-delay.
    let (v, at) =
        wait_view(&views, "a", Duration::from_secs(40), |v| matches!(v, LeaseView::Primary { .. }))
            .await;
    let e2 = epoch(&v);
    let took = at - crashed;
    eprintln!("crash failover: a primary {took:?} after x stopped renewing (epochs {e1} -> {e2})");
    assert!(e2 > e1, "epochs only grow");
    assert!(took >= TTL, "no takeover before the TTL: {took:?}");
    // x learns it lost the lease.
    assert!(matches!(x.renew().await, Err(LeaseError::Lost(_))));

    // b follows a; a hands over by releasing (graceful shutdown): no TTL, no lock-delay.
    let b = node("b", backend(&consul, key, "b"), &views, &fences).await;
    wait_view(&views, "b", Duration::from_secs(5), |v| {
        *v == LeaseView::Replica { holder: Some(holder("a")) }
    })
    .await;
    let released = Instant::now();
    a.stop_and_wait(None, Some(Duration::from_secs(5))).await.unwrap();
    let (v, at) =
        wait_view(&views, "b", Duration::from_secs(10), |v| matches!(v, LeaseView::Primary { .. }))
            .await;
    let e3 = epoch(&v);
    eprintln!("graceful handover: b primary {:?} after a released (epoch {e3})", at - released);
    assert!(e3 > e2);
    assert!(at - released < Duration::from_secs(3), "released lease taken at once");
    let (_, v, _) =
        views.lock().unwrap().iter().rev().find(|(n, _, _)| *n == "a").cloned().unwrap();
    assert!(!matches!(v, LeaseView::Primary { .. }), "a stopped being primary when it left");

    // Consul goes away: b cannot renew and demotes itself before its session could expire
    // server-side (its last renew was sent before the kill: deadline ≤ kill + TTL - margin).
    let killed = Instant::now();
    consul.kill();
    // Writes stop first, at the fence: 3/4 of the lock-delay after b's last renew was sent.
    let fence = fences.lock().unwrap()["b"].expect("a primary has a fence");
    let fence_after = fence.saturating_duration_since(killed);
    eprintln!("consul down: b's writes stop {fence_after:?} after the agent died");
    assert!(fence_after <= LOCK_DELAY * 3 / 4, "fence {fence_after:?}");
    // Past the fence instant (no event marks it but the clock), nothing moved it.
    tokio::time::sleep_until((fence + Duration::from_millis(50)).into()).await;
    assert!(
        fences.lock().unwrap()["b"].is_some_and(|f| f <= Instant::now()),
        "the fence never moves without a renew"
    );
    let (_, at) =
        wait_view(&views, "b", Duration::from_secs(20), |v| matches!(v, LeaseView::Replica { .. }))
            .await;
    let demoted = at - killed;
    eprintln!("consul down: b read-only {demoted:?} after the agent died (TTL {TTL:?})");
    assert!(demoted < TTL - Duration::from_millis(500), "demoted before the TTL: {demoted:?}");
    b.stop(None);
}
