# Shell arithmetic agrees with itself.
test $((6 * 7)) -eq 42
echo "6 * 7 = $((6 * 7))"
