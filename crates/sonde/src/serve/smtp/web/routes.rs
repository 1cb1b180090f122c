//! The paths of the web side: Mailpit's `/api/v1` for what it covers
//! (so its clients work unchanged), `/livez` and `/readyz`, `/view/{ID}.html`
//! for a message's HTML, and sonde's own under `/sonde/` (the UI's script
//! and the event stream). The JSON is [`mailpit`](super::super::mailpit)'s;
//! these only fetch from the store, off the runtime when it reads a disk.
//!
//! What a message brings (its HTML, its attachments) is served with a
//! sandboxing Content-Security-Policy: it runs no script, loads nothing
//! from elsewhere, and cannot reach the API as the UI's origin.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as Params, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::super::mailpit::{self, Query};
use super::super::store::{Store, Stored};

/// The page size when none is asked for, as Mailpit's.
const PAGE: usize = 50;

/// What a message's own content may do: show itself and its inline
/// images, nothing more.
const SANDBOX: &str = "sandbox; default-src 'none'; img-src 'self' data:; \
style-src 'unsafe-inline'; font-src data:";
/// What the UI may do: its own script, styles and frames only.
const UI_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'";

const UI_HTML: &str = include_str!("ui.html");
const UI_JS: &str = include_str!("ui.js");

#[derive(Clone)]
struct App {
    store: Arc<Store>,
    closing: CancellationToken,
}

/// The routes, over `store`; event streams end when `closing` is.
pub(super) fn router(store: Arc<Store>, closing: CancellationToken) -> Router {
    Router::new()
        .route("/", get(ui))
        .route("/sonde/ui.js", get(ui_js))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/api/v1/messages", get(messages).delete(delete_messages))
        .route("/api/v1/search", get(search))
        .route("/api/v1/message/{id}", get(message).delete(delete_message))
        .route("/api/v1/message/{id}/raw", get(raw))
        .route("/api/v1/message/{id}/headers", get(headers))
        .route("/api/v1/message/{id}/part/{part}", get(part))
        .route("/view/{file}", get(view))
        .route("/sonde/v1/events", get(events))
        .with_state(App { store, closing })
}

#[derive(Debug, Default, Deserialize)]
struct Page {
    start: Option<usize>,
    limit: Option<usize>,
    query: Option<String>,
}

fn with_policy(mut response: Response, policy: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn ui() -> Response {
    let page = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        UI_HTML,
    );
    with_policy(page.into_response(), UI_POLICY)
}

async fn ui_js() -> Response {
    let script = (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        UI_JS,
    );
    with_policy(script.into_response(), UI_POLICY)
}

async fn ok() -> &'static str {
    "ok"
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "message not found").into_response()
}

/// The newest first, those matching `query`, one page of them.
fn page_of(store: &Store, page: &Page) -> serde_json::Value {
    let query = Query::parse(page.query.as_deref().unwrap_or(""));
    let matched: Vec<Stored> = store
        .list()
        .into_iter()
        .rev()
        .filter(|m| query.matches(m))
        .collect();
    let start = page.start.unwrap_or(0);
    let limit = page.limit.unwrap_or(PAGE);
    let shown: Vec<Stored> = matched.iter().skip(start).take(limit).cloned().collect();
    mailpit::list_json(&shown, matched.len(), store.counts(), start)
}

async fn messages(State(app): State<App>, Params(mut page): Params<Page>) -> Response {
    page.query = None;
    Json(page_of(&app.store, &page)).into_response()
}

async fn search(State(app): State<App>, Params(page): Params<Page>) -> Response {
    Json(page_of(&app.store, &page)).into_response()
}

/// `DELETE /api/v1/messages`: those of `{"IDs": [...]}`, or all without.
async fn delete_messages(State(app): State<App>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Ids {
        #[serde(rename = "IDs", default)]
        ids: Vec<String>,
    }
    let ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Ids>(&body) {
            Ok(Ids { ids }) if !ids.is_empty() => Some(ids),
            Ok(_) => None,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("reading the IDs: {e}")).into_response();
            }
        }
    };
    let store = Arc::clone(&app.store);
    let _ = tokio::task::spawn_blocking(move || match ids {
        Some(ids) => store.delete(&ids),
        None => store.delete_all(),
    })
    .await;
    "ok".into_response()
}

async fn delete_message(State(app): State<App>, Path(id): Path<String>) -> Response {
    let store = Arc::clone(&app.store);
    let Some(m) = store.get(&id) else {
        return not_found();
    };
    let _ = tokio::task::spawn_blocking(move || store.delete(&[m.id])).await;
    "ok".into_response()
}

/// A message and its bytes, read off the runtime.
async fn fetch(app: &App, id: &str) -> Option<(Stored, Vec<u8>)> {
    let m = app.store.get(id)?;
    let store = Arc::clone(&app.store);
    let key = m.id.clone();
    let raw = tokio::task::spawn_blocking(move || store.raw(&key))
        .await
        .ok()??;
    Some((m, raw))
}

/// `GET /api/v1/message/{ID}` (`latest`: the newest): opening it marks it read.
async fn message(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some((m, raw)) = fetch(&app, &id).await else {
        return not_found();
    };
    let store = Arc::clone(&app.store);
    let shown = tokio::task::spawn_blocking(move || {
        store.mark_read(&m.id);
        mailpit::message_json(&Stored { read: true, ..m }, &raw)
    })
    .await;
    match shown {
        Ok(json) => Json(json).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn raw(State(app): State<App>, Path(id): Path<String>) -> Response {
    match fetch(&app, &id).await {
        Some((_, raw)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], raw).into_response()
        }
        None => not_found(),
    }
}

async fn headers(State(app): State<App>, Path(id): Path<String>) -> Response {
    match fetch(&app, &id).await {
        Some((_, raw)) => Json(mailpit::headers_json(&raw)).into_response(),
        None => not_found(),
    }
}

/// One part's bytes, as its type, in the sandbox (an HTML attachment
/// opened here must not act as the UI).
async fn part(State(app): State<App>, Path((id, part_id)): Path<(String, String)>) -> Response {
    let Some((_, raw)) = fetch(&app, &id).await else {
        return not_found();
    };
    let Some(part) = mailpit::part(&raw, &part_id) else {
        return (StatusCode::NOT_FOUND, "part not found").into_response();
    };
    let mut response = part.bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&part.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let name = part
        .file_name
        .map(|n| n.replace(|c: char| c.is_control() || c == '"' || c == '\\', "_"));
    if let Some(value) =
        name.and_then(|n| HeaderValue::from_str(&format!("attachment; filename=\"{n}\"")).ok())
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    with_policy(response, SANDBOX)
}

/// `/view/{ID}.html`: the HTML part alone, its inline images pointed
/// here, for the UI's sandboxed frame.
async fn view(State(app): State<App>, Path(file): Path<String>) -> Response {
    let id = file.strip_suffix(".html").unwrap_or(&file);
    let Some((m, raw)) = fetch(&app, id).await else {
        return not_found();
    };
    let html = mailpit::html(&raw).unwrap_or_default();
    let html = mailpit::link_inline(&html, &raw, &m.id);
    let page = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html);
    with_policy(page.into_response(), SANDBOX)
}

/// `/sonde/v1/events?query=`: a server-sent event `new` with each
/// arriving message's summary (only those matching the query), so a test
/// waits for a message instead of polling; `lagged` when a slow reader
/// missed some. It ends with the server.
async fn events(
    State(app): State<App>,
    Params(page): Params<Page>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let query = Query::parse(page.query.as_deref().unwrap_or(""));
    let state = (app.store.subscribe(), app.closing.clone(), query);
    let stream = futures_util::stream::unfold(state, |(mut rx, closing, query)| async move {
        loop {
            let next = tokio::select! {
                () = closing.cancelled() => return None,
                next = rx.recv() => next,
            };
            let event = match next {
                Ok(m) if query.matches(&m) => Event::default()
                    .event("new")
                    .data(mailpit::summary_json(&m).to_string()),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, closing, query)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
