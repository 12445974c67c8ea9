# Sourced by scripts/test and scripts/bench: ensure_sdists fetches, once, the real Python project the pytest source's
# tests run (toolz's sdist from PyPI, whose pytest suite no one here wrote) and exports its directory as
# PROCTOR_TEST_PYTEST_PROJECT. Expects $root and $venv (scripts/venv.sh).

sdists="$root/target/test-sdists"
toolz_version="1.0.0"

ensure_sdists() {
    local project="$sdists/toolz-$toolz_version"
    if [[ ! -f "$project/setup.cfg" ]]; then
        echo "scripts/test: fetching toolz $toolz_version's sdist for the pytest tests" >&2
        rm -rf "$project"
        mkdir -p "$sdists"
        "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-input \
            --no-binary :all: --no-deps --dest "$sdists" "toolz==$toolz_version"
        tar -xzf "$sdists/toolz-$toolz_version.tar.gz" -C "$sdists"
    fi
    export PROCTOR_TEST_PYTEST_PROJECT="$project"
}
