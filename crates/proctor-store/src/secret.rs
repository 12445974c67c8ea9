//! Bearer token secrets: generated from the OS's random source and stored only as hashes.

use sha2::{Digest, Sha256};

use crate::StoreError;

/// Bytes of randomness in a secret: 256 bits, beyond any guessing.
const SECRET_BYTES: usize = 32;

/// Marks a string as a Proctor token, so leaked ones are recognisable (in logs, by secret scanners).
const SECRET_PREFIX: &str = "proctor_";

/// A fresh random secret.
pub fn generate() -> Result<String, StoreError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(StoreError::Randomness)?;
    Ok(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
}

/// The stored form of a secret. A fast unsalted hash suffices because secrets are long random strings, not
/// passwords: there is no dictionary to try, and the hash is the lookup key.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
