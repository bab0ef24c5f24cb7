//! How Drover is installed (deploy/ and scripts/package), in one test binary: the .deb and
//! .rpm packages in empty roots (`packages`), the coordinator's systemd readiness
//! notifications (`notify`) and log priorities for the journal (`journal`), the admin
//! profile with an operator's certificate (`operator_cert`), the Kubernetes manifests and
//! Containerfiles (`manifests`).

mod journal;
mod manifests;
mod notify;
mod operator_cert;
mod packages;
