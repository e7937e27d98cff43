//! External data as scheduled, configuration-driven pipelines: fetch → transform/enrich →
//! validate → publish. Each pipeline is a `[[pipeline]]` table in a TOML file with a cron
//! schedule; a new source is a new table, no code. A failed run is retried and, when it still
//! fails, reported (log, metric and the returned report), never dropped silently.
//!
//! One file per concern: the pipelines file (`config`), what stages pass along (`batch`), the
//! stages themselves (`fetch`, `transform`, `validate`, `publish`), the step-by-step CLI work
//! directory (`steps`) and the scheduler (`scheduler`).

mod batch;
mod config;
mod fetch;
mod publish;
mod scheduler;
mod steps;
mod transform;
mod validate;

pub use batch::{Batch, Rejection, RunOutcome, StageError, StagedRecord, Step};
pub use config::{
    ConfigError, DEFAULT_PIPELINES, FetchConfig, FieldSpec, Pipeline, PipelineConfig,
    PipelinesFile, ValidateConfig, parse_pipelines,
};
pub use fetch::fetch;
pub(crate) use fetch::synthesize_fields;
pub use publish::{external_records, publish};
pub use scheduler::{RunReport, Scheduler};
pub use steps::{StepError, StepOutcome, StepRequest, run_dir, run_step, slot_at_or_after};
pub use transform::transform;
pub(crate) use transform::transform_record;
pub use validate::validate;
pub(crate) use validate::validate_record;
