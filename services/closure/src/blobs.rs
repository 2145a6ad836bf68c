//! Where the photos' bytes are kept (CONTRACT §9): in PostgreSQL beside their records (the
//! default), or in an S3-compatible bucket (`QINGLING_EVIDENCE_STORE=s3://bucket/prefix`).
//! Either way the key is the photo's SHA-256, so the same bytes are kept once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use qingling_shared::ApiError;
use sqlx::PgConnection;

use crate::store;

#[derive(Clone)]
pub enum Blobs {
    /// The `evidence_blobs` table, written in the upload's transaction.
    Postgres,
    /// A bucket: the object is written before the upload's transaction commits, so a kept
    /// record always has its bytes; a failure after the write leaves an unreferenced object
    /// under its own hash, never a record without bytes.
    Bucket {
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        url: String,
    },
}

impl Blobs {
    /// From `QINGLING_EVIDENCE_STORE` (`postgres`, or `s3://bucket/prefix` with the usual `AWS_*`
    /// variables; `AWS_ENDPOINT_URL` names an S3-compatible server).
    pub fn from_env() -> anyhow::Result<Blobs> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        match var("QINGLING_EVIDENCE_STORE").as_deref().map(str::trim) {
            None | Some("postgres") => Ok(Blobs::Postgres),
            Some(url) if url.starts_with("s3://") => {
                let rest = &url["s3://".len()..];
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                anyhow::ensure!(
                    !bucket.is_empty(),
                    "QINGLING_EVIDENCE_STORE {url:?} names no bucket"
                );
                // A bucket that is down is a prompt 503, not a request held for minutes.
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(5),
                        backoff: Default::default(),
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(3))
                            .with_timeout(Duration::from_secs(30)),
                    );
                if let Some(endpoint) =
                    var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"))
                {
                    b = b
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
                    b = b.with_region("us-east-1");
                }
                let store = b
                    .build()
                    .with_context(|| format!("QINGLING_EVIDENCE_STORE {url:?}"))?;
                Ok(Blobs::Bucket {
                    store: Arc::new(store),
                    prefix: Path::from(prefix.trim_matches('/')),
                    url: url.to_string(),
                })
            }
            Some(other) => anyhow::bail!(
                "QINGLING_EVIDENCE_STORE is {other:?}: use postgres or s3://bucket/prefix"
            ),
        }
    }

    /// For the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Blobs::Postgres => "postgres".into(),
            Blobs::Bucket { url, .. } => url.clone(),
        }
    }

    fn key(prefix: &Path, sha256: &str) -> Path {
        prefix.child(sha256)
    }

    /// Keeps a photo's bytes in a bucket, before the upload's transaction begins (no database
    /// connection waits on the bucket).
    pub async fn put_outside(&self, sha256: &str, body: &[u8]) -> Result<(), ApiError> {
        if let Blobs::Bucket { store, prefix, .. } = self {
            store
                .put(&Self::key(prefix, sha256), PutPayload::from(body.to_vec()))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Keeps a photo's bytes in PostgreSQL, in the upload's transaction `tx`.
    pub async fn put_inside(
        &self,
        tx: &mut PgConnection,
        sha256: &str,
        body: &[u8],
    ) -> Result<(), ApiError> {
        if let Blobs::Postgres = self {
            store::put_blob(tx, sha256, body).await?;
        }
        Ok(())
    }

    /// A photo's bytes, if kept.
    pub async fn get(
        &self,
        c: &mut PgConnection,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        match self {
            Blobs::Postgres => Ok(store::get_blob(c, sha256).await?),
            Blobs::Bucket { store, prefix, .. } => {
                match store.get(&Self::key(prefix, sha256)).await {
                    Ok(got) => Ok(Some(got.bytes().await.map_err(unavailable)?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(unavailable(e)),
                }
            }
        }
    }
}

fn unavailable(e: object_store::Error) -> ApiError {
    tracing::error!(error = %e, "the evidence bucket failed");
    ApiError::Unavailable("the evidence store is unavailable; try again".into())
}
