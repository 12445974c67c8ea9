//! The lab agent: claims jobs from the server for its queues and runs their phases under process supervision, streaming logs and results back.
