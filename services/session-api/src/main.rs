/// mimalloc: small, frequent allocations (frames, updates, acks) are a visible share of the hub's
/// CPU with glibc's allocator, which also grows and trims per-thread arenas with `mprotect`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use duet_config::Settings;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    duet_telemetry::init(
        &settings.log_level,
        settings.log_format == duet_config::LogFormat::Json,
    );
    let app = duet_session_api::Application::build(&settings).await?;
    tracing::info!(port = app.port(), "session-api listening");
    app.run_until_stopped().await?;
    Ok(())
}
