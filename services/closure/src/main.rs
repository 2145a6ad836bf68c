#[tokio::main]
async fn main() {
    qingling_shared::runtime::init_tracing();
    if let Err(e) = qingling_closure::run().await {
        tracing::error!(error = format!("{e:#}"), "qingling-closure failed");
        eprintln!("qingling-closure: {e:#}");
        std::process::exit(1);
    }
}
