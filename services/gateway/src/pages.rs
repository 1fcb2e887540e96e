//! The browser client's pages and static files, served by the gateway and by the all-in-one `duet`.
//!
//! - `/` → `index.html` (landing page)
//! - `/interview/{code}` → `editor.html` for a session that exists; a 404 page otherwise
//! - `/static/*` → the built assets (`frontend/dist/static`)
//!
//! Each answers `GET` and `HEAD`; other methods get 405 with `Allow` ([`duet_telemetry::methods`]).
//!
//! When the client has not been built (`npm run build` in `frontend/`), a small placeholder page says
//! so instead of failing, so the API and Socket.IO still work.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{guard, http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use duet_domain::SessionCode;
use duet_telemetry::methods;

/// Answers whether a session code exists: the storage itself in `duet`, the session-API in the gateway.
#[async_trait]
pub trait SessionDirectory: Send + Sync + 'static {
    async fn exists(&self, code: &SessionCode) -> Result<bool, String>;
}

#[derive(Clone)]
pub struct PagesState {
    pub frontend_dir: PathBuf,
    pub directory: Arc<dyn SessionDirectory>,
}

/// Mounts the pages and `/static`: `GET` and `HEAD`, 405 with `Allow` for other methods.
pub fn configure(cfg: &mut web::ServiceConfig, state: PagesState) {
    let static_dir = state.frontend_dir.join("static");
    cfg.app_data(web::Data::new(state))
        .service(methods::get("/", index))
        .service(methods::get("/interview/{code}", editor));
    if static_dir.is_dir() {
        // actix-files answers other methods with a plain-text 405 without `Allow`; this resource
        // answers them first, in the shape every other path uses.
        cfg.service(
            web::resource("/static/{tail:.*}")
                .guard(guard::Not(guard::Any(guard::Get()).or(guard::Head())))
                .to(|| async { methods::method_not_allowed(methods::GET_HEAD) }),
        );
        cfg.service(
            actix_files::Files::new("/static", static_dir)
                .use_etag(true)
                .use_last_modified(true)
                .prefer_utf8(true),
        );
    }
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .body(body)
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

async fn page_file(state: &PagesState, name: &str) -> HttpResponse {
    match tokio::fs::read_to_string(state.frontend_dir.join(name)).await {
        Ok(body) => html(StatusCode::OK, body),
        Err(_) => html(
            StatusCode::OK,
            message_page(
                "Duet",
                "The browser client has not been built yet: run `npm ci && npm run build` in frontend/ \
                 (the README's run command does it). The API is up.",
            ),
        ),
    }
}

async fn index(state: web::Data<PagesState>) -> HttpResponse {
    page_file(&state, "index.html").await
}

async fn editor(
    state: web::Data<PagesState>,
    code: web::Path<String>,
    _req: HttpRequest,
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
    let Ok(code) = SessionCode::parse(&code) else {
        return not_found();
    };
    match state.directory.exists(&code).await {
        Ok(true) => page_file(&state, "editor.html").await,
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
