# The standard text tools are present and behave.
printf 'b\na\nc\n' | sort | head -n 1 | grep -qx a
echo "sort, head and grep work"
