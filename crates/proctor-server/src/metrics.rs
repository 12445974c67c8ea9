//! Prometheus metrics, with the `prometheus` crate: gauges read from the store at each scrape (so several servers
//! sharing a database report the same figures) and counters and a histogram kept by this process.

use proctor_store::{Agent, AgentState, QueueInfo};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Seconds from a job's submission to its first claim; fine-grained at the low end, where the dispatch target is.
const CLAIM_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    queue_depth: IntGaugeVec,
    jobs: IntGaugeVec,
    jobs_ended: IntCounterVec,
    agents_online: IntGauge,
    claim_latency: Histogram,
    reaper_errors: IntCounter,
}

impl Metrics {
    /// Registers every metric.
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let queue_depth = IntGaugeVec::new(
            Opts::new("proctor_queue_depth", "Jobs waiting on each queue"),
            &["queue"],
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new("proctor_jobs", "Jobs that are queued or running, by state"),
            &["state"],
        )?;
        let jobs_ended = IntCounterVec::new(
            Opts::new(
                "proctor_jobs_ended_total",
                "Jobs this server saw end, by final state",
            ),
            &["state"],
        )?;
        let agents_online = IntGauge::new("proctor_agents_online", "Agents that are not offline")?;
        let claim_latency = Histogram::with_opts(
            HistogramOpts::new(
                "proctor_claim_latency_seconds",
                "Time from a job's submission to its first claim by an agent",
            )
            .buckets(CLAIM_LATENCY_BUCKETS.to_vec()),
        )?;
        let reaper_errors = IntCounter::new(
            "proctor_reaper_errors_total",
            "Reaper rounds that failed to reach the store",
        )?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(jobs_ended.clone()))?;
        registry.register(Box::new(agents_online.clone()))?;
        registry.register(Box::new(claim_latency.clone()))?;
        registry.register(Box::new(reaper_errors.clone()))?;
        Ok(Metrics {
            registry,
            queue_depth,
            jobs,
            jobs_ended,
            agents_online,
            claim_latency,
            reaper_errors,
        })
    }

    /// Records how long a job waited for its first claim.
    pub(crate) fn observe_claim_latency(&self, seconds: f64) {
        self.claim_latency.observe(seconds);
    }

    /// Counts a job that ended in `state`.
    pub(crate) fn count_job_ended(&self, state: &str) {
        self.jobs_ended.with_label_values(&[state]).inc();
    }

    /// Counts a reaper round that failed.
    pub(crate) fn count_reaper_error(&self) {
        self.reaper_errors.inc();
    }

    /// The text exposition, after refreshing the gauges from the store's `queues` and `agents`.
    pub(crate) fn render(
        &self,
        queues: &[QueueInfo],
        agents: &[Agent],
    ) -> Result<String, prometheus::Error> {
        self.queue_depth.reset();
        for queue in queues {
            self.queue_depth
                .with_label_values(&[queue.name.as_str()])
                .set(saturate(queue.queued));
        }
        let queued: u64 = queues.iter().map(|queue| queue.queued).sum();
        let running: u64 = queues.iter().map(|queue| queue.running).sum();
        self.jobs
            .with_label_values(&["queued"])
            .set(saturate(queued));
        self.jobs
            .with_label_values(&["running"])
            .set(saturate(running));
        let online = agents
            .iter()
            .filter(|agent| agent.state != AgentState::Offline)
            .count();
        self.agents_online.set(saturate(online as u64));
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        // The text encoder writes only UTF-8 (metric names and escaped label values).
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

/// A count as a gauge value (gauges are signed; a count that large is not a real case, but must not wrap).
fn saturate(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
