//! Turns the store's records into the API's views; the two are kept apart so the stored form can change without
//! changing the stable API.

use proctor_api::{
    AgentView, CancelView, HeartbeatView, JobSummaryView, JobView, PhaseView, QueueView,
    RecipeView, RunCountsView, TestCountsView, TestHistoryRunView, TestResultView, TestResultsView,
    TestRunView,
};
use proctor_events::{Tally, Try};
use proctor_store::{
    Agent, CancelOutcome, HeartbeatReply, Job, JobState, JobSummary, PhaseRecord, QueueInfo,
    Recipe, TestHistoryRun, TestRun,
};

/// A stored record's form in the API.
pub(crate) trait IntoView {
    /// The API's form.
    type View;

    /// The record as the API shows it.
    fn into_view(self) -> Self::View;
}

impl IntoView for Job {
    type View = JobView;

    fn into_view(self) -> JobView {
        JobView {
            id: self.id,
            queue: self.queue,
            name: self.name,
            priority: self.priority,
            state: self.state,
            reason: self.reason,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            cancel_requested: self.cancel_requested,
            submitter: self.submitter,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            agent_id: self.agent_id,
            definition: self.definition,
        }
    }
}

impl IntoView for JobSummary {
    type View = JobSummaryView;

    fn into_view(self) -> JobSummaryView {
        JobSummaryView {
            id: self.id,
            queue: self.queue,
            name: self.name,
            priority: self.priority,
            state: self.state,
            reason: self.reason,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            submitter: self.submitter,
            cancel_requested: self.cancel_requested,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            agent_id: self.agent_id,
        }
    }
}

impl IntoView for PhaseRecord {
    type View = PhaseView;

    fn into_view(self) -> PhaseView {
        PhaseView {
            name: self.name,
            started_at: self.started_at,
            ended_at: self.ended_at,
            exit_status: self.exit_status,
        }
    }
}

impl IntoView for CancelOutcome {
    type View = CancelView;

    fn into_view(self) -> CancelView {
        match self {
            CancelOutcome::Cancelled => CancelView {
                outcome: "cancelled".into(),
                state: JobState::Cancelled,
            },
            CancelOutcome::Requested => CancelView {
                outcome: "requested".into(),
                state: JobState::Running,
            },
            CancelOutcome::AlreadyEnded { state } => CancelView {
                outcome: "already_ended".into(),
                state,
            },
        }
    }
}

impl IntoView for Agent {
    type View = AgentView;

    fn into_view(self) -> AgentView {
        AgentView {
            id: self.id,
            queues: self.queues,
            state: self.state,
            last_heartbeat: self.last_heartbeat,
            images: self.images,
        }
    }
}

impl IntoView for HeartbeatReply {
    type View = HeartbeatView;

    fn into_view(self) -> HeartbeatView {
        HeartbeatView {
            renewed: self.renewed,
            cancel_requested: self.cancel_requested,
        }
    }
}

impl IntoView for QueueInfo {
    type View = QueueView;

    fn into_view(self) -> QueueView {
        QueueView {
            name: self.name,
            ever_served: self.ever_served,
            queued: self.queued,
            running: self.running,
            agents_online: self.agents_online,
        }
    }
}

impl IntoView for Vec<TestRun> {
    type View = TestResultsView;

    /// The runs (sorted by test id, as the store reads them) as one row per test, combined and counted by the one
    /// results model.
    fn into_view(self) -> TestResultsView {
        let mut tally = Tally::new();
        let mut results: Vec<TestResultView> = Vec::new();
        for run in self {
            tally.add(&run.test_id, try_of(&run), run.status);
            match results.last_mut() {
                Some(last) if last.test_id == run.test_id => last.runs.push(run.into_view()),
                _ => results.push(TestResultView {
                    test_id: run.test_id.clone(),
                    verdict: String::new(),
                    runs: vec![run.into_view()],
                }),
            }
        }
        for result in &mut results {
            if let Some(verdict) = tally.verdict(&result.test_id) {
                result.verdict = verdict.as_str().to_owned();
            }
        }
        let runs = tally.runs();
        let tests = tally.tests();
        TestResultsView {
            runs: RunCountsView {
                total: runs.total,
                passed: runs.passed,
                failed: runs.failed,
                skipped: runs.skipped,
                running: runs.running,
            },
            tests: TestCountsView {
                total: tests.total,
                passed: tests.passed,
                failed: tests.failed,
                flaky: tests.flaky,
                skipped: tests.skipped,
                running: tests.running,
            },
            results,
        }
    }
}

/// Which try of its test a stored run was.
fn try_of(run: &TestRun) -> Try {
    Try {
        attempt: run.attempt,
        retry: run.retry,
    }
}

impl IntoView for TestRun {
    type View = TestRunView;

    fn into_view(self) -> TestRunView {
        TestRunView {
            attempt: self.attempt,
            route_code: self.route_code,
            retry: self.retry,
            status: self.status.as_str().to_owned(),
            reason: self.reason,
            started_at: self.started_at,
            duration_us: self.duration_us,
            agent_id: self.agent_id,
            tags: self.tags,
        }
    }
}

impl IntoView for TestHistoryRun {
    type View = TestHistoryRunView;

    fn into_view(self) -> TestHistoryRunView {
        TestHistoryRunView {
            job_id: self.job_id,
            job_name: self.job_name,
            job_created_at: self.job_created_at,
            run: self.run.into_view(),
        }
    }
}

impl IntoView for Recipe {
    type View = RecipeView;

    fn into_view(self) -> RecipeView {
        RecipeView {
            name: self.name,
            queue: self.queue,
            script: self.script,
            options: self.default_options,
        }
    }
}
