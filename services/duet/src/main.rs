// The system allocator (glibc's malloc), chosen over mimalloc by measurement: less memory per idle
// participant, no CPU cost under the edit load (docs/BENCHMARKS.md, "Resident memory per idle WebSocket
// connection"). Heap profilers (heaptrack) see it directly.
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
