//! Lab job definitions (YAML or JSON, Testflinger field names) and agent configuration (TOML): parsing and validation with errors that name the field and, for YAML, the line and column.
