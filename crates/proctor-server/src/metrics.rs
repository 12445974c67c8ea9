//! Prometheus metrics, with the `prometheus` crate: gauges read from the store at each scrape (so several servers
//! sharing a database report the same figures) and counters and a histogram kept by this process.

use std::sync::{Mutex, PoisonError};

use proctor_store::QueueInfo;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
    /// Held by a scrape from refreshing the gauges to encoding them: the queue depths are reset and refilled, and
    /// a concurrent scrape encoding in between would report no queue at all.
    scrape: Mutex<()>,
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
            scrape: Mutex::new(()),
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

    /// The text exposition, after refreshing the gauges from the store's `queues` and count of online agents.
    pub(crate) fn render(
        &self,
        queues: &[QueueInfo],
        agents_online: u64,
    ) -> Result<String, prometheus::Error> {
        // The guard protects no data of its own, so a scrape that panicked while holding it left nothing broken.
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
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
        self.agents_online.set(saturate(agents_online));
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// A count as a gauge value (gauges are signed; a count that large is not a real case, but must not wrap).
fn saturate(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each scrape resets the queue depths and fills them again; two scrapes at once must each still report
    /// every queue (one encoding between the other's reset and refill reported none).
    #[test]
    fn concurrent_scrapes_each_report_every_queue() {
        let metrics = Metrics::new().expect("the metrics register");
        let queues = [QueueInfo {
            name: "lab".into(),
            ever_served: true,
            queued: 3,
            running: 1,
            agents_online: 1,
        }];
        std::thread::scope(|scope| {
            let scrapers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        (0..500)
                            .map(|_| metrics.render(&queues, 1).expect("rendered"))
                            .filter(|text| !text.contains("proctor_queue_depth{queue=\"lab\"} 3"))
                            .count()
                    })
                })
                .collect();
            for scraper in scrapers {
                assert_eq!(
                    scraper.join().expect("the scraper ran"),
                    0,
                    "scrapes without the queue"
                );
            }
        });
    }
}
