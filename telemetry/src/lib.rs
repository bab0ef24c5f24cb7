//! Drover's logs and traces (placeholder: being built).
#![forbid(unsafe_code)]
