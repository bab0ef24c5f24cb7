//! Several coordinator replicas on one PostgreSQL, as an operator runs them: each with its
//! own data directory holding a copy of the first replica's CA (every replica signs and
//! verifies agents' certificates with it) and serving the first's server certificate.

use std::path::Path;

use serde_json::Value;

use crate::{CoordinatorBuilder, CoordinatorProcess, bin};

impl CoordinatorBuilder {
    /// Another replica of the coordinator whose work directory is `first`, in `dir`.
    pub fn replica_of(first: &Path, dir: &Path, database: &str) -> Self {
        let tls = first.join("drover-data/tls");
        let builder = CoordinatorBuilder::with_database(dir, database);
        let own = builder.data_dir().join("tls");
        std::fs::create_dir_all(&own).expect("the replica's TLS directory");
        for file in ["ca.pem", "ca-key.pem"] {
            std::fs::copy(tls.join(file), own.join(file)).expect("copy the shared CA");
        }
        let path = |file: &str| tls.join(file).display().to_string();
        builder
            .arg("--tls-cert")
            .arg(path("server.pem"))
            .arg("--tls-key")
            .arg(path("server-key.pem"))
            .arg("--tls-ca")
            .arg(path("ca.pem"))
    }
}

impl CoordinatorProcess {
    /// `droverctl ARGS -o json` against this replica with an admin `token` (credentials
    /// live in the shared store, so one replica's token works on all); panics on failure.
    pub async fn ctl(&self, root: &Path, token: &str, args: &[&str]) -> Value {
        let (ok, stdout, stderr) = self.try_ctl(root, token, args).await;
        assert!(
            ok,
            "droverctl {args:?} against {} failed: {stderr}",
            self.grpc_url()
        );
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{args:?}: {err}: {stdout}"))
    }

    /// `droverctl ARGS -o json` against this replica: (succeeded, stdout, stderr).
    pub async fn try_ctl(&self, root: &Path, token: &str, args: &[&str]) -> (bool, String, String) {
        let tls = self.tls.as_ref().expect("a TLS coordinator");
        let profile = serde_json::json!({
            "coordinator": self.grpc_url(),
            "ca_file": tls.ca_file,
            "credentials": { "token": token },
        });
        let path = root.join(format!("profile-{}.json", self.addresses.grpc.port()));
        std::fs::write(&path, serde_json::to_vec(&profile).unwrap()).expect("write the profile");
        let output = tokio::process::Command::new(bin("droverctl"))
            .arg("--profile")
            .arg(&path)
            .args(args)
            .args(["-o", "json"])
            .env_remove("DROVER_TOKEN")
            .output()
            .await
            .expect("run droverctl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
