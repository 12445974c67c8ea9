//! The lab service: the HTTP JSON API under /api/v1 (with its OpenAPI document), dispatch by long-polling claims, leases and the reaper, log and result uploads, metrics.
