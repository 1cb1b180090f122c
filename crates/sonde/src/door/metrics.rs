//! A server's own metrics for Prometheus (`--metrics [ADDR:]PORT`): the
//! door's counters (connections accepted, refused by reason, active,
//! peak), whatever else the server counts (bytes, tests), read at each
//! scrape, served at `/metrics` on a thread of its own through a door of
//! its own, so a scrape never waits on the server's work.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::access::Reason;
use super::{Counters, Door, DoorConfig};

/// A door's counters, as series.
#[derive(Debug)]
pub struct DoorCollector(pub Arc<Counters>);

impl Collector for DoorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let counters = [
            (
                "sonde_connections_accepted",
                "Connections let in",
                get(&c.accepted),
            ),
            (
                "sonde_connections_evicted",
                "Connections that had not said who they are, closed to make room",
                get(&c.evicted),
            ),
            (
                "sonde_accept_failures",
                "Accepts that failed (out of descriptors, ...)",
                get(&c.failed),
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut encoder, name, help, value)?;
        }
        let refused = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "sonde_connections_refused",
            "Connections refused, by reason (denied, not_allowed, rate_overall, rate_per_source, per_ip, full)",
            None,
            refused.metric_type(),
        )?;
        for reason in Reason::ALL {
            let labels = [("reason", reason.label())];
            let value = ConstCounter::new(get(&c.refused_by[reason as usize]));
            value.encode(family.encode_family(&labels)?)?;
        }
        for (name, help, value) in [
            (
                "sonde_connections_active",
                "Connections open now",
                get(&c.active),
            ),
            (
                "sonde_connections_peak",
                "Most connections open at once",
                get(&c.peak),
            ),
        ] {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// How a counter is read at a scrape.
pub type Reader = Box<dyn Fn() -> u64 + Send + Sync>;

/// Counters read from elsewhere at each scrape: (name without `_total`,
/// help, how to read it).
pub struct Counted(pub Vec<(&'static str, &'static str, Reader)>);

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, ..)| name))
            .finish()
    }
}

impl Collector for Counted {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, read) in &self.0 {
            counter(&mut encoder, name, help, read())?;
        }
        Ok(())
    }
}

/// One counter with no labels.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// Whether the scraper takes OpenMetrics (its Accept header says so).
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"))
}

/// An exposition's text with its content type.
pub fn respond(text: String, openmetrics: bool) -> Response {
    let kind = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// Encodes `registry` as the scraper asks: OpenMetrics, or the text format.
pub fn exposition(registry: &Registry, headers: &HeaderMap) -> Response {
    let openmetrics = wants_openmetrics(headers);
    let mut out = String::new();
    let done = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)
    } else {
        prometheus_client::encoding::text::encode_registry(&mut out, registry)
    };
    match done {
        Ok(()) => respond(out, openmetrics),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn metrics(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    exposition(&registry, &headers)
}

/// Serves `registry` at `/metrics` on `listener`, on a thread of its own
/// for as long as the process lives (a scrape is small; 64 at once).
///
/// # Errors
/// When the thread's runtime cannot start or the listener not register.
pub fn spawn(listener: std::net::TcpListener, registry: Registry) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = {
        let _entered = runtime.enter();
        super::to_tokio(listener)?
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry));
    let door = Door::new(DoorConfig::new("metrics", 64));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(door.serve_http(listener, app)))?;
    Ok(())
}
