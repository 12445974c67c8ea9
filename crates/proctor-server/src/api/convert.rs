//! Turns the store's records into the API's views; the two are kept apart so the stored form can change without
//! changing the stable API.

use proctor_api::{
    AgentView, CancelView, HeartbeatView, JobSummaryView, JobView, PhaseView, QueueView,
    RecipeView, TestResultView,
};
use proctor_store::{
    Agent, CancelOutcome, HeartbeatReply, Job, JobState, JobSummary, PhaseRecord, QueueInfo,
    Recipe, TestResult,
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

impl IntoView for TestResult {
    type View = TestResultView;

    fn into_view(self) -> TestResultView {
        TestResultView {
            test_id: self.test_id,
            status: self.status,
            duration_us: self.duration_us,
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
