//! How Drover is installed (deploy/ and scripts/package), in one test binary: the
//! coordinator's systemd readiness notifications (`notify`).

mod notify;
