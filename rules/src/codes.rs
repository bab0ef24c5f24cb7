//! Codes that cross the system — in the store, on the wire as text, in the CLI and the API —
//! defined once, each with a one-line explanation for people.

use std::fmt;

/// Defines a closed code enum with its stable text, its explanation, `ALL` and `parse`.
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal : $explain:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = $explain] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stable text stored and sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// One line for people: what the code means.
            pub fn explain(self) -> &'static str {
                match self {
                    $(Self::$variant => $explain,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|code| code.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Where a rollout stands as a whole.
    RolloutStatus {
        Active => "active": "the rollout governs its channel and moves group by group",
        Done => "done": "every group finished on the target; the channel serves the target",
        Rolledback => "rolledback": "every group was rolled back to the start version",
    }
}

codes! {
    /// What an event records.
    EventKind {
        Admin => "admin": "a change an admin made (or a refused attempt)",
        Rollout => "rollout": "a transition the rollout engine made",
        Update => "update": "an update an agent's updater reported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_unique_round_trip_and_explained() {
        for code in RolloutStatus::ALL {
            assert_eq!(RolloutStatus::parse(code.as_str()), Some(*code));
            assert!(!code.explain().is_empty());
        }
        for code in EventKind::ALL {
            assert_eq!(EventKind::parse(code.as_str()), Some(*code));
            assert!(!code.explain().is_empty());
        }
        assert_eq!(RolloutStatus::parse("finished"), None);
    }
}
