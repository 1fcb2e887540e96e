//! HTTP method conventions every Duet service follows:
//!
//! - `HEAD` is answered wherever `GET` is (uptime monitors and link previews use it): the same
//!   handler runs and actix-http sends its status and headers without the body.
//! - A known path asked with a method it does not serve answers 405 with an `Allow` header and the
//!   JSON error shape `{"error": {"code": "method_not_allowed", "message": ...}}`, instead of the
//!   404 a method-guarded route would give.
//!
//! ```text
//! cfg.service(methods::get("/healthz", healthz));      // GET, HEAD; 405 otherwise
//! cfg.service(web::resource("/api/session")
//!     .route(web::post().to(create))
//!     .default_service(methods::not_allowed("POST")));
//! ```

use actix_web::http::header;
use actix_web::{guard, web, FromRequest, Handler, HttpResponse, Responder, Route};
use serde_json::json;

/// The `Allow` value of a resource that answers [`get_or_head`].
pub const GET_HEAD: &str = "GET, HEAD";

/// A route matching `GET` and `HEAD`.
pub fn get_or_head() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The 405 answer of a known path for every method it does not serve; `allow` lists those it does.
pub fn not_allowed(allow: &'static str) -> Route {
    web::to(move || async move { method_not_allowed(allow) })
}

/// 405 with `Allow: allow` and the JSON error shape.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(json!({"error": {
            "code": "method_not_allowed",
            "message": format!("this path answers {allow} only"),
        }}))
}

/// A resource at `path` answering `GET` and `HEAD` with `handler`, and 405 to anything else.
pub fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(get_or_head().to(handler))
        .default_service(not_allowed(GET_HEAD))
}
