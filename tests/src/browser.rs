//! Running a page's test script (`tests/browser/*.mjs`, playwright-core driving Debian's Chromium)
//! and reading the one JSON line it prints at the end.

use std::path::PathBuf;

use serde_json::Value;

/// `tests/` itself.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where screenshots go: `target/artifacts`.
pub fn artifacts() -> PathBuf {
    let dir = root().parent().unwrap().join("target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `tests/browser/<script>` with `env` (plus CHROMIUM and ARTIFACTS); its result line.
pub async fn run(script: &str, env: &[(&str, String)]) -> Value {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        root().join("browser/node_modules/playwright-core").exists()
            && std::path::Path::new(&chromium).exists(),
        "the browser tests need Chromium and playwright-core: run `bash scripts/test`, which installs them"
    );
    let out = tokio::process::Command::new("node")
        .arg(root().join("browser").join(script))
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", artifacts())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script} prints its result: {stdout}"))
}

/// A file under `tests/fixtures`, as an environment value.
pub fn fixture(name: &str) -> String {
    root().join("fixtures").join(name).display().to_string()
}
