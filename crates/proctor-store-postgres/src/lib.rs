//! The PostgreSQL implementation of `proctor_store::Store` (being written).
