/// mimalloc: small, frequent allocations (frames, updates, acks) are a visible share of the hub's
/// CPU with glibc's allocator, which also grows and trims per-thread arenas with `mprotect`. Built
/// without transparent huge pages (`no_thp`, the workspace's Cargo.toml): with them an idle
/// participant cost 65 KiB of RSS instead of 25. `--no-default-features` builds with glibc's malloc
/// (for heap profilers).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use duet_config::Settings;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("duet: {e}");
            std::process::exit(2);
        }
    };
    let _tracing = match duet_telemetry::init("duet", &settings) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("duet: {e}");
            std::process::exit(2);
        }
    };
    let app = duet::Application::build(&settings).await?;
    tracing::info!(
        "Duet is serving on http://{}:{}/",
        settings.host,
        app.port()
    );
    app.run_until_stopped().await
}
