//! Keeping or dropping whole test runs.

use std::collections::BTreeSet;

use proctor_subunit::{Event, Status};
use regex::Regex;

use crate::runs::{OpenRuns, RunKey, RunKeyRef};
use crate::{Sink, SinkError};

/// What a [`Filter`] keeps. A run is kept when it passes every criterion
/// given; an empty criterion accepts everything.
#[derive(Clone, Debug, Default)]
pub struct FilterSpec {
    /// Keep only runs that ended with one of these statuses (unfinished runs
    /// have no status).
    pub statuses: BTreeSet<Status>,
    /// Drop runs that ended with one of these statuses.
    pub exclude_statuses: BTreeSet<Status>,
    /// Keep only tests whose id matches one of these.
    pub ids: Vec<Regex>,
    /// Drop tests whose id matches one of these.
    pub exclude_ids: Vec<Regex>,
    /// Keep only runs carrying one of these tags.
    pub tags: BTreeSet<String>,
    /// Drop runs carrying one of these tags.
    pub exclude_tags: BTreeSet<String>,
    /// Drop events that belong to no test (global attachments, text).
    pub drop_global: bool,
}

impl FilterSpec {
    /// Whether deciding needs a run's final status or tags, so its events
    /// must wait until it ends.
    fn needs_whole_run(&self) -> bool {
        !(self.statuses.is_empty()
            && self.exclude_statuses.is_empty()
            && self.tags.is_empty()
            && self.exclude_tags.is_empty())
    }

    fn accepts_id(&self, test_id: &str) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|re| re.is_match(test_id)))
            && !self.exclude_ids.iter().any(|re| re.is_match(test_id))
    }

    fn accepts_run(&self, test_id: &str, status: Option<Status>, tags: &BTreeSet<String>) -> bool {
        let status_ok = match status {
            Some(status) => {
                (self.statuses.is_empty() || self.statuses.contains(&status))
                    && !self.exclude_statuses.contains(&status)
            }
            None => self.statuses.is_empty(),
        };
        let tags_ok = (self.tags.is_empty() || !self.tags.is_disjoint(tags))
            && self.exclude_tags.is_disjoint(tags);
        status_ok && tags_ok && self.accepts_id(test_id)
    }
}

#[derive(Default)]
struct PendingRun {
    events: Vec<Event>,
    tags: BTreeSet<String>,
}

/// Passes on the events of the test runs a [`FilterSpec`] accepts. When the
/// decision needs a run's outcome or tags, the run's events are held until it
/// ends (or the stream does); otherwise each event passes straight through.
pub struct Filter<S> {
    spec: FilterSpec,
    inner: S,
    pending: OpenRuns<PendingRun>,
}

impl<S: Sink> Filter<S> {
    /// A filter passing what `spec` accepts on to `inner`.
    pub fn new(spec: FilterSpec, inner: S) -> Filter<S> {
        Filter {
            spec,
            inner,
            pending: OpenRuns::default(),
        }
    }

    /// Passes on a finished run's events if the spec accepts it.
    fn release(
        &mut self,
        key: &RunKey,
        run: PendingRun,
        status: Option<Status>,
    ) -> Result<(), SinkError> {
        if self.spec.accepts_run(&key.test_id, status, &run.tags) {
            run.events
                .iter()
                .try_for_each(|event| self.inner.event(event))?;
        }
        Ok(())
    }
}

impl<S: Sink> Sink for Filter<S> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        let Some(test_id) = event.test_id.as_deref() else {
            if self.spec.drop_global {
                return Ok(());
            }
            return self.inner.event(event);
        };
        if !self.spec.needs_whole_run() {
            if self.spec.accepts_id(test_id) {
                return self.inner.event(event);
            }
            return Ok(());
        }
        let view = event.view();
        let Some(key) = RunKeyRef::of(&view) else {
            return Ok(());
        };
        let run = self.pending.entry(key, PendingRun::default);
        run.tags.extend(event.tags.iter().cloned());
        run.events.push(event.clone());
        match event.status {
            Some(status) if status.is_final() => match self.pending.remove(key) {
                Some((key, run)) => self.release(&key, run, Some(status)),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for (key, run) in self.pending.drain() {
            self.release(&key, run, None)?;
        }
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Collect;

    fn run(id: &str, status: Status, tag: &str) -> Vec<Event> {
        vec![
            Event::test(id, Status::InProgress).tagged(tag),
            Event::file(Some(id.into()), "log", &b"x"[..], true),
            Event::test(id, status),
        ]
    }

    fn filtered(spec: FilterSpec) -> Vec<(String, Option<Status>)> {
        let mut out = Collect::default();
        let mut filter = Filter::new(spec, &mut out);
        let mut events = run("a.one", Status::Success, "fast");
        events.extend(run("a.two", Status::Fail, "slow"));
        events.extend(run("b.one", Status::Skip, "fast"));
        events.push(Event::file(None, "stdout", &b"text"[..], false));
        for event in &events {
            filter.event(event).expect("filters");
        }
        filter.finish().expect("finishes");
        out.events
            .iter()
            .map(|e| (e.test_id.clone().unwrap_or_default(), e.status))
            .collect()
    }

    #[test]
    fn no_criteria_passes_everything() {
        assert_eq!(filtered(FilterSpec::default()).len(), 10);
    }

    #[test]
    fn status_filter_keeps_whole_runs() {
        let spec = FilterSpec {
            statuses: BTreeSet::from([Status::Fail]),
            drop_global: true,
            ..FilterSpec::default()
        };
        let kept = filtered(spec);
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().all(|(id, _)| id == "a.two"));
    }

    #[test]
    fn id_and_tag_filters_combine() {
        let spec = FilterSpec {
            ids: vec![Regex::new("^a\\.").expect("regex")],
            exclude_tags: BTreeSet::from(["slow".to_owned()]),
            ..FilterSpec::default()
        };
        let kept: BTreeSet<_> = filtered(spec).into_iter().map(|(id, _)| id).collect();
        assert_eq!(kept, BTreeSet::from(["a.one".to_owned(), String::new()]));
    }
}
