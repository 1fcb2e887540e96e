//! The browser client's pages and static files, served by the gateway and by the all-in-one `duet`.
//!
//! - `/` → `index.html` (landing page)
//! - `/interview/{code}` → `editor.html` for a session that exists; a 404 page otherwise
//! - `/review/{code}` → `review.html` (the interview's replay, for interviewers: the page loads the
//!   record with the interviewer link's token) for a session that exists; a 404 page otherwise
//! - `/preview` → `preview.html`, the HTML runner's sandboxed preview (a policy of its own)
//!
//! Pages carry a Content-Security-Policy ([`PAGE_POLICY`]): Duet's own scripts only, connections to
//! Duet only, never framed by another site.
//! - `/static/*` → the built assets (`frontend/dist/static`), as its manifest lists them
//!
//! Files are served by [`Assets`]: compressed copies chosen by `Accept-Encoding`, content-named files
//! cached for a year, pages revalidated on every visit.
//!
//! Each answers `GET` and `HEAD`; other methods get 405 with `Allow` ([`duet_telemetry::methods`]).
//!
//! When the client has not been built (`npm run build` in `frontend/`), a small placeholder page says
//! so instead of failing, so the API and Socket.IO still work.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use duet_domain::SessionCode;
use duet_telemetry::methods;
use serde_json::json;

use crate::assets::Assets;

/// Answers whether a session code exists: the storage itself in `duet`, the session-API in the gateway.
#[async_trait]
pub trait SessionDirectory: Send + Sync + 'static {
    async fn exists(&self, code: &SessionCode) -> Result<bool, String>;
}

#[derive(Clone)]
pub struct PagesState {
    assets: Arc<Assets>,
    directory: Arc<dyn SessionDirectory>,
}

impl PagesState {
    /// The client built into `frontend_dir` (its manifest is read now, and again when it changes).
    pub fn new(frontend_dir: PathBuf, directory: Arc<dyn SessionDirectory>) -> Self {
        Self {
            assets: Arc::new(Assets::open(frontend_dir)),
            directory,
        }
    }
}

/// The pages' Content-Security-Policy: scripts, workers, connections and frames from Duet itself
/// only (the Pyodide and JavaScript runners are workers from `/static`, Ace's syntax workers start
/// from blobs); inline styles (Ace and the editor's views set them); never framed by another site.
pub const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
child-src 'self' blob:; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
object-src 'none'";

/// The preview's policy: a participant's HTML may do what a page of its own could (inline scripts
/// and styles, resources from anywhere), in a sandbox (an opaque origin: no cookies, no storage, no
/// access to Duet's page), framed by Duet only.
pub const PREVIEW_POLICY: &str =
    "sandbox allow-scripts; default-src * data: blob: 'unsafe-inline' \
'unsafe-eval'; frame-ancestors 'self'";

/// Mounts the pages and `/static`: `GET` and `HEAD`, 405 with `Allow` for other methods.
pub fn configure(cfg: &mut web::ServiceConfig, state: PagesState) {
    cfg.app_data(web::Data::new(state))
        .service(methods::get("/", index))
        .service(methods::get("/interview/{code}", editor))
        .service(methods::get("/review/{code}", review))
        .service(methods::get("/preview", preview))
        .service(
            web::resource("/static/{path:.*}")
                .route(methods::get_or_head().to(static_file))
                .default_service(methods::not_allowed(methods::GET_HEAD)),
        );
}

async fn static_file(
    state: web::Data<PagesState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let name = format!("static/{path}");
    if let Some(res) = state.assets.respond(&req, &name).await {
        return res;
    }
    // A build made since the manifest was read names new files.
    state.assets.refresh();
    match state.assets.respond(&req, &name).await {
        Some(res) => res,
        // Never cached: during a rolling deploy the file may exist on another replica a moment later.
        None => HttpResponse::NotFound()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"error": {"code": "not_found", "message": "No such file."}})),
    }
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    let mut res = HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body);
    protect(&mut res, PAGE_POLICY);
    res
}

/// The headers every page carries: its policy, no framing by others, no type sniffing, no referrer
/// beyond Duet.
fn protect(res: &mut HttpResponse, policy: &'static str) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(policy),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    if policy == PAGE_POLICY {
        h.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn message_page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{t} · Duet</title><style>body{{font:16px/1.5 \
         system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#1f2328}}\
         @media (prefers-color-scheme: dark){{body{{background:#0d1117;color:#e6edf3}}a{{color:#58a6ff}}}}\
         </style></head><body><h1>{t}</h1><p>{m}</p><p><a href=\"/\">Back to Duet</a></p></body></html>",
        t = escape(title),
        m = escape(message)
    )
}

async fn page_file(state: &PagesState, req: &HttpRequest, name: &str) -> HttpResponse {
    page_with(state, req, name, PAGE_POLICY).await
}

async fn page_with(
    state: &PagesState,
    req: &HttpRequest,
    name: &str,
    policy: &'static str,
) -> HttpResponse {
    state.assets.refresh();
    match state.assets.respond(req, name).await {
        Some(mut res) => {
            protect(&mut res, policy);
            res
        }
        None => html(
            StatusCode::OK,
            message_page(
                "Duet",
                "The browser client has not been built yet: run `npm ci && npm run build` in frontend/ \
                 (the README's run command does it). The API is up.",
            ),
        ),
    }
}

async fn index(state: web::Data<PagesState>, req: HttpRequest) -> HttpResponse {
    page_file(&state, &req, "index.html").await
}

async fn preview(state: web::Data<PagesState>, req: HttpRequest) -> HttpResponse {
    page_with(&state, &req, "preview.html", PREVIEW_POLICY).await
}

async fn editor(
    state: web::Data<PagesState>,
    code: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    interview_page(&state, &code, &req, "editor.html").await
}

async fn review(
    state: web::Data<PagesState>,
    code: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    interview_page(&state, &code, &req, "review.html").await
}

/// A page of one interview (`name`), served when an interview has that code.
async fn interview_page(
    state: &PagesState,
    code: &str,
    req: &HttpRequest,
    name: &str,
) -> HttpResponse {
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            message_page(
                "Interview not found",
                "No interview has this code. Check the link or ask for a new one.",
            ),
        )
    };
    let Ok(code) = SessionCode::parse(code) else {
        return not_found();
    };
    match state.directory.exists(&code).await {
        Ok(true) => page_file(state, req, name).await,
        Ok(false) => not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                message_page(
                    "Try again shortly",
                    "Duet cannot reach its database right now.",
                ),
            )
        }
    }
}
