//! Process supervision: spawn test commands in their own process group, capture output, enforce time, no-output and memory limits, and kill whole process trees.
