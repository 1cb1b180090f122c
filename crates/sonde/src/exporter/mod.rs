//! `sonde exporter`: a Prometheus exporter that runs one probe per
//! scrape (blackbox_exporter's multi-target pattern), so Prometheus and
//! its service discovery schedule the fleet and sonde is the probe.
//! `GET /probe?target=HOST[:PORT]&module=NAME` answers the module's
//! series ([`metrics`]) after running it ([`probe`]) within the scrape's
//! timeout; `/metrics` the exporter's own; `/` the modules and the last
//! probes. Perf probes of one target wait for each other (an iperf3
//! server runs one test at a time); at most `max_concurrent` run at once.

pub mod config;
pub mod metrics;
mod page;
pub mod probe;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::config::Config;
use self::probe::{Outcome, Target};
use crate::door::Door;

/// How the exporter behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The modules.
    pub config: Config,
    /// Probes running at once, all targets together.
    pub max_concurrent: usize,
    /// Taken off the scrape's timeout, for the answer's way back.
    pub timeout_offset: Duration,
    /// The timeout when the scraper sends none (Prometheus's default).
    pub default_timeout: Duration,
    /// Perf probes that may wait for one target; past it one fails at once.
    pub queue: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config: Config::default(),
            max_concurrent: 16,
            timeout_offset: Duration::from_millis(500),
            default_timeout: Duration::from_secs(10),
            queue: 8,
        }
    }
}

/// The default port, iperf3_exporter's.
pub const DEFAULT_PORT: u16 = 9579;

/// Probes remembered for the page.
const RECENT: usize = 100;

/// A probe done, for the page and its debug link.
#[derive(Clone, Debug)]
struct Done {
    id: u64,
    module: String,
    target: String,
    success: bool,
    seconds: f64,
    at: SystemTime,
    text: String,
}

type Labels = Vec<(String, String)>;

/// One target's turn (its probes run one after another) and how many
/// wait for it.
type Turn = Arc<(tokio::sync::Mutex<()>, AtomicU64)>;

/// The exporter's own series.
#[derive(Default)]
struct Own {
    probes: Family<Labels, Counter>,
    running: Gauge,
    waiting: Gauge,
}

struct App {
    settings: Settings,
    /// One lock per target: its probes run one after another.
    targets: Mutex<HashMap<Target, Turn>>,
    running: Semaphore,
    recent: Mutex<VecDeque<Done>>,
    next_id: AtomicU64,
    own: Own,
    registry: Registry,
}

/// Serves the exporter on `listener` through `door` until it shuts.
pub async fn run(listener: TcpListener, door: Door, settings: Settings) {
    let own = Own::default();
    let mut registry = Registry::default();
    registry.register(
        "sonde_exporter_probes",
        "Probes run, by module and result",
        own.probes.clone(),
    );
    registry.register(
        "sonde_exporter_probes_running",
        "Probes running now",
        own.running.clone(),
    );
    registry.register(
        "sonde_exporter_probes_waiting",
        "Probes waiting for their target or a free slot",
        own.waiting.clone(),
    );
    let app = Arc::new(App {
        running: Semaphore::new(settings.max_concurrent.max(1)),
        settings,
        targets: Mutex::default(),
        recent: Mutex::default(),
        next_id: AtomicU64::new(1),
        own,
        registry,
    });
    let router = Router::new()
        .route("/", get(home))
        .route("/probe", get(probe_handler))
        .route("/metrics", get(own_metrics))
        .route("/result", get(result))
        .with_state(app);
    door.serve_http(listener, router).await;
}

#[derive(Debug, Deserialize)]
struct ProbeParams {
    target: Option<String>,
    module: Option<String>,
    #[serde(default)]
    debug: Option<String>,
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

/// The probe's budget: the scrape's timeout less the offset, or the
/// default's.
fn budget(settings: &Settings, headers: &HeaderMap) -> Duration {
    let scrape = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(settings.default_timeout, |s| {
            Duration::from_secs_f64(s.min(86_400.0))
        });
    scrape.saturating_sub(settings.timeout_offset)
}

async fn probe_handler(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<ProbeParams>,
) -> Response {
    let Some(module_name) = params.module.filter(|m| !m.is_empty()) else {
        return bad_request(
            "the module parameter is missing (/probe?target=HOST[:PORT]&module=NAME)".into(),
        );
    };
    let Some(module) = app.settings.config.modules.get(&module_name).cloned() else {
        let known: Vec<&str> = app
            .settings
            .config
            .modules
            .keys()
            .map(String::as_str)
            .collect();
        return bad_request(format!(
            "unknown module {module_name:?} (known: {})",
            known.join(", ")
        ));
    };
    let Some(text) = params.target.filter(|t| !t.is_empty()) else {
        return bad_request(
            "the target parameter is missing (/probe?target=HOST[:PORT]&module=NAME)".into(),
        );
    };
    let target = match Target::parse(&text, module.default_port()) {
        Ok(target) => target,
        Err(why) => return bad_request(why),
    };
    let budget = budget(&app.settings, &headers);
    let outcome = queued(&app, &module, &target, budget).await;
    let success = outcome.answer.get("probe_success", &[]) == Some(1.0);
    let result = if outcome.busy {
        "busy"
    } else if success {
        "success"
    } else {
        "failure"
    };
    let labels = vec![
        ("module".to_string(), module_name.clone()),
        ("result".to_string(), result.to_string()),
    ];
    app.own.probes.get_or_create(&labels).inc();
    let openmetrics = crate::door::metrics::wants_openmetrics(&headers);
    let body = metrics::encode(&outcome.answer.samples, openmetrics);
    let debug_text = format!("{}\n\n{body}", outcome.debug.join("\n"));
    remember(&app, &module_name, &target, &outcome, debug_text.clone());
    if params.debug.as_deref() == Some("true") {
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            debug_text,
        )
            .into_response();
    }
    crate::door::metrics::respond(body, openmetrics)
}

/// A probe that failed before it ran, with every series of its module.
fn not_run(module: &config::Module, start: Instant, why: String) -> Outcome {
    let mut answer = metrics::Answer::for_module(module);
    answer.set("probe_duration_seconds", &[], start.elapsed().as_secs_f64());
    Outcome {
        answer,
        debug: vec![format!("probe failed: {why}")],
        busy: false,
    }
}

/// Runs the probe within `budget`: a perf probe once its target is free
/// (an iperf3 server runs one test at a time; the others measure alone
/// well enough side by side), each once a slot is; waiting past the
/// budget, or behind too many, fails the probe.
async fn queued(
    app: &Arc<App>,
    module: &config::Module,
    target: &Target,
    budget: Duration,
) -> Outcome {
    let start = Instant::now();
    if !matches!(module, config::Module::Perf { .. }) {
        return slotted(app, module, target, (start, budget)).await;
    }
    let turn = {
        let Ok(mut targets) = app.targets.lock() else {
            return not_run(module, start, "the exporter's lock was poisoned".into());
        };
        Arc::clone(targets.entry(target.clone()).or_default())
    };
    let waiting = turn.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _leave = Leave(&turn.1);
    if waiting > app.settings.queue as u64 {
        let why = format!(
            "{waiting} probes of {target} already waiting (the queue holds {})",
            app.settings.queue
        );
        return not_run(module, start, why);
    }
    app.own.waiting.inc();
    let mine = tokio::time::timeout(budget, turn.0.lock()).await;
    app.own.waiting.dec();
    let Ok(_mine) = mine else {
        let why = format!(
            "waited the whole {:.1} s budget behind other probes of {target}",
            budget.as_secs_f64()
        );
        return not_run(module, start, why);
    };
    let outcome = slotted(app, module, target, (start, budget)).await;
    forget_idle(app, target);
    outcome
}

/// Runs the probe once one of `--max-concurrent` slots is free, in the
/// budget left.
async fn slotted(
    app: &Arc<App>,
    module: &config::Module,
    target: &Target,
    (start, budget): (Instant, Duration),
) -> Outcome {
    let left = budget.saturating_sub(start.elapsed());
    app.own.waiting.inc();
    let permit = tokio::time::timeout(left, app.running.acquire()).await;
    app.own.waiting.dec();
    let Ok(Ok(_permit)) = permit else {
        let why = format!(
            "no free slot (--max-concurrent) within the {:.1} s budget",
            budget.as_secs_f64()
        );
        return not_run(module, start, why);
    };
    let left = budget.saturating_sub(start.elapsed());
    let (module_owned, target_owned) = (module.clone(), target.clone());
    app.own.running.inc();
    let outcome =
        tokio::task::spawn_blocking(move || probe::run(&module_owned, &target_owned, left)).await;
    app.own.running.dec();
    outcome.unwrap_or_else(|_| not_run(module, start, "the probe panicked".into()))
}

/// Leaves a target's queue when dropped.
struct Leave<'a>(&'a AtomicU64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Drops a target's turn once nobody else holds or waits for it, so a
/// scraper naming ever new targets does not grow the map.
fn forget_idle(app: &App, target: &Target) {
    if let Ok(mut targets) = app.targets.lock()
        && let Some(turn) = targets.get(target)
        // The map's and ours (the caller's, dropped after this).
        && Arc::strong_count(turn) <= 2
        && turn.1.load(std::sync::atomic::Ordering::SeqCst) <= 1
    {
        targets.remove(target);
    }
}

fn remember(app: &App, module: &str, target: &Target, outcome: &Outcome, text: String) {
    let Ok(mut recent) = app.recent.lock() else {
        return;
    };
    let id = app
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    recent.push_front(Done {
        id,
        module: module.to_string(),
        target: target.to_string(),
        success: outcome.answer.get("probe_success", &[]) == Some(1.0),
        seconds: outcome
            .answer
            .get("probe_duration_seconds", &[])
            .unwrap_or(0.0),
        at: SystemTime::now(),
        text,
    });
    recent.truncate(RECENT);
}

async fn own_metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    crate::door::metrics::exposition(&app.registry, &headers)
}

#[derive(Debug, Deserialize)]
struct ResultParams {
    id: u64,
}

async fn result(State(app): State<Arc<App>>, Query(params): Query<ResultParams>) -> Response {
    let found = app
        .recent
        .lock()
        .ok()
        .and_then(|r| r.iter().find(|d| d.id == params.id).map(|d| d.text.clone()));
    match found {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such probe (the last 100 are kept)\n",
        )
            .into_response(),
    }
}

async fn home(State(app): State<Arc<App>>) -> Html<String> {
    let recent: Vec<Done> = app
        .recent
        .lock()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default();
    Html(page::home(&app.settings.config, &recent))
}
