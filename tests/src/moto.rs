//! A local S3-compatible server (moto's server mode, from PyPI) for the evidence store's tests.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Moto {
    pub url: String,
    child: Child,
}

impl Moto {
    /// Starts `moto_server` (`QINGLING_MOTO_SERVER`, else on the PATH; `scripts/test` installs it)
    /// on a free port and creates `bucket`.
    pub async fn start(bucket: &str) -> Moto {
        let exe = std::env::var("QINGLING_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{exe} does not start ({e}): run `bash scripts/test`, which installs it")
            });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(&url).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = http
            .put(format!("{url}/{bucket}"))
            .send()
            .await
            .expect("moto answers");
        assert!(r.status().is_success(), "bucket {bucket}: {}", r.status());
        Moto { url, child }
    }

    /// An object's bytes as the bucket holds them.
    pub async fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStore;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("qingling-test")
            .with_secret_access_key("qingling-test-secret")
            .build()
            .unwrap();
        let got = store.get(&object_store::path::Path::from(key)).await.ok()?;
        Some(got.bytes().await.ok()?.to_vec())
    }

    pub async fn stop(&mut self) {
        self.child.kill().await.ok();
    }
}
