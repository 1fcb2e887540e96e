use duet_config::Settings;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("duet-session-api: {e}");
            std::process::exit(2);
        }
    };
    let _tracing = match duet_telemetry::init("duet-session-api", &settings) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("duet-session-api: {e}");
            std::process::exit(2);
        }
    };
    let app = match duet_session_api::Application::build(&settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            eprintln!("duet-session-api: cannot start: {e:#}");
            std::process::exit(2);
        }
    };
    tracing::info!(port = app.port(), "session-api listening");
    app.run_until_stopped().await?;
    Ok(())
}
