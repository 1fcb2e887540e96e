//! `realtime-hub`: the standalone hub service (see the library's docs).

use duet_config::Settings;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realtime-hub: {e}");
            std::process::exit(2);
        }
    };
    let _tracing = match duet_telemetry::init("duet-realtime-hub", &settings) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("duet-realtime-hub: {e}");
            std::process::exit(2);
        }
    };
    let app = duet_realtime_hub::startup::Application::build(&settings).await?;
    tracing::info!(
        "realtime hub listening on http://{}:{}/",
        settings.host,
        app.port()
    );
    app.run_until_stopped().await
}
