//! How Drover is installed (deploy/ and scripts/package), in one test binary: the .deb and
//! .rpm packages in empty roots (`packages`), the coordinator's systemd readiness
//! notifications (`notify`), the Kubernetes manifests and Containerfiles (`manifests`).

mod manifests;
mod notify;
mod packages;
