use duet_config::Settings;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let _tracing = match duet_telemetry::init("duet-gateway", &settings) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("duet-gateway: {e}");
            std::process::exit(2);
        }
    };
    let app = duet_gateway::Application::build(&settings).await?;
    tracing::info!(port = app.port(), "gateway listening");
    app.run_until_stopped().await?;
    Ok(())
}
