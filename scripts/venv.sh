# Sourced by scripts/test and scripts/bench: ensure_venv makes sure the
# virtualenv with the Python reference tools exists at $venv and is current.
# Expects $root to be the repository root.

venv="$root/target/test-venv"
requirements="$root/scripts/test-requirements.txt"
stamp="$venv/requirements.stamp"

venv_is_current() {
    [[ -x "$venv/bin/python" ]] &&
        cmp -s "$requirements" "$stamp" &&
        "$venv/bin/python" -c 'import subunit.v2, junitxml, stestr, pytest, xdist' 2>/dev/null
}

ensure_venv() {
    mkdir -p "$root/target"
    # Serialise concurrent runs so two of them never build the venv at once.
    exec 9>"$root/target/test-venv.lock"
    flock 9
    if ! venv_is_current; then
        echo "scripts/test: creating Python test environment in $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input -r "$requirements"
        cp "$requirements" "$stamp"
    fi
    flock -u 9
    exec 9>&-
}

