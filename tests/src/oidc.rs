//! The district's identity provider for the sign-in tests: the certified `oidc-provider` package
//! on loopback (`tests/oidc/provider.mjs`), its keys (`tests/oidc/keys.mjs`), and real tokens from
//! it through the authorization-code flow (`tests/oidc/get-token.mjs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Provider {
    /// The issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
    pub keys_file: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    dir: PathBuf,
}

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

async fn node(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new("node")
        .arg(oidc_dir().join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Provider {
    /// Starts a provider with an ES256 key (signing) and an RS256 key, both published;
    /// `env` adds to its environment (CONSOLE_REDIRECT_URIS, ACCESS_TOKEN_TTL, …).
    pub async fn start(env: &[(&str, &str)]) -> Provider {
        assert!(
            oidc_dir().join("node_modules/oidc-provider").exists(),
            "the sign-in tests need oidc-provider: run `bash scripts/test`, which installs it"
        );
        let dir =
            std::env::temp_dir().join(format!("qingling-oidc-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys_file = dir.join("keys.json");
        let k = keys_file.to_str().unwrap();
        node("keys.mjs", &[k, "--alg", "RS256"], &[]).await;
        node("keys.mjs", &[k, "--alg", "ES256", "--add", k], &[]).await;
        let mut p = Provider {
            issuer: String::new(),
            keys_file,
            port: 0,
            env: env
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            child: None,
            dir,
        };
        p.run().await;
        p
    }

    async fn run(&mut self) {
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .env("PORT", self.port.to_string())
            .env("KEYS_FILE", &self.keys_file)
            .envs(self.env.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.join("provider.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the provider");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split("listening on ").nth(1) {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "the provider did not start: {}",
                std::fs::read_to_string(self.dir.join("provider.log")).unwrap_or_default()
            )
        });
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        self.issuer = issuer;
        self.child = Some(child);
    }

    /// The provider goes away (its port stays reserved for [`Provider::restart`]).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.ok();
            c.wait().await.ok();
        }
    }

    /// Back on the same address, with the same keys.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// Key rotation: a new ES256 key, first (it signs from now on); the old keys stay published
    /// unless `drop_old`. The running provider reloads its keys (SIGHUP).
    pub async fn rotate(&mut self, drop_old: bool) -> String {
        let k = self.keys_file.to_str().unwrap().to_string();
        let mut args = vec![k.as_str(), "--alg", "ES256", "--add", k.as_str()];
        if drop_old {
            args.push("--replace");
        }
        let out: Value = serde_json::from_str(node("keys.mjs", &args, &[]).await.trim()).unwrap();
        if let Some(c) = &self.child {
            let pid = c.id().unwrap().to_string();
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
        }
        // The provider logs "keys reloaded" once it has.
        let log = self.dir.join("provider.log");
        for _ in 0..100 {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("keys reloaded")
                .count()
                > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out["new_kid"].as_str().unwrap().to_string()
    }

    /// A real access token for `user`, through the authorization-code flow with PKCE;
    /// `redirect_uri` must be one the provider was given.
    pub async fn token(&self, user: &str, redirect_uri: &str) -> String {
        self.token_for(user, redirect_uri, None).await
    }

    /// The same, for another resource server (`aud`).
    pub async fn token_for(
        &self,
        user: &str,
        redirect_uri: &str,
        resource: Option<&str>,
    ) -> String {
        let mut env = vec![
            ("ISSUER", self.issuer.as_str()),
            ("USER", user),
            ("REDIRECT_URI", redirect_uri),
        ];
        if let Some(r) = resource {
            env.push(("RESOURCE", r));
        }
        let out: Value =
            serde_json::from_str(node("get-token.mjs", &[], &env).await.trim()).unwrap();
        out["access_token"].as_str().unwrap().to_string()
    }

    /// A token signed with one of the provider's own keys (`alg` ES256 or RS256), with the claims
    /// given: for the refusals that a real provider would never issue.
    pub fn sign(&self, alg: Algorithm, claims: &Value) -> String {
        let pems: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.pem.json", self.keys_file.display())).unwrap(),
        )
        .unwrap();
        let name = format!("{alg:?}");
        let k = pems
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["alg"] == name.as_str())
            .expect("a key of that algorithm");
        let pem = k["pem"].as_str().unwrap().as_bytes();
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = Some(k["kid"].as_str().unwrap().to_string());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// The provider's published keys (its JWKS document), as text.
    pub async fn jwks(&self) -> String {
        let d: Value = reqwest::get(format!("{}/.well-known/openid-configuration", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reqwest::get(d["jwks_uri"].as_str().unwrap())
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
