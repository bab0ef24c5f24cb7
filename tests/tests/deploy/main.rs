//! How Drover is installed (deploy/ and scripts/package), in one test binary: the .deb and
//! .rpm packages in empty roots (`packages`), the coordinator's systemd readiness
//! notifications (`notify`).

mod notify;
mod packages;
