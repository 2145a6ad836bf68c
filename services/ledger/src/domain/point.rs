//! 点位: what a new report of a problem at a point leads to. Every path that puts an item on the
//! ledger — a dispatched complaint (alone or in a run), a street's own find (主动发现), an imported
//! row — asks [`at_point`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Source, REBOUND_WINDOW_DAYS};

/// What the ledger knows of one (point, category).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PointState {
    /// The open item there, if any (at most one: a unique index holds it).
    pub open: Option<Uuid>,
    /// The last item written off there as rectified or unfounded, and when.
    pub last_write_off: Option<(Uuid, DateTime<Utc>)>,
}

/// The decision for a report at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtPoint {
    /// The problem is already on the ledger: a repeat call joins this item; a street's find or an
    /// import is refused, naming it.
    Open(Uuid),
    /// 上账: a new item; a rebound (防止反弹) of the item written off there within the window.
    Register { rebound_of: Option<Uuid> },
}

/// The rule: an open item takes the report; otherwise a new item, which is a rebound when the
/// point's last write-off lies within [`REBOUND_WINDOW_DAYS`] of `reported_at`. An imported row
/// is the old ledger's own history and is no rebound of anything written off here.
pub fn at_point(state: &PointState, source: Source, reported_at: DateTime<Utc>) -> AtPoint {
    if let Some(open) = state.open {
        return AtPoint::Open(open);
    }
    let since = reported_at - chrono::Duration::days(REBOUND_WINDOW_DAYS);
    let rebound_of = match source {
        Source::Import => None,
        Source::Complaint | Source::Inspection => state
            .last_write_off
            .filter(|(_, at)| *at >= since)
            .map(|(id, _)| id),
    };
    AtPoint::Register { rebound_of }
}

impl PointState {
    /// The state after `item_id` was registered here (for the next report of the same run).
    pub fn registered(&mut self, item_id: Uuid) {
        self.open = Some(item_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        "2026-11-28T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::days(days)
    }

    #[test]
    fn an_open_item_takes_every_report() {
        let (open, old) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let state = PointState {
            open: Some(open),
            last_write_off: Some((old, t(-1))),
        };
        for source in [Source::Complaint, Source::Inspection, Source::Import] {
            assert_eq!(at_point(&state, source, t(0)), AtPoint::Open(open));
        }
    }

    #[test]
    fn a_write_off_within_the_window_makes_a_rebound_at_its_edge_too() {
        let old = Uuid::from_u128(2);
        let written_off = |at| PointState {
            open: None,
            last_write_off: Some((old, at)),
        };
        let now = t(0);
        let edge = now - chrono::Duration::days(REBOUND_WINDOW_DAYS);
        for source in [Source::Complaint, Source::Inspection] {
            let rebound = |at| at_point(&written_off(at), source, now);
            assert_eq!(
                rebound(t(-1)),
                AtPoint::Register {
                    rebound_of: Some(old)
                }
            );
            assert_eq!(
                rebound(edge),
                AtPoint::Register {
                    rebound_of: Some(old)
                }
            );
            assert_eq!(
                rebound(edge - chrono::Duration::seconds(1)),
                AtPoint::Register { rebound_of: None }
            );
        }
        assert_eq!(
            at_point(&written_off(t(-1)), Source::Import, now),
            AtPoint::Register { rebound_of: None },
            "an import is history, not a rebound"
        );
        assert_eq!(
            at_point(&PointState::default(), Source::Complaint, now),
            AtPoint::Register { rebound_of: None }
        );
    }

    #[test]
    fn a_registration_opens_the_point_for_the_rest_of_a_run() {
        let mut state = PointState::default();
        state.registered(Uuid::from_u128(5));
        assert_eq!(
            at_point(&state, Source::Complaint, t(0)),
            AtPoint::Open(Uuid::from_u128(5))
        );
    }
}
