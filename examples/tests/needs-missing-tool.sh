# Skipped (exit 77, the automake convention) when a tool is missing.
command -v proctor-example-missing-tool >/dev/null || { echo "tool not installed"; exit 77; }
