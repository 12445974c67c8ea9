# A test that takes a moment, so the run shows durations.
sleep 0.5
echo "waited half a second"
