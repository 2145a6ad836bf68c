// A general-purpose allocator that keeps up with many small, short-lived allocations across
// threads (JSON values, SQL arguments): glibc's malloc was about a tenth of the services' CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    qingling_shared::runtime::init_tracing();
    let result = match std::env::args().nth(1).as_deref() {
        None | Some("serve") => qingling_closure::run().await,
        Some("rebuild") => qingling_closure::rebuild().await,
        Some(other) => {
            eprintln!("usage: qingling-closure [serve|rebuild] (unknown command {other:?})");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "qingling-closure failed");
        eprintln!("qingling-closure: {e:#}");
        std::process::exit(1);
    }
}
