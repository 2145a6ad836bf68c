#[tokio::main]
async fn main() {
    qingling_shared::runtime::init_tracing();
    if let Err(e) = qingling_intake::run().await {
        tracing::error!(error = format!("{e:#}"), "qingling-intake failed");
        eprintln!("qingling-intake: {e:#}");
        std::process::exit(1);
    }
}
