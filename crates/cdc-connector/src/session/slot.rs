//! What to do with the replication slot before streaming, decided from what the server has and
//! what the connector's state records (pure, so every rule has a unit test).
//!
//! A slot that disappears (dropped by hand, or invalidated by `max_slot_wal_keep_size`) takes
//! with it every change after its last confirmed position. Creating a new one and streaming on
//! would skip those changes without a word, so a connector that streamed from a slot before
//! never does that: it stops with a definite error, or with `--snapshot-mode when_needed` it
//! takes a new snapshot first (READ records of every row), so consumers converge again.

use pgoutput::copy::Lsn;

use crate::{
    snapshot::SnapshotMode,
    source::setup::ExistingSlot,
    state::{SnapshotState, SnapshotStatus},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotPlan {
    /// Stream from the slot's confirmed position.
    Resume(Lsn),
    /// Create the slot (dropping the old one first), with a snapshot if the mode takes one.
    Create {
        drop_first: bool,
        /// Why a slot this connector streamed from is being replaced (a new snapshot follows).
        lost: Option<String>,
    },
    /// The slot is gone and the mode takes no new snapshot: a definite error saying why.
    Lost(String),
}

pub fn plan_slot(
    slot: ExistingSlot,
    recorded: Option<&SnapshotState>,
    mode: SnapshotMode,
) -> SlotPlan {
    let status = recorded.map(|state| &state.status);
    let streamed_before = matches!(
        status,
        Some(SnapshotStatus::Complete | SnapshotStatus::Skipped)
    );
    let gone = |what: String| match mode {
        // (initial_only snapshots without a slot and never streams, so it never gets here.)
        SnapshotMode::WhenNeeded | SnapshotMode::InitialOnly => SlotPlan::Create {
            drop_first: slot == ExistingSlot::Invalidated,
            lost: Some(what),
        },
        SnapshotMode::Initial | SnapshotMode::NoData => SlotPlan::Lost(what),
    };
    match slot {
        ExistingSlot::Usable(lsn) => {
            if mode == SnapshotMode::Initial && status != Some(&SnapshotStatus::Complete) {
                // An interrupted snapshot, or a slot made without one: snapshot again.
                SlotPlan::Create {
                    drop_first: true,
                    lost: None,
                }
            } else {
                SlotPlan::Resume(lsn)
            }
        }
        ExistingSlot::Invalidated => gone(
            "the server invalidated it (wal_status 'lost'): it fell behind max_slot_wal_keep_size and the WAL it still needed was removed"
                .into(),
        ),
        ExistingSlot::Missing if streamed_before => gone(format!(
            "it no longer exists (dropped), though this connector streamed from it since {}",
            recorded.map(|s| s.consistent_point.as_str()).unwrap_or("?")
        )),
        ExistingSlot::Missing => SlotPlan::Create {
            drop_first: false,
            lost: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: SnapshotStatus) -> SnapshotState {
        SnapshotState {
            status,
            consistent_point: "0/1A2B3C".into(),
        }
    }

    fn create(drop_first: bool) -> SlotPlan {
        SlotPlan::Create {
            drop_first,
            lost: None,
        }
    }

    #[test]
    fn a_first_start_creates_the_slot_in_every_mode() {
        for mode in [
            SnapshotMode::Initial,
            SnapshotMode::NoData,
            SnapshotMode::WhenNeeded,
            SnapshotMode::InitialOnly,
        ] {
            assert_eq!(plan_slot(ExistingSlot::Missing, None, mode), create(false));
            // An interrupted first snapshot whose slot vanished too: nothing streamed yet.
            let started = state(SnapshotStatus::Started);
            assert_eq!(
                plan_slot(ExistingSlot::Missing, Some(&started), mode),
                create(false)
            );
        }
    }

    #[test]
    fn a_usable_slot_resumes_unless_its_initial_snapshot_never_completed() {
        let complete = state(SnapshotStatus::Complete);
        let usable = ExistingSlot::Usable(42);
        for mode in [
            SnapshotMode::Initial,
            SnapshotMode::WhenNeeded,
            SnapshotMode::NoData,
        ] {
            assert_eq!(
                plan_slot(usable, Some(&complete), mode),
                SlotPlan::Resume(42)
            );
        }
        for recorded in [
            None,
            Some(state(SnapshotStatus::Started)),
            Some(state(SnapshotStatus::Skipped)),
        ] {
            assert_eq!(
                plan_slot(usable, recorded.as_ref(), SnapshotMode::Initial),
                create(true)
            );
        }
        assert_eq!(
            plan_slot(usable, None, SnapshotMode::NoData),
            SlotPlan::Resume(42)
        );
    }

    #[test]
    fn a_dropped_slot_the_connector_streamed_from_is_never_silently_replaced() {
        for status in [SnapshotStatus::Complete, SnapshotStatus::Skipped] {
            let recorded = state(status);
            for mode in [SnapshotMode::Initial, SnapshotMode::NoData] {
                let SlotPlan::Lost(why) = plan_slot(ExistingSlot::Missing, Some(&recorded), mode)
                else {
                    panic!("{mode:?} replaced a lost slot");
                };
                assert!(why.contains("dropped") && why.contains("0/1A2B3C"), "{why}");
            }
            let SlotPlan::Create {
                drop_first: false,
                lost: Some(why),
            } = plan_slot(
                ExistingSlot::Missing,
                Some(&recorded),
                SnapshotMode::WhenNeeded,
            )
            else {
                panic!("when_needed takes a new snapshot");
            };
            assert!(why.contains("dropped"), "{why}");
        }
    }

    #[test]
    fn an_invalidated_slot_is_an_error_or_with_when_needed_replaced_by_a_new_snapshot() {
        let recorded = state(SnapshotStatus::Complete);
        let SlotPlan::Lost(why) = plan_slot(
            ExistingSlot::Invalidated,
            Some(&recorded),
            SnapshotMode::Initial,
        ) else {
            panic!("an invalidated slot is lost");
        };
        assert!(why.contains("max_slot_wal_keep_size"), "{why}");
        assert!(matches!(
            plan_slot(ExistingSlot::Invalidated, None, SnapshotMode::WhenNeeded),
            SlotPlan::Create {
                drop_first: true,
                lost: Some(_)
            }
        ));
    }
}
