//! Reads FMF (tmt test metadata) trees: node names, inheritance, key+ merging, adjust rules on a context, and the test keys.
