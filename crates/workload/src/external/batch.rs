//! What a run hands from stage to stage (the steps, the batch of records and its rejections),
//! serialisable so the step-by-step CLI can pass it through files, and what stages return.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Published {
        records: usize,
        rejected: usize,
        warnings: usize,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("publish failed: {0}")]
    Publish(String),
}

/// The four steps of a run. The scheduler runs them back to back; `workload external-step`
/// runs one at a time (an orchestrator's task each), handing over through files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Fetch,
    Transform,
    Validate,
    Publish,
}

impl Step {
    pub const ALL: [Step; 4] = [Self::Fetch, Self::Transform, Self::Validate, Self::Publish];

    pub fn name(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Transform => "transform",
            Self::Validate => "validate",
            Self::Publish => "publish",
        }
    }

    /// The file this step writes in the run's directory.
    pub fn output_file(self) -> &'static str {
        match self {
            Self::Fetch => "fetched.json",
            Self::Transform => "transformed.json",
            Self::Validate => "validated.json",
            Self::Publish => "published.json",
        }
    }

    /// The step whose output this one reads.
    pub fn input(self) -> Option<Step> {
        match self {
            Self::Fetch => None,
            Self::Transform => Some(Self::Fetch),
            Self::Validate => Some(Self::Transform),
            Self::Publish => Some(Self::Validate),
        }
    }
}

/// One record on its way through a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedRecord {
    /// Derived from the seed, pipeline, schedule slot and position, so a retry republishes the
    /// same ids and consumers can deduplicate.
    pub record_id: String,
    pub location: Option<String>,
    pub payload: Map<String, Value>,
    #[serde(default)]
    pub quality_warnings: Vec<String>,
}

/// A record the validate step refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub record_id: String,
    pub location: Option<String>,
    pub reason: String,
}

/// What one step hands to the next: the run it belongs to and its records so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub pipeline: String,
    /// The last step applied.
    pub step: Step,
    pub seed: u64,
    /// The run's schedule slot (virtual time); the records' `observed_at`.
    pub scheduled_at_ms: i64,
    pub fetched_at_ms: i64,
    pub records: Vec<StagedRecord>,
    #[serde(default)]
    pub rejected: Vec<Rejection>,
}
