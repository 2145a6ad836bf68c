#[tokio::main]
async fn main() {
    qingling_shared::runtime::init_tracing();
    if let Err(e) = qingling_ledger::run().await {
        tracing::error!(error = format!("{e:#}"), "qingling-ledger failed");
        eprintln!("qingling-ledger: {e:#}");
        std::process::exit(1);
    }
}
