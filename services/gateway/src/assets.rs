//! The built browser client's files, served as the build describes them.
//!
//! `frontend/build.mjs` writes `dist/assets.json`, the manifest: every file the server may serve (by
//! its path under `dist/`), whether its name is tied to its content (a hash in the name, or a
//! package version in the path), and which compressed copies were made beside it (`X.br`, `X.gz`).
//! Only files the manifest lists are served, so a request for any other name (a stale hash, a typo,
//! `..`) is a 404 without touching the file system.
//!
//! For each request:
//! - the representation is chosen by `Accept-Encoding` (brotli over gzip at equal preference, as
//!   actix's negotiation ranks them), the original's `Content-Type` is kept, `Content-Encoding` names
//!   the copy, and `Vary: Accept-Encoding` is sent whenever copies exist (so a shared cache never hands
//!   brotli to a client that did not ask for it);
//! - a range request always gets the original bytes: a range of a compressed copy is useless to a
//!   client that did not know which copy it would get (and actix-files would mislabel it);
//! - content-named files may be kept for a year without asking again (`immutable`); everything else,
//!   the pages included, is `no-cache`: stored, but revalidated (ETag / Last-Modified, answered with
//!   304) on every use, so a new build is seen at once. Not `no-store`: nothing in the pages is
//!   private, and a revalidated copy costs a round trip instead of the page;
//! - ranges, conditional requests and `HEAD` are actix-files' `NamedFile` logic.
//!
//! The manifest is read at start-up and read again when it changes on disk (checked when a page is
//! served and when a static request misses), so rebuilding the client under a running server works.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use actix_files::NamedFile;
use actix_web::http::header::{self, AcceptEncoding, ContentEncoding, Encoding, Header};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

/// Source maps (`*.map`) are served by development builds only: a release build does not hand out
/// the client's sources (the browser's devtools then show the bundled code; nothing else changes).
pub const SERVE_SOURCE_MAPS: bool = cfg!(debug_assertions);

/// The manifest's file name under the client's directory.
pub const MANIFEST: &str = "assets.json";
/// The manifest format this server reads (`version` in the file).
const MANIFEST_VERSION: u32 = 1;
/// For content-named files: a year (the longest `max-age` caches are asked to honour) and `immutable`,
/// so browsers do not even revalidate on reload.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else: keep, but ask the server before each use.
pub const CACHE_REVALIDATE: &str = "no-cache";

#[derive(Deserialize)]
struct Manifest {
    version: u32,
    files: HashMap<String, ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    immutable: bool,
    #[serde(default)]
    encodings: Vec<String>,
}

/// One servable file.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    immutable: bool,
    br: bool,
    gzip: bool,
}

impl Entry {
    fn has_copies(&self) -> bool {
        self.br || self.gzip
    }
}

/// The representation sent for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Identity,
    Brotli,
    Gzip,
}

impl Coding {
    fn suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }

    fn content_encoding(self) -> Option<ContentEncoding> {
        match self {
            Coding::Identity => None,
            Coding::Brotli => Some(ContentEncoding::Brotli),
            Coding::Gzip => Some(ContentEncoding::Gzip),
        }
    }
}

/// What the manifest said when it was last read.
#[derive(Default)]
struct Loaded {
    /// Modification time and length of the manifest read; `None` when there was none.
    stamp: Option<(SystemTime, u64)>,
    files: HashMap<String, Entry>,
}

/// The client's directory (`frontend/dist`) and its manifest.
pub struct Assets {
    dir: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
    /// Whether `*.map` files are served ([`SERVE_SOURCE_MAPS`]).
    source_maps: bool,
}

impl Assets {
    /// Reads `dir/assets.json`; a missing or unreadable manifest leaves nothing to serve (logged).
    pub fn open(dir: PathBuf) -> Self {
        let assets = Self {
            dir,
            loaded: RwLock::new(Arc::new(Loaded::default())),
            source_maps: SERVE_SOURCE_MAPS,
        };
        assets.refresh();
        assets
    }

    /// Serves source maps or not, whatever the build (tests).
    pub fn with_source_maps(mut self, serve: bool) -> Self {
        self.source_maps = serve;
        self
    }

    /// Whether a manifest was read: the client has been built.
    pub fn is_built(&self) -> bool {
        self.current().stamp.is_some()
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// Reads the manifest again if it changed on disk since it was last read (one `stat` otherwise).
    pub fn refresh(&self) {
        let stamp = std::fs::metadata(self.manifest_path())
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp == self.current().stamp {
            return;
        }
        let loaded = match stamp {
            None => Loaded::default(),
            Some(stamp) => match read_manifest(&self.manifest_path()) {
                Ok(files) => {
                    tracing::info!(files = files.len(), dir = %self.dir.display(), "browser client manifest read");
                    Loaded {
                        stamp: Some(stamp),
                        files,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.manifest_path().display(),
                        "cannot read the browser client's manifest; rebuild the client (npm run build in frontend/)");
                    Loaded::default()
                }
            },
        };
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
    }

    /// Serves `path` (relative to the client's directory, `/`-separated) for `req`, or `None` when the
    /// manifest does not list it or its file cannot be opened.
    pub async fn respond(&self, req: &HttpRequest, path: &str) -> Option<HttpResponse> {
        if path.ends_with(".map") && !self.source_maps {
            return None;
        }
        let entry = *self.current().files.get(path)?;
        let original = self.dir.join(path);
        let mut coding = choose_coding(req, &entry);
        let file = loop {
            let on_disk = PathBuf::from(format!("{}{}", original.display(), coding.suffix()));
            match NamedFile::open_async(&on_disk).await {
                Ok(f) => break f,
                Err(e) if coding != Coding::Identity => {
                    tracing::warn!(error = %e, path = %on_disk.display(), "compressed copy missing; sending the original");
                    coding = Coding::Identity;
                }
                Err(e) => {
                    log_missing(&on_disk, &e);
                    return None;
                }
            }
        };
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        let mut file = file
            .set_content_type(actix_files::file_extension_to_mime(ext))
            .disable_content_disposition()
            .prefer_utf8(true);
        if let Some(enc) = coding.content_encoding() {
            file = file.set_content_encoding(enc);
        }
        let mut res = file.into_response(req);
        let headers = res.headers_mut();
        if coding == Coding::Identity {
            // actix-files labels ranged responses "identity" when the request has Accept-Encoding;
            // the header means nothing here (no middleware compresses) and is not meant for responses.
            headers.remove(header::CONTENT_ENCODING);
        }
        if entry.has_copies() {
            headers.insert(
                header::VARY,
                header::HeaderValue::from_static("accept-encoding"),
            );
        }
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static(if entry.immutable {
                CACHE_IMMUTABLE
            } else {
                CACHE_REVALIDATE
            }),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        );
        Some(res)
    }
}

fn log_missing(path: &Path, e: &io::Error) {
    tracing::warn!(error = %e, path = %path.display(), "a file the manifest lists cannot be opened; rebuild the client");
}

/// Reads the manifest, keeping only plain relative paths (never `..`, absolute or empty parts).
fn read_manifest(path: &Path) -> anyhow::Result<HashMap<String, Entry>> {
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(path)?)?;
    anyhow::ensure!(
        manifest.version == MANIFEST_VERSION,
        "manifest version {} (this server reads {MANIFEST_VERSION})",
        manifest.version
    );
    let mut files = HashMap::with_capacity(manifest.files.len());
    for (name, e) in manifest.files {
        let plain = !name.is_empty()
            && !name.contains('\\')
            && name
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain {
            tracing::warn!(name, "manifest entry is not a plain relative path; ignored");
            continue;
        }
        let entry = Entry {
            immutable: e.immutable,
            br: e.encodings.iter().any(|x| x == "br"),
            gzip: e.encodings.iter().any(|x| x == "gzip"),
        };
        files.insert(name, entry);
    }
    Ok(files)
}

/// The representation for this request: the client's preference among the copies that exist (an
/// unparsable header, or one that refuses everything on offer, gets the original, as HTTP allows).
fn choose_coding(req: &HttpRequest, entry: &Entry) -> Coding {
    if !entry.has_copies() || req.headers().contains_key(header::RANGE) {
        return Coding::Identity;
    }
    let Ok(accept) = AcceptEncoding::parse(req) else {
        return Coding::Identity;
    };
    let mut offered = vec![Encoding::identity()];
    if entry.br {
        offered.push(Encoding::brotli());
    }
    if entry.gzip {
        offered.push(Encoding::gzip());
    }
    match accept.negotiate(offered.iter()) {
        Some(e) if e == Encoding::brotli() => Coding::Brotli,
        Some(e) if e == Encoding::gzip() => Coding::Gzip,
        _ => Coding::Identity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const BOTH: Entry = Entry {
        immutable: true,
        br: true,
        gzip: true,
    };

    fn choose(accept: Option<&str>, entry: Entry) -> Coding {
        let mut req = TestRequest::get();
        if let Some(a) = accept {
            req = req.insert_header((header::ACCEPT_ENCODING, a));
        }
        choose_coding(&req.to_http_request(), &entry)
    }

    #[test]
    fn the_client_preference_picks_the_copy() {
        // What browsers send: brotli wins whatever the order.
        assert_eq!(
            choose(Some("gzip, deflate, br, zstd"), BOTH),
            Coding::Brotli
        );
        assert_eq!(choose(Some("gzip"), BOTH), Coding::Gzip);
        assert_eq!(choose(Some("br;q=0.5, gzip"), BOTH), Coding::Gzip);
        assert_eq!(choose(Some("identity"), BOTH), Coding::Identity);
        assert_eq!(choose(None, BOTH), Coding::Identity);
        assert_eq!(choose(Some("zstd, deflate"), BOTH), Coding::Identity);
        // Refusing identity and everything on offer still gets the original (nothing better exists).
        assert_eq!(choose(Some("zstd, *;q=0"), BOTH), Coding::Identity);
        assert_eq!(choose(Some("br;q=high"), BOTH), Coding::Identity);
    }

    #[test]
    fn only_existing_copies_are_offered() {
        let gzip_only = Entry { br: false, ..BOTH };
        assert_eq!(choose(Some("br, gzip"), gzip_only), Coding::Gzip);
        assert_eq!(choose(Some("br"), gzip_only), Coding::Identity);
        assert_eq!(choose(Some("br, gzip"), Entry::default()), Coding::Identity);
    }

    #[test]
    fn ranges_get_the_original() {
        let req = TestRequest::get()
            .insert_header((header::ACCEPT_ENCODING, "br"))
            .insert_header((header::RANGE, "bytes=0-9"))
            .to_http_request();
        assert_eq!(choose_coding(&req, &BOTH), Coding::Identity);
    }

    #[test]
    fn manifest_entries_must_be_plain_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST);
        std::fs::write(
            &path,
            r#"{"version":1,"files":{"static/a.js":{"immutable":true,"encodings":["br"]},
               "../etc/passwd":{"immutable":false},"/abs":{"immutable":false},"a//b":{"immutable":false},
               "static/./x":{"immutable":false},"a\\b":{"immutable":false}}}"#,
        )
        .unwrap();
        let files = read_manifest(&path).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), vec!["static/a.js"]);
        assert!(files["static/a.js"].br && !files["static/a.js"].gzip);

        std::fs::write(&path, r#"{"version":2,"files":{}}"#).unwrap();
        assert!(read_manifest(&path).is_err());
    }

    #[actix_web::test]
    async fn a_release_build_serves_no_source_maps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("static")).unwrap();
        std::fs::write(
            dir.path().join("static/a.js"),
            "x()\n//# sourceMappingURL=a.js.map",
        )
        .unwrap();
        std::fs::write(dir.path().join("static/a.js.map"), "{}").unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"version":1,"files":{"static/a.js":{"immutable":true},"static/a.js.map":{"immutable":true}}}"#,
        )
        .unwrap();
        let req = TestRequest::get().to_http_request();
        let release = Assets::open(dir.path().to_path_buf()).with_source_maps(false);
        assert!(release.respond(&req, "static/a.js").await.is_some());
        assert!(release.respond(&req, "static/a.js.map").await.is_none());
        let dev = Assets::open(dir.path().to_path_buf()).with_source_maps(true);
        assert!(dev.respond(&req, "static/a.js.map").await.is_some());
        assert_eq!(SERVE_SOURCE_MAPS, cfg!(debug_assertions));
    }
}
