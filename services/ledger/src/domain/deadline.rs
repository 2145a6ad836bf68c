//! 督查督办: when a time limit counts as missed. The item's own check and the watcher's query both
//! follow [`is_past`] and [`due_overdue`] (the query is tested against them in
//! `store::tests::the_watchers_query_follows_the_deadline_rule`).

use chrono::{DateTime, Utc};

use super::{ItemStatus, OverdueKind};

/// A limit `by` is missed at `now` only once it has passed: an item due exactly at `by` is in time.
pub fn is_past(by: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now > by
}

/// The overdue flags due at `now` for an item in `status` that has not yet been flagged with
/// `flagged`: respond-by passed without acknowledgement (签收), resolve-by passed while still open.
/// Each kind is flagged once.
pub fn due_overdue(
    status: ItemStatus,
    respond_by: Option<DateTime<Utc>>,
    resolve_by: Option<DateTime<Utc>>,
    flagged: &[OverdueKind],
    now: DateTime<Utc>,
) -> Vec<OverdueKind> {
    let due = |by: Option<DateTime<Utc>>, kind| {
        by.is_some_and(|by| is_past(by, now)) && !flagged.contains(&kind)
    };
    let mut out = vec![];
    if status == ItemStatus::Registered && due(respond_by, OverdueKind::Respond) {
        out.push(OverdueKind::Respond);
    }
    if status != ItemStatus::WrittenOff && due(resolve_by, OverdueKind::Resolve) {
        out.push(OverdueKind::Resolve);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemStatus::*;
    use OverdueKind::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_316_800 + s, 0).unwrap()
    }

    #[test]
    fn a_limit_is_missed_only_after_it_passes() {
        let by = t(100);
        assert!(!is_past(by, t(99)));
        assert!(!is_past(by, by), "due exactly at by is in time");
        assert!(is_past(by, by + chrono::Duration::microseconds(1)));
    }

    #[test]
    fn respond_counts_until_acknowledged_resolve_until_written_off() {
        let (respond, resolve) = (Some(t(10)), Some(t(20)));
        let at = |status, now| due_overdue(status, respond, resolve, &[], now);
        assert_eq!(at(Registered, t(10)), []);
        assert_eq!(at(Registered, t(11)), [Respond]);
        assert_eq!(at(Registered, t(20)), [Respond]);
        assert_eq!(at(Registered, t(21)), [Respond, Resolve]);
        assert_eq!(at(Acknowledged, t(11)), []);
        assert_eq!(at(Acknowledged, t(21)), [Resolve]);
        assert_eq!(at(ClosurePending, t(21)), [Resolve]);
        assert_eq!(at(WrittenOff, t(21)), []);
    }

    #[test]
    fn each_kind_is_flagged_once_and_no_limit_is_never_missed() {
        let now = t(100);
        assert_eq!(
            due_overdue(Registered, Some(t(1)), Some(t(2)), &[Respond], now),
            [Resolve]
        );
        assert_eq!(
            due_overdue(Registered, Some(t(1)), Some(t(2)), &[Resolve, Respond], now),
            []
        );
        assert_eq!(due_overdue(Registered, None, None, &[], now), []);
    }
}
