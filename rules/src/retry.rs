//! "Busy, retry in N s": how a coordinator that sheds work tells a client when to come back.
//! gRPC's own retry design names the trailer (`grpc-retry-pushback-ms`); HTTP has
//! `Retry-After`. Both sides use these definitions.

use std::time::Duration;

/// The gRPC metadata key that carries the wait, in milliseconds.
pub const PUSHBACK_METADATA: &str = "grpc-retry-pushback-ms";

/// How long a client is asked to wait when the coordinator's store is busy: long enough
/// for the queue ahead of it to drain, short enough that an updater is soon back.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The most a client honours, whatever a server says (a bad value must not park it).
pub const MAX_PUSHBACK: Duration = Duration::from_secs(60);

/// The wait a pushback value asks for, bounded by [`MAX_PUSHBACK`]; `None` if malformed.
/// (A negative value, which gRPC uses for "do not retry", is malformed here: an updater
/// always comes back.)
pub fn parse_pushback(value: &str) -> Option<Duration> {
    let ms: u64 = value.trim().parse().ok()?;
    Some(Duration::from_millis(ms).min(MAX_PUSHBACK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushback_values_are_bounded_and_checked() {
        assert_eq!(parse_pushback("2000"), Some(Duration::from_secs(2)));
        assert_eq!(parse_pushback("99999999999"), Some(MAX_PUSHBACK));
        assert_eq!(parse_pushback("-1"), None);
        assert_eq!(parse_pushback("soon"), None);
    }
}
