# Sourced by scripts/test: ensure_test_crate makes sure the source of a real crate from crates.io (one with unit
# and integration tests and no dependencies, so its tests build offline once fetched) is at $test_crate, and
# exports its path as PROCTOR_TEST_CRATE for the Cargo source's test (crates/proctor-cli/tests/cargo_projects.rs).
# Expects $root to be the repository root.
#
# The crate is strsim (string similarity metrics, a dependency of clap): 88 unit tests in src/lib.rs and 8
# integration tests in tests/lib.rs, no dependencies or dev-dependencies, built in about a second.

test_crate_name="strsim"
test_crate_version="0.11.1"
test_crate="$root/target/test-crates/$test_crate_name-$test_crate_version"

ensure_test_crate() {
    mkdir -p "$root/target/test-crates"
    # Serialise concurrent runs so two of them never fetch at once.
    exec 8>"$root/target/test-crates.lock"
    flock 8
    if [[ ! -f "$test_crate/Cargo.toml" ]]; then
        echo "scripts/test: fetching $test_crate_name $test_crate_version from crates.io into $test_crate" >&2
        # A throwaway package depending on exactly that version, vendored: cargo fetches the published source
        # through its ordinary registry client, and `cargo vendor` copies it out whole (tests included).
        local fetch="$root/target/test-crates/fetch"
        rm -rf "$fetch"
        mkdir -p "$fetch/src"
        printf '[package]\nname = "fetch-test-crate"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\n%s = "=%s"\n\n[workspace]\n' \
            "$test_crate_name" "$test_crate_version" >"$fetch/Cargo.toml"
        : >"$fetch/src/lib.rs"
        cargo vendor --quiet --versioned-dirs --manifest-path "$fetch/Cargo.toml" "$fetch/vendor" >/dev/null
        # Fetching its dependencies once (dev-dependencies and the optional ones its manifest names included, should
        # a later version have any) puts them in cargo's caches, so the tests build it later without the network.
        # Fetched from a copy outside this workspace (as the tests copy it): under target/ cargo would take it for
        # a member of Proctor's workspace. Done before the crate is moved into place, so that an interrupted run
        # leaves no $test_crate/Cargo.toml behind and the next run fetches again.
        local copy
        copy="$(mktemp -d)"
        cp -r "$fetch/vendor/$test_crate_name-$test_crate_version" "$copy/crate"
        cargo fetch --quiet --manifest-path "$copy/crate/Cargo.toml"
        rm -rf "$copy"
        rm -rf "$test_crate"
        mv "$fetch/vendor/$test_crate_name-$test_crate_version" "$test_crate"
        rm -rf "$fetch"
    fi
    flock -u 8
    exec 8>&-
    export PROCTOR_TEST_CRATE="$test_crate"
}
