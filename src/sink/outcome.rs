//! Folding per-event failures of one batch into the one [`SinkError`] the
//! dispatcher expects (shared by the sinks that send a batch as many
//! messages, and by the broker sinks through `broker::fold`).

use super::SinkError;

/// The result of a batch of `len` events of which `failed` (index, reason)
/// were not delivered.
///
/// Nothing failed: `Ok`. Every event failed for the same kind of reason: that
/// reason for the whole batch (a broker that is down is one transient error,
/// not 500), naming how many failed and the first message, with the longest
/// `retry_after` asked for. Otherwise [`SinkError::Partial`], so the
/// dispatcher acknowledges the delivered events and retries or dead-letters
/// only the others.
pub(crate) fn fold(len: usize, mut failed: Vec<(usize, SinkError)>) -> Result<(), SinkError> {
    if failed.is_empty() {
        return Ok(());
    }
    failed.sort_by_key(|(index, _)| *index);
    if failed.len() < len {
        return Err(SinkError::Partial { failed });
    }
    let all_transient = failed
        .iter()
        .all(|(_, e)| matches!(e, SinkError::Transient { .. }));
    let all_permanent = failed
        .iter()
        .all(|(_, e)| matches!(e, SinkError::Permanent { .. }));
    let all_disabled = failed
        .iter()
        .all(|(_, e)| matches!(e, SinkError::Disabled { .. }));
    let first = match &failed[0].1 {
        SinkError::Transient { message, .. }
        | SinkError::Permanent { message }
        | SinkError::Disabled { message } => message.clone(),
        SinkError::Partial { .. } => String::from("partial failure"),
    };
    let message = if len == 1 {
        first
    } else {
        format!("all {len} events failed; first: {first}")
    };
    if all_transient {
        let retry_after = failed
            .iter()
            .filter_map(|(_, e)| match e {
                SinkError::Transient { retry_after, .. } => *retry_after,
                _ => None,
            })
            .max();
        Err(SinkError::Transient {
            message,
            retry_after,
        })
    } else if all_permanent {
        Err(SinkError::Permanent { message })
    } else if all_disabled {
        Err(SinkError::Disabled { message })
    } else {
        Err(SinkError::Partial { failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn folds_whole_batch_failures_and_keeps_partial_ones() {
        assert!(fold(3, vec![]).is_ok());
        let all = vec![
            (1, SinkError::transient("b")),
            (
                0,
                SinkError::Transient {
                    message: "a".into(),
                    retry_after: Some(Duration::from_secs(2)),
                },
            ),
        ];
        match fold(2, all) {
            Err(SinkError::Transient {
                message,
                retry_after,
            }) => {
                assert_eq!(message, "all 2 events failed; first: a");
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
            }
            other => panic!("{other:?}"),
        }
        match fold(1, vec![(0, SinkError::permanent("too big"))]) {
            Err(SinkError::Permanent { message }) => assert_eq!(message, "too big"),
            other => panic!("{other:?}"),
        }
        let mixed = vec![
            (0, SinkError::permanent("x")),
            (1, SinkError::transient("y")),
        ];
        assert!(matches!(fold(2, mixed), Err(SinkError::Partial { failed }) if failed.len() == 2));
        let some = vec![
            (2, SinkError::transient("y")),
            (0, SinkError::transient("x")),
        ];
        match fold(3, some) {
            Err(SinkError::Partial { failed }) => {
                assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), [0, 2]);
            }
            other => panic!("{other:?}"),
        }
    }
}
