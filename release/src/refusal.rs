//! Why signed release metadata did not allow an install: a code the operator sees (in the
//! updater's decision and its report) and the particulars in words.

use drover_rules::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", code.as_str())]
pub struct Refusal {
    pub code: ReasonCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}
