//! Cargo projects: the tests of a package's (or workspace's) test binaries, run as nextest runs them.
//!
//! The test binaries are built once, with `cargo test --no-run --message-format json`, and each is asked for its
//! tests with libtest's `--list --format terse` (and `--ignored` for the ignored ones). A test's id is
//! `crate::target::path`: the package's crate name, the target's name (the lib's, a `tests/foo.rs`'s `foo`, a
//! bin's), then libtest's own path of the test (`module::test`), so ids from different binaries never clash.
//!
//! Each test runs in a process of its own, `binary --exact NAME --nocapture`, in its package's directory and with
//! the environment `cargo test` gives a test process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `CARGO_CRATE_NAME`,
//! the dynamic library path of the build, …); its exit status is its result. Ignored tests are listed and
//! reported skipped without running, as `cargo test` does not run them either. Doctests are not run: each
//! package with a library gets one `crate::doctests` entry, reported skipped with the reason.
//!
//! A test target with `harness = false` (`[[test]] name = "custom"` and `harness = false` in its manifest) has a
//! `main` of its own instead of libtest's, which knows nothing of `--list` or `--exact`. Its binary is one test,
//! id `crate::target`: it runs with no arguments, in its package's directory and with the same environment as
//! the others, and its exit status is its result (0 passes, anything else fails; 77 is not a skip here, as
//! `cargo test` counts any non-zero status a failure). `cargo metadata` does not say which targets have no
//! harness (cargo 1.95 gives a target's `kind`, `name`, `doc`, `doctest`, `test` and so on, never `harness`),
//! so each package's manifest is read for the `[lib]`, `[[bin]]`, `[[test]]`, `[[bench]]` and `[[example]]`
//! entries that set `harness = false` (the only place the setting can be: targets cargo discovers by itself
//! always have libtest's harness). Such a binary is not asked for a listing at all, since asking would run it.
//! Failing that, the listing decides: a binary whose `--list --format terse` exits non-zero, or prints output
//! with not one line of libtest's (`NAME: test`, `NAME: bench`), is one `crate::target` test run the same way
//! (an unreadable manifest, or a binary libtest cannot list); one that prints nothing at all is libtest's
//! listing of a binary with no tests, and has none.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;

use crate::invocation::{ExitMapping, ExitOutcome, Invocation, Protocol, SHELL};
use crate::shell::listing_output;
use crate::suite::{Runner, Suite, TestCase};
use crate::SourceError;

/// The manifest that makes a directory a Cargo project.
pub(crate) const MANIFEST: &str = "Cargo.toml";

/// The exit status the automake mapping reads as a skip, which the stand-in process of a test that is not run
/// exits with.
const SKIP_STATUS: i32 = 77;

/// Why a doctest entry is skipped. Listing doctests takes a rustdoc run per package and running one alone
/// recompiles its crate's doctests, so they are left to `cargo test --doc` rather than run one per process.
const DOCTESTS_SKIPPED: &str = "doctests are not run by proctor run; `cargo test --doc` runs them";

/// Why an ignored test is skipped.
const IGNORED_SKIPPED: &str =
    "the test is #[ignore]d, and `cargo test` does not run it either (`cargo test -- --ignored` does)";

/// How the exit status of a binary run whole (`harness = false`) is read: as `cargo test` reads it, 0 passes and
/// anything else fails.
const WHOLE_BINARY: ExitMapping = ExitMapping {
    skip: None,
    fail: None,
    error: None,
    otherwise: ExitOutcome::Fail,
};

/// How a Cargo project's tests are built, listed and run.
#[derive(Clone, Debug)]
pub(crate) struct CargoTests {
    manifest: PathBuf,
    build_args: Vec<String>,
    /// The tests found by building and listing, once per process: `invocation` may be asked for ids known from
    /// an earlier run before (or without) `list`, and clones of the suite share what was found.
    listing: Arc<Mutex<Option<Arc<Listing>>>>,
}

/// The suite of the Cargo project whose manifest is `manifest`, built with `build_args` given to
/// `cargo test --no-run`.
pub(crate) fn suite(manifest: &Path, build_args: &[String]) -> Result<Suite, SourceError> {
    let directory = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let tests = CargoTests {
        manifest: manifest.to_path_buf(),
        build_args: build_args.to_vec(),
        listing: Arc::default(),
    };
    Ok(Suite::new(
        "cargo".to_owned(),
        directory,
        Runner::Cargo(tests),
        Protocol::ExitStatus(ExitMapping::AUTOMAKE),
    ))
}

impl CargoTests {
    /// The project's tests: its test binaries built, then each asked for its tests.
    pub(crate) fn list(&self, suite: &Suite) -> Result<Vec<TestCase>, SourceError> {
        let listing = self.listing(suite)?;
        Ok(listing
            .tests
            .iter()
            .map(|test| suite.test_case(test.id.clone()))
            .collect())
    }

    /// The process that runs test `id`: its binary with `--exact`, or a stand-in that says why it is skipped.
    pub(crate) fn invocation(&self, suite: &Suite, id: &str) -> Result<Invocation, SourceError> {
        let listing = self.listing(suite)?;
        let test = listing.find(id).ok_or_else(|| SourceError::UnusableId {
            suite: suite.name().to_owned(),
            id: id.to_owned(),
            reason:
                "no test binary of the Cargo project lists it (was the test renamed or removed?)",
        })?;
        Ok(match &test.how {
            How::Run { binary, name } => run_invocation(binary, name, suite.protocol()),
            How::Whole(binary) => whole_invocation(binary),
            How::Skip(why) => skip_invocation(why, suite.directory(), suite.protocol()),
        })
    }

    /// What building and listing found, done now if not done yet in this process. A failure is not kept, so a
    /// later call tries again.
    fn listing(&self, suite: &Suite) -> Result<Arc<Listing>, SourceError> {
        let mut cached = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(listing) = cached.as_ref() {
            return Ok(Arc::clone(listing));
        }
        let listing = Arc::new(self.build_and_list(suite)?);
        *cached = Some(Arc::clone(&listing));
        Ok(listing)
    }

    fn build_and_list(&self, suite: &Suite) -> Result<Listing, SourceError> {
        let built = build(&self.manifest, &self.build_args, suite)?;
        let packages = metadata(&self.manifest, suite)?;
        let mut binaries = test_binaries(&built, &packages);
        binaries.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let listed = list_all(&binaries, suite)?;
        let mut tests = Vec::new();
        for (binary, listed) in binaries.into_iter().zip(listed) {
            let binary = Arc::new(binary);
            match listed {
                BinaryListing::Libtest { all, ignored } => {
                    tests.extend(binary_tests(&binary, all, &ignored));
                }
                BinaryListing::Whole => tests.push(whole_test(binary)),
            }
        }
        tests.extend(doctest_entries(&built.tests, &packages));
        Ok(Listing::new(tests))
    }
}

/// Every test of the project, in listing order, and where each id is.
#[derive(Debug)]
struct Listing {
    tests: Vec<Listed>,
    by_id: HashMap<String, usize>,
}

impl Listing {
    /// The listing of `tests`; a repeated id keeps its first entry.
    fn new(mut tests: Vec<Listed>) -> Listing {
        let mut by_id = HashMap::new();
        let mut kept = Vec::new();
        for test in tests.drain(..) {
            if !by_id.contains_key(&test.id) {
                by_id.insert(test.id.clone(), kept.len());
                kept.push(test);
            }
        }
        Listing { tests: kept, by_id }
    }

    fn find(&self, id: &str) -> Option<&Listed> {
        self.by_id.get(id).map(|index| &self.tests[*index])
    }
}

/// One test as listed.
#[derive(Debug)]
struct Listed {
    id: String,
    how: How,
}

/// How a listed test runs.
#[derive(Debug)]
enum How {
    /// Its binary runs it: `name` is libtest's name for it.
    Run { binary: Arc<Binary>, name: String },
    /// It is the whole binary (one without libtest's harness), run with no arguments.
    Whole(Arc<Binary>),
    /// It is not run, for this reason.
    Skip(String),
}

/// A test binary and how its processes start.
#[derive(Debug)]
struct Binary {
    /// `crate::target::`, what its tests' ids start with.
    prefix: String,
    path: PathBuf,
    /// The package's directory, where `cargo test` runs it.
    cwd: PathBuf,
    env: Vec<(String, String)>,
    /// Whether it has libtest's harness: false when its target's manifest entry says `harness = false`.
    harness: bool,
}

impl Binary {
    /// The id of the binary as one test (`crate::target`), when it is run whole.
    fn whole_id(&self) -> &str {
        self.prefix.strip_suffix("::").unwrap_or(&self.prefix)
    }
}

/// The invocation running one test of `binary` as nextest does: alone, by its exact name, output not captured
/// (the supervisor captures it).
fn run_invocation(binary: &Binary, name: &str, protocol: Protocol) -> Invocation {
    let args = vec![
        "--exact".to_owned(),
        name.to_owned(),
        "--nocapture".to_owned(),
    ];
    let mut invocation = Invocation::new(&binary.path, args, &binary.cwd, protocol);
    invocation.env.clone_from(&binary.env);
    invocation
}

/// The invocation running a binary without libtest's harness: the binary alone, as `cargo test` runs it, its exit
/// status its result.
fn whole_invocation(binary: &Binary) -> Invocation {
    let protocol = Protocol::ExitStatus(WHOLE_BINARY);
    let mut invocation = Invocation::new(&binary.path, Vec::new(), &binary.cwd, protocol);
    invocation.env.clone_from(&binary.env);
    invocation
}

/// A process that prints `why` and exits as a skipped test does. `why` is an argument, not part of the script,
/// so it needs no quoting.
fn skip_invocation(why: &str, cwd: &Path, protocol: Protocol) -> Invocation {
    let script = format!("printf '%s\\n' \"$1\"; exit {SKIP_STATUS}");
    let args = vec![
        "-c".to_owned(),
        script,
        "proctor".to_owned(),
        why.to_owned(),
    ];
    Invocation::new(SHELL, args, cwd, protocol)
}

// ---------------------------------------------------------------------------------------------------------------
// Building

/// A compiled target, from a `compiler-artifact` message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Artifact {
    package_id: String,
    target: Target,
    executable: PathBuf,
}

/// A target as cargo describes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
struct Target {
    kind: Vec<String>,
    name: String,
    #[serde(default)]
    doctest: bool,
}

impl Target {
    fn is_bin(&self) -> bool {
        self.kind.iter().any(|kind| kind == "bin")
    }

    /// The manifest's section for targets of this kind: `bin`, `test`, `bench`, `example`, or `lib` for the
    /// library's kinds (`lib`, `rlib`, `proc-macro`, …).
    fn section(&self) -> &'static str {
        ["bin", "test", "bench", "example"]
            .into_iter()
            .find(|section| self.kind.iter().any(|kind| kind == section))
            .unwrap_or("lib")
    }
}

/// What a build produced.
#[derive(Debug, Default)]
struct Built {
    /// The test binaries.
    tests: Vec<Artifact>,
    /// The programs of bin targets (for `CARGO_BIN_EXE_<name>`).
    programs: Vec<Artifact>,
    /// The error diagnostics, rendered as cargo renders them.
    errors: String,
    /// The diagnostics met so far.
    seen: std::collections::HashSet<String>,
}

/// One line of cargo's JSON output; only the fields used here.
#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    package_id: String,
    target: Option<Target>,
    profile: Option<Profile>,
    executable: Option<PathBuf>,
    message: Option<Diagnostic>,
}

#[derive(Deserialize)]
struct Profile {
    test: bool,
}

#[derive(Deserialize)]
struct Diagnostic {
    level: String,
    rendered: Option<String>,
}

/// Builds the test binaries once with `cargo test --no-run`. Cargo's own messages (progress, its errors) go to
/// our standard error as it prints them, and so do the compiler's warnings, rendered as cargo would; a failed
/// build is an error carrying the compiler's errors and cargo's.
fn build(manifest: &Path, build_args: &[String], suite: &Suite) -> Result<Built, SourceError> {
    let format = if std::io::stderr().is_terminal() {
        "json-diagnostic-rendered-ansi"
    } else {
        "json"
    };
    let mut command = Command::new(cargo());
    command
        .args([
            "test",
            "--no-run",
            "--message-format",
            format,
            "--manifest-path",
        ])
        .arg(manifest)
        .args(build_args)
        .current_dir(suite.directory())
        .envs(suite.env().iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_error = |source| SourceError::Spawn {
        suite: suite.name().to_owned(),
        command: format!("cargo test --no-run {}", build_args.join(" ")),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let stderr = child.stderr.take().map(tee_stderr);
    let built = match child.stdout.take() {
        Some(stdout) => read_build_messages(BufReader::new(stdout), &mut std::io::stderr()),
        None => Built::default(),
    };
    let status = child.wait().map_err(spawn_error)?;
    let said = stderr
        .map(|thread| thread.join().unwrap_or_default())
        .unwrap_or_default();
    if status.success() {
        return Ok(built);
    }
    Err(SourceError::CargoBuild {
        manifest: manifest.to_path_buf(),
        output: format!("{}{said}", built.errors).trim_end().to_owned(),
    })
}

/// Copies cargo's standard error to ours as it comes, and keeps what is not a progress line (cargo's own
/// errors), for the error of a failed build.
fn tee_stderr(stderr: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = String::new();
        let mut ours = std::io::stderr();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(ours, "{line}");
            if !is_progress(&line) {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        kept
    })
}

/// Whether a line of cargo's standard error is one of its right-aligned status lines (`   Compiling x`), as
/// opposed to an error or warning of its own.
fn is_progress(line: &str) -> bool {
    let plain = strip_ansi(line);
    plain.starts_with(' ')
        && plain
            .trim_start()
            .split(' ')
            .next()
            .is_some_and(|verb| verb.chars().next().is_some_and(char::is_uppercase))
}

/// `text` without ANSI escape sequences (cargo colours its status lines on a terminal).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for end in chars.by_ref() {
                if end.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Reads `cargo --message-format json` output: the test binaries and programs built, the warnings echoed rendered
/// to `echo` (as cargo would print them), the errors kept. Lines that are not cargo's JSON
/// (a build script's output) are passed to `echo` too.
fn read_build_messages(reader: impl BufRead, echo: &mut dyn Write) -> Built {
    let mut built = Built::default();
    for line in reader.lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<Message>(&line) else {
            let _ = writeln!(echo, "{line}");
            continue;
        };
        match message.reason.as_str() {
            "compiler-artifact" => add_artifact(&mut built, message),
            "compiler-message" => {
                if let Some(Diagnostic {
                    level,
                    rendered: Some(rendered),
                }) = message.message
                {
                    add_diagnostic(&mut built, &level, rendered, echo);
                }
            }
            _ => {}
        }
    }
    built
}

/// Shows a warning as cargo would; keeps an error for the build's error instead, which shows it once. The lib and
/// its unit-test build report the same diagnostics, so a repeated one is left out.
fn add_diagnostic(built: &mut Built, level: &str, rendered: String, echo: &mut dyn Write) {
    if !built.seen.insert(rendered.clone()) {
        return;
    }
    if level.starts_with("error") {
        built.errors.push_str(&rendered);
    } else {
        let _ = write!(echo, "{rendered}");
    }
}

/// Keeps an artifact that is a test binary, or a bin target's program; skips libraries and the rest.
fn add_artifact(built: &mut Built, message: Message) {
    let (Some(target), Some(profile), Some(executable)) =
        (message.target, message.profile, message.executable)
    else {
        return;
    };
    let artifact = Artifact {
        package_id: message.package_id,
        target,
        executable,
    };
    if profile.test {
        built.tests.push(artifact);
    } else if artifact.target.is_bin() {
        built.programs.push(artifact);
    }
}

/// The cargo to run: `$CARGO` (set when Proctor itself runs under cargo), else `cargo` from the `PATH`.
fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .filter(|cargo| !cargo.is_empty())
        .map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

// ---------------------------------------------------------------------------------------------------------------
// Packages and their environment

/// A package, from `cargo metadata`; only the fields used here.
#[derive(Clone, Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    #[serde(default)]
    authors: Vec<String>,
    description: Option<String>,
    homepage: Option<String>,
    repository: Option<String>,
    license: Option<String>,
    license_file: Option<String>,
    readme: Option<String>,
    rust_version: Option<String>,
    manifest_path: PathBuf,
    /// Its targets that set `harness = false`, read from its manifest (`cargo metadata` does not say).
    #[serde(skip)]
    no_harness: NoHarness,
}

/// The targets of a manifest that set `harness = false`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NoHarness {
    /// Whether `[lib]` does.
    lib: bool,
    /// The others, by section (`bin`, `test`, `bench`, `example`) and name.
    targets: Vec<(String, String)>,
}

impl NoHarness {
    /// The targets of the manifest `text` that set `harness = false`; none when it is not TOML.
    fn parse(text: &str) -> NoHarness {
        let Ok(manifest) = text.parse::<toml::Table>() else {
            return NoHarness::default();
        };
        let unharnessed = |table: &toml::Table| {
            table.get("harness").and_then(toml::Value::as_bool) == Some(false)
        };
        let lib = manifest
            .get("lib")
            .and_then(toml::Value::as_table)
            .is_some_and(unharnessed);
        let mut targets = Vec::new();
        for section in ["bin", "test", "bench", "example"] {
            let entries = manifest.get(section).and_then(toml::Value::as_array);
            for entry in entries
                .into_iter()
                .flatten()
                .filter_map(toml::Value::as_table)
            {
                if let (true, Some(name)) = (
                    unharnessed(entry),
                    entry.get("name").and_then(toml::Value::as_str),
                ) {
                    targets.push((section.to_owned(), name.to_owned()));
                }
            }
        }
        NoHarness { lib, targets }
    }

    /// Those of the package's manifest at `path`; none when it cannot be read.
    fn read(path: &Path) -> NoHarness {
        std::fs::read_to_string(path)
            .map(|text| NoHarness::parse(&text))
            .unwrap_or_default()
    }

    /// Whether `target` has libtest's harness.
    fn has_harness(&self, target: &Target) -> bool {
        match target.section() {
            "lib" => !self.lib,
            section => !self
                .targets
                .iter()
                .any(|(kind, name)| kind == section && *name == target.name),
        }
    }
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

/// The workspace's packages by id, from `cargo metadata --no-deps`.
fn metadata(manifest: &Path, suite: &Suite) -> Result<HashMap<String, Package>, SourceError> {
    let mut command = Command::new(cargo());
    command
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .current_dir(suite.directory())
        .envs(suite.env().iter().map(|(key, value)| (key, value)));
    let shown = format!(
        "cargo metadata --no-deps --manifest-path {}",
        manifest.display()
    );
    let output = listing_output(suite.name(), &shown, &mut command)?;
    let mut packages = parse_metadata(&output.stdout).map_err(|error| SourceError::CannotList {
        suite: suite.name().to_owned(),
        reason: format!("`{shown}` printed what is not its JSON: {error}"),
    })?;
    for package in packages.values_mut() {
        package.no_harness = NoHarness::read(&package.manifest_path);
    }
    Ok(packages)
}

fn parse_metadata(json: &[u8]) -> Result<HashMap<String, Package>, serde_json::Error> {
    let metadata: Metadata = serde_json::from_slice(json)?;
    Ok(metadata
        .packages
        .into_iter()
        .map(|package| (package.id.clone(), package))
        .collect())
}

/// The test binaries built, each with its package's directory and environment. A binary of a package
/// `cargo metadata` does not know (which cannot happen with one workspace) is left out.
fn test_binaries(built: &Built, packages: &HashMap<String, Package>) -> Vec<Binary> {
    built
        .tests
        .iter()
        .filter_map(|artifact| {
            let package = packages.get(&artifact.package_id)?;
            let programs: Vec<&Artifact> = built
                .programs
                .iter()
                .filter(|program| program.package_id == artifact.package_id)
                .collect();
            Some(Binary {
                prefix: format!("{}::{}::", crate_name(&package.name), artifact.target.name),
                path: artifact.executable.clone(),
                cwd: package_dir(package),
                env: test_env(package, artifact, &programs),
                harness: package.no_harness.has_harness(&artifact.target),
            })
        })
        .collect()
}

fn package_dir(package: &Package) -> PathBuf {
    package
        .manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A package name as a crate name: `-` becomes `_`, as cargo names the crate.
fn crate_name(package: &str) -> String {
    package.replace('-', "_")
}

/// The environment nextest gives a process of this test binary: what `cargo test` gives it (checked against
/// cargo 1.95), and `CARGO_CRATE_NAME` and `CARGO_BIN_NAME` (a bin's), which cargo sets only while compiling.
fn test_env(package: &Package, test: &Artifact, programs: &[&Artifact]) -> Vec<(String, String)> {
    let (major, minor, patch, pre) = version_parts(&package.version);
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let mut env = vec![
        ("CARGO".to_owned(), cargo_path()),
        (
            "CARGO_MANIFEST_DIR".to_owned(),
            package_dir(package).to_string_lossy().into_owned(),
        ),
        (
            "CARGO_MANIFEST_PATH".to_owned(),
            package.manifest_path.to_string_lossy().into_owned(),
        ),
        ("CARGO_PKG_NAME".to_owned(), package.name.clone()),
        ("CARGO_PKG_VERSION".to_owned(), package.version.clone()),
        ("CARGO_PKG_VERSION_MAJOR".to_owned(), major),
        ("CARGO_PKG_VERSION_MINOR".to_owned(), minor),
        ("CARGO_PKG_VERSION_PATCH".to_owned(), patch),
        ("CARGO_PKG_VERSION_PRE".to_owned(), pre),
        ("CARGO_PKG_AUTHORS".to_owned(), package.authors.join(":")),
        (
            "CARGO_PKG_DESCRIPTION".to_owned(),
            text(&package.description),
        ),
        ("CARGO_PKG_HOMEPAGE".to_owned(), text(&package.homepage)),
        ("CARGO_PKG_REPOSITORY".to_owned(), text(&package.repository)),
        ("CARGO_PKG_LICENSE".to_owned(), text(&package.license)),
        (
            "CARGO_PKG_LICENSE_FILE".to_owned(),
            text(&package.license_file),
        ),
        ("CARGO_PKG_README".to_owned(), text(&package.readme)),
        (
            "CARGO_PKG_RUST_VERSION".to_owned(),
            text(&package.rust_version),
        ),
        ("CARGO_CRATE_NAME".to_owned(), crate_name(&test.target.name)),
        (dylib_var().to_owned(), dylib_path(&test.executable)),
    ];
    if test.target.is_bin() {
        env.push(("CARGO_BIN_NAME".to_owned(), test.target.name.clone()));
    }
    // As nextest does, the package's programs are named for its tests at run time too, not only at build time.
    env.extend(programs.iter().map(|program| {
        (
            format!("CARGO_BIN_EXE_{}", program.target.name),
            program.executable.to_string_lossy().into_owned(),
        )
    }));
    env
}

/// A semver version's major, minor and patch numbers and pre-release, as cargo splits them for
/// `CARGO_PKG_VERSION_*` (build metadata is not part of any).
fn version_parts(version: &str) -> (String, String, String, String) {
    let version = version.split('+').next().unwrap_or_default();
    let (numbers, pre) = version.split_once('-').unwrap_or((version, ""));
    let mut numbers = numbers.splitn(3, '.').map(str::to_owned);
    let mut next = || numbers.next().unwrap_or_default();
    (next(), next(), next(), pre.to_owned())
}

/// The variable the dynamic linker searches for libraries.
fn dylib_var() -> &'static str {
    if cfg!(target_os = "macos") {
        "DYLD_FALLBACK_LIBRARY_PATH"
    } else {
        "LD_LIBRARY_PATH"
    }
}

/// The library path `cargo test` gives a test binary: the build's profile directory and its `deps` directory
/// (where the binary is), the toolchain's libraries (for `-C prefer-dynamic` builds), then what the path already
/// was.
fn dylib_path(executable: &Path) -> String {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(deps) = executable.parent() {
        dirs.extend(deps.parent().map(Path::to_path_buf));
        dirs.push(deps.to_path_buf());
    }
    dirs.extend(toolchain_lib().iter().cloned());
    if let Some(existing) = std::env::var_os(dylib_var()) {
        dirs.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(&dirs)
        .unwrap_or_else(|_| OsString::new())
        .to_string_lossy()
        .into_owned()
}

/// The toolchain's library directory (`$(rustc --print sysroot)/lib`), asked once.
fn toolchain_lib() -> &'static Option<PathBuf> {
    static LIB: OnceLock<Option<PathBuf>> = OnceLock::new();
    LIB.get_or_init(|| {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let output = Command::new(rustc)
            .args(["--print", "sysroot"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())?;
        let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Some(Path::new(&sysroot).join("lib"))
    })
}

/// The cargo binary's path for a test's `CARGO`: `$CARGO`, else the `cargo` found on the `PATH`.
fn cargo_path() -> String {
    let cargo = cargo();
    if cargo.is_absolute() {
        return cargo.to_string_lossy().into_owned();
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&cargo))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or(cargo)
        .to_string_lossy()
        .into_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Listing

/// What asking a test binary for its tests found.
#[derive(Debug, PartialEq, Eq)]
enum BinaryListing {
    /// libtest's names of its tests, and of those among them that are ignored.
    Libtest {
        all: Vec<String>,
        ignored: Vec<String>,
    },
    /// It has no libtest harness (or libtest could not list it): the binary is one test, run whole.
    Whole,
}

/// What each binary has, the binaries asked at once (each listing is a process start).
fn list_all(binaries: &[Binary], suite: &Suite) -> Result<Vec<BinaryListing>, SourceError> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = binaries
            .iter()
            .map(|binary| scope.spawn(move || list_binary(binary, suite)))
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread.join().unwrap_or_else(|_| {
                    Err(SourceError::CannotList {
                        suite: suite.name().to_owned(),
                        reason: "listing a test binary panicked".to_owned(),
                    })
                })
            })
            .collect()
    })
}

/// What one binary has. One whose manifest entry says `harness = false` is not asked (its `main` would run);
/// the others are asked with `--list --format terse`, then with `--ignored` when they have tests.
fn list_binary(binary: &Binary, suite: &Suite) -> Result<BinaryListing, SourceError> {
    if !binary.harness {
        return Ok(BinaryListing::Whole);
    }
    let args = ["--list", "--format", "terse"];
    let shown = format!("{} {}", binary.path.display(), args.join(" "));
    let output = listing_command(binary, &args)
        .output()
        .map_err(|source| SourceError::Spawn {
            suite: suite.name().to_owned(),
            command: shown,
            source,
        })?;
    let listed = if output.status.success() {
        parse_libtest_listing(&String::from_utf8_lossy(&output.stdout))
    } else {
        None
    };
    let Some(all) = listed else {
        return Ok(BinaryListing::Whole);
    };
    let ignored = if all.is_empty() {
        Vec::new()
    } else {
        let args = ["--list", "--format", "terse", "--ignored"];
        let shown = format!("{} {}", binary.path.display(), args.join(" "));
        let output = listing_output(suite.name(), &shown, &mut listing_command(binary, &args))?;
        parse_terse(&String::from_utf8_lossy(&output.stdout))
    };
    Ok(BinaryListing::Libtest { all, ignored })
}

/// The binary with `args`, in its package's directory and environment, its standard input empty.
fn listing_command(binary: &Binary, args: &[&str]) -> Command {
    let mut command = Command::new(&binary.path);
    command
        .args(args)
        .current_dir(&binary.cwd)
        .envs(binary.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null());
    command
}

/// The test names of a terse listing that libtest printed; `None` when something else printed it: output
/// without one line of libtest's (`NAME: test` or `NAME: bench`). libtest prints nothing at all for a binary
/// with no tests, so empty output is libtest's.
fn parse_libtest_listing(listing: &str) -> Option<Vec<String>> {
    let libtests = listing.trim().is_empty()
        || listing
            .lines()
            .any(|line| line.ends_with(": test") || line.ends_with(": bench"));
    libtests.then(|| parse_terse(listing))
}

/// The test names in libtest's terse listing (`path::name: test` lines); benchmarks (`: bench`) are left out.
fn parse_terse(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// A binary run whole, as its one listed entry.
fn whole_test(binary: Arc<Binary>) -> Listed {
    Listed {
        id: binary.whole_id().to_owned(),
        how: How::Whole(binary),
    }
}

/// A binary's tests as listed entries, the ignored ones to be skipped.
fn binary_tests(binary: &Arc<Binary>, all: Vec<String>, ignored: &[String]) -> Vec<Listed> {
    all.into_iter()
        .map(|name| Listed {
            id: format!("{}{name}", binary.prefix),
            how: if ignored.contains(&name) {
                How::Skip(IGNORED_SKIPPED.to_owned())
            } else {
                How::Run {
                    binary: Arc::clone(binary),
                    name,
                }
            },
        })
        .collect()
}

/// One skipped `crate::doctests` entry for each package built whose library has doctests enabled.
fn doctest_entries(tests: &[Artifact], packages: &HashMap<String, Package>) -> Vec<Listed> {
    let mut names: Vec<String> = tests
        .iter()
        .filter(|artifact| artifact.target.doctest)
        .filter_map(|artifact| packages.get(&artifact.package_id))
        .map(|package| crate_name(&package.name))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| Listed {
            id: doctests_id(&name),
            how: How::Skip(DOCTESTS_SKIPPED.to_owned()),
        })
        .collect()
}

fn doctests_id(crate_name: &str) -> String {
    format!("{crate_name}::doctests")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `cargo test --no-run --message-format json` lines (cargo 1.95) for a package `demo-pkg` with a lib,
    /// a bin `tool` and `tests/foo.rs`, plus a rendered error.
    const MESSAGES: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","manifest_path":"/tmp/cg/demo/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"demo_pkg","src_path":"/tmp/cg/demo/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/tmp/cg/target/debug/deps/libdemo_pkg-0b75aad962714df8.rlib","/tmp/cg/target/debug/deps/libdemo_pkg-0b75aad962714df8.rmeta"],"executable":null,"fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","manifest_path":"/tmp/cg/demo/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"tool","src_path":"/tmp/cg/demo/src/bin/tool.rs","edition":"2024","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/tmp/cg/target/debug/tool"],"executable":"/tmp/cg/target/debug/tool","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","manifest_path":"/tmp/cg/demo/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"demo_pkg","src_path":"/tmp/cg/demo/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/tmp/cg/target/debug/deps/demo_pkg-b8d08cb6d93735f2"],"executable":"/tmp/cg/target/debug/deps/demo_pkg-b8d08cb6d93735f2","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","manifest_path":"/tmp/cg/demo/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"tool","src_path":"/tmp/cg/demo/src/bin/tool.rs","edition":"2024","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/tmp/cg/target/debug/deps/tool-99a8351267ebebbd"],"executable":"/tmp/cg/target/debug/deps/tool-99a8351267ebebbd","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","manifest_path":"/tmp/cg/demo/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"foo","src_path":"/tmp/cg/demo/tests/foo.rs","edition":"2024","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/tmp/cg/target/debug/deps/foo-ad10235722156a03"],"executable":"/tmp/cg/target/debug/deps/foo-ad10235722156a03","fresh":false}
{"reason":"compiler-message","package_id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","manifest_path":"/tmp/cg/demo/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"demo_pkg","src_path":"/tmp/cg/demo/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"message":{"rendered":"error: expected one of `!` or `::`, found `is`\n --> src/lib.rs:1:6\n  |\n1 | this is not rust\n  |      ^^ expected one of `!` or `::`\n\n","$message_type":"diagnostic","children":[],"level":"error","message":"expected one of `!` or `::`, found `is`","spans":[],"code":null}}
{"reason":"build-finished","success":true}"#;

    const PACKAGE_ID: &str = "path+file:///tmp/cg/demo#demo-pkg@0.1.0";

    /// `cargo metadata --format-version 1 --no-deps` for the same package, authors and description added.
    const METADATA: &str = r#"{"packages":[{"name":"demo-pkg","version":"0.1.0-beta.2+build.5","id":"path+file:///tmp/cg/demo#demo-pkg@0.1.0","license":"MIT","license_file":null,"description":"A demo","source":null,"dependencies":[],"targets":[],"features":{},"manifest_path":"/tmp/cg/demo/Cargo.toml","metadata":null,"publish":null,"authors":["A <a@example.org>","B"],"categories":[],"keywords":[],"readme":null,"repository":null,"homepage":null,"documentation":null,"edition":"2024","links":null,"default_run":null,"rust_version":"1.80"}],"workspace_members":["path+file:///tmp/cg/demo#demo-pkg@0.1.0"],"resolve":null,"target_directory":"/tmp/cg/demo/target","version":1,"workspace_root":"/tmp/cg/demo","metadata":null}"#;

    fn read(messages: &str) -> (Built, String) {
        let mut echo = Vec::new();
        let built = read_build_messages(messages.as_bytes(), &mut echo);
        (built, String::from_utf8(echo).expect("utf-8"))
    }

    #[test]
    fn test_binaries_are_the_test_profile_artifacts_with_an_executable() {
        let (built, _) = read(MESSAGES);
        let names: Vec<&str> = built
            .tests
            .iter()
            .map(|artifact| artifact.target.name.as_str())
            .collect();
        assert_eq!(names, ["demo_pkg", "tool", "foo"]);
        assert_eq!(
            built.tests[2].executable,
            Path::new("/tmp/cg/target/debug/deps/foo-ad10235722156a03")
        );
        assert!(built.tests.iter().all(|test| test.package_id == PACKAGE_ID));
        let programs: Vec<&str> = built
            .programs
            .iter()
            .map(|artifact| artifact.target.name.as_str())
            .collect();
        assert_eq!(programs, ["tool"], "the bin's program, not the rlib");
    }

    #[test]
    fn warnings_are_echoed_and_errors_kept_once() {
        let warning = r#"{"reason":"compiler-message","package_id":"x","message":{"rendered":"warning: unused\n","level":"warning"}}"#;
        let error = MESSAGES
            .lines()
            .find(|line| line.contains("rendered"))
            .expect("an error");
        let messages =
            format!("output of a build script\n{warning}\n{MESSAGES}\n{error}\n{warning}");
        let (built, echo) = read(&messages);
        assert!(built.errors.starts_with("error: expected one of"));
        assert!(built.errors.contains("src/lib.rs:1:6"));
        assert_eq!(
            built.errors.matches("error:").count(),
            1,
            "{}",
            built.errors
        );
        assert_eq!(echo, "output of a build script\nwarning: unused\n");
    }

    #[test]
    fn ids_are_crate_target_then_libtest_path() {
        let (built, _) = read(MESSAGES);
        let packages = parse_metadata(METADATA.as_bytes()).expect("metadata");
        let binaries = test_binaries(&built, &packages);
        let prefixes: Vec<&str> = binaries.iter().map(|b| b.prefix.as_str()).collect();
        assert_eq!(
            prefixes,
            [
                "demo_pkg::demo_pkg::",
                "demo_pkg::tool::",
                "demo_pkg::foo::"
            ]
        );
        let unit = Arc::new(binaries.into_iter().next().expect("the lib's tests"));
        let listed = binary_tests(
            &unit,
            parse_terse("tests::it_works: test\ntests::slow: test\nbench_it: bench\n"),
            &parse_terse("tests::slow: test\n"),
        );
        let ids: Vec<&str> = listed.iter().map(|test| test.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "demo_pkg::demo_pkg::tests::it_works",
                "demo_pkg::demo_pkg::tests::slow"
            ]
        );
        assert!(matches!(&listed[0].how, How::Run { name, .. } if name == "tests::it_works"));
        assert!(matches!(&listed[1].how, How::Skip(why) if why.contains("#[ignore]")));
        let doctests = doctest_entries(&built.tests, &packages);
        assert_eq!(
            doctests.len(),
            1,
            "one for the lib, none for bins and tests"
        );
        assert_eq!(doctests[0].id, "demo_pkg::doctests");
    }

    #[test]
    fn the_environment_is_cargo_tests() {
        let (built, _) = read(MESSAGES);
        let packages = parse_metadata(METADATA.as_bytes()).expect("metadata");
        let binaries = test_binaries(&built, &packages);
        let env: HashMap<&str, &str> = binaries[1]
            .env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(env["CARGO_MANIFEST_DIR"], "/tmp/cg/demo");
        assert_eq!(env["CARGO_PKG_NAME"], "demo-pkg");
        assert_eq!(env["CARGO_PKG_VERSION"], "0.1.0-beta.2+build.5");
        assert_eq!(env["CARGO_PKG_VERSION_MAJOR"], "0");
        assert_eq!(env["CARGO_PKG_VERSION_MINOR"], "1");
        assert_eq!(env["CARGO_PKG_VERSION_PATCH"], "0");
        assert_eq!(env["CARGO_PKG_VERSION_PRE"], "beta.2");
        assert_eq!(env["CARGO_PKG_AUTHORS"], "A <a@example.org>:B");
        assert_eq!(env["CARGO_PKG_DESCRIPTION"], "A demo");
        assert_eq!(env["CARGO_PKG_LICENSE"], "MIT");
        assert_eq!(env["CARGO_PKG_HOMEPAGE"], "");
        assert_eq!(env["CARGO_PKG_RUST_VERSION"], "1.80");
        assert_eq!(env["CARGO_CRATE_NAME"], "tool");
        assert_eq!(env["CARGO_BIN_NAME"], "tool");
        assert_eq!(env["CARGO_BIN_EXE_tool"], "/tmp/cg/target/debug/tool");
        assert!(
            env["LD_LIBRARY_PATH"].starts_with("/tmp/cg/target/debug:/tmp/cg/target/debug/deps")
        );
        assert!(!binaries[0]
            .env
            .iter()
            .any(|(key, _)| key == "CARGO_BIN_NAME"));
    }

    #[test]
    fn a_test_runs_alone_by_its_exact_name_with_its_environment() {
        let binary = Binary {
            prefix: "c::t::".to_owned(),
            path: PathBuf::from("/target/debug/deps/t-1"),
            cwd: PathBuf::from("/pkg"),
            env: vec![("CARGO_PKG_NAME".to_owned(), "c".to_owned())],
            harness: true,
        };
        let invocation =
            run_invocation(&binary, "m::x", Protocol::ExitStatus(ExitMapping::AUTOMAKE));
        assert_eq!(invocation.program, Path::new("/target/debug/deps/t-1"));
        assert_eq!(invocation.args, ["--exact", "m::x", "--nocapture"]);
        assert_eq!(
            invocation.env,
            [("CARGO_PKG_NAME".to_owned(), "c".to_owned())]
        );
        assert_eq!(invocation.cwd, Path::new("/pkg"));
    }

    #[test]
    fn a_skipped_entry_says_why_and_exits_as_a_skip() {
        let protocol = Protocol::ExitStatus(ExitMapping::AUTOMAKE);
        let output = skip_invocation("it's \"why\"", Path::new("/"), protocol)
            .command()
            .output()
            .expect("sh runs");
        assert_eq!(output.status.code(), Some(SKIP_STATUS));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "it's \"why\"\n");
        assert_eq!(
            ExitMapping::AUTOMAKE.outcome(SKIP_STATUS),
            crate::ExitOutcome::Skip
        );
    }

    #[test]
    fn cargo_progress_lines_are_told_from_its_errors() {
        assert!(is_progress("   Compiling demo v0.1.0 (/tmp/demo)"));
        assert!(is_progress(
            "\u{1b}[1m\u{1b}[32m    Finished\u{1b}[0m `test` profile"
        ));
        assert!(!is_progress(
            "error: could not compile `demo` (lib) due to 1 previous error"
        ));
        assert!(!is_progress("  |"));
    }

    #[test]
    fn the_manifest_says_which_targets_have_no_harness() {
        let no_harness = NoHarness::parse(
            "[package]\nname = \"demo-pkg\"\n\n[lib]\nharness = true\n\n\
             [[test]]\nname = \"custom\"\nharness = false\n\n[[test]]\nname = \"api\"\n\n\
             [[bin]]\nname = \"my-tool\"\nharness = false\n\n[[bench]]\nname = \"custom\"\n",
        );
        assert_eq!(
            no_harness,
            NoHarness {
                lib: false,
                targets: vec![
                    ("bin".to_owned(), "my-tool".to_owned()),
                    ("test".to_owned(), "custom".to_owned())
                ],
            }
        );
        let target = |kind: &str, name: &str| Target {
            kind: vec![kind.to_owned()],
            name: name.to_owned(),
            doctest: false,
        };
        assert!(!no_harness.has_harness(&target("test", "custom")));
        assert!(!no_harness.has_harness(&target("bin", "my-tool")));
        assert!(no_harness.has_harness(&target("test", "api")));
        assert!(
            no_harness.has_harness(&target("bench", "custom")),
            "a bench of the same name"
        );
        assert!(no_harness.has_harness(&target("lib", "demo_pkg")));
        assert!(!NoHarness::parse("[lib]\nharness = false\n").has_harness(&target("rlib", "x")));
        assert_eq!(NoHarness::parse("not toml ["), NoHarness::default());
        assert_eq!(
            NoHarness::read(Path::new("/nonexistent/Cargo.toml")),
            NoHarness::default()
        );

        let (built, _) = read(MESSAGES);
        let mut packages = parse_metadata(METADATA.as_bytes()).expect("metadata");
        packages
            .get_mut(PACKAGE_ID)
            .expect("the package")
            .no_harness = NoHarness::parse("[[test]]\nname = \"foo\"\nharness = false\n");
        let harnesses: Vec<bool> = test_binaries(&built, &packages)
            .iter()
            .map(|binary| binary.harness)
            .collect();
        assert_eq!(harnesses, [true, true, false], "tests/foo.rs has none");
    }

    #[test]
    fn only_libtests_listing_is_taken_for_one() {
        assert_eq!(
            parse_libtest_listing("a::b: test\nc: bench\n"),
            Some(vec!["a::b".to_owned()])
        );
        assert_eq!(parse_libtest_listing("only: bench\n"), Some(Vec::new()));
        assert_eq!(
            parse_libtest_listing(""),
            Some(Vec::new()),
            "libtest with no tests prints nothing"
        );
        assert_eq!(parse_libtest_listing("hello from main\n"), None);
    }

    /// A `Binary` that is the shell script `script`, written into `dir`.
    fn script_binary(dir: &Path, name: &str, script: &str, harness: bool) -> Binary {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Binary {
            prefix: format!("c::{name}::"),
            path,
            cwd: dir.to_path_buf(),
            env: vec![("PROCTOR_TEST_SEEN".to_owned(), "yes".to_owned())],
            harness,
        }
    }

    #[test]
    fn a_binary_without_libtest_is_one_test_run_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let suite = suite(&dir.path().join("Cargo.toml"), &[]).expect("a suite");
        let ran = dir.path().join("ran");
        let libtest = script_binary(
            dir.path(),
            "libtest",
            r#"case "$*" in *--ignored*) echo "m::slow: test";; *) printf 'm::a: test\nm::slow: test\n';; esac"#,
            true,
        );
        let empty = script_binary(dir.path(), "empty", "exit 0", true);
        let chatty = script_binary(dir.path(), "chatty", "echo \"hello $*\"", true);
        let failing = script_binary(
            dir.path(),
            "failing",
            "echo unknown option >&2; exit 2",
            true,
        );
        let custom = script_binary(
            dir.path(),
            "custom",
            &format!("touch {}; exit 0", ran.display()),
            false,
        );
        let listed = list_all(&[libtest, empty, chatty, failing, custom], &suite).expect("lists");
        assert_eq!(
            listed,
            [
                BinaryListing::Libtest {
                    all: vec!["m::a".to_owned(), "m::slow".to_owned()],
                    ignored: vec!["m::slow".to_owned()],
                },
                BinaryListing::Libtest {
                    all: Vec::new(),
                    ignored: Vec::new(),
                },
                BinaryListing::Whole,
                BinaryListing::Whole,
                BinaryListing::Whole,
            ]
        );
        assert!(
            !ran.exists(),
            "a harness = false binary is not run to list it"
        );

        let custom = Arc::new(script_binary(
            dir.path(),
            "custom",
            "echo \"args: $# seen: $PROCTOR_TEST_SEEN\"; exit 77",
            false,
        ));
        let entry = whole_test(Arc::clone(&custom));
        assert_eq!(entry.id, "c::custom");
        assert!(matches!(&entry.how, How::Whole(binary) if Arc::ptr_eq(binary, &custom)));
        let invocation = whole_invocation(&custom);
        assert!(invocation.args.is_empty());
        assert_eq!(invocation.cwd, dir.path());
        let Protocol::ExitStatus(mapping) = invocation.protocol else {
            panic!("{:?}", invocation.protocol)
        };
        let output = invocation.command().output().expect("runs");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "args: 0 seen: yes\n"
        );
        assert_eq!(output.status.code(), Some(SKIP_STATUS));
        assert_eq!(
            mapping.outcome(SKIP_STATUS),
            ExitOutcome::Fail,
            "as cargo test has it"
        );
        assert_eq!(mapping.outcome(1), ExitOutcome::Fail);
        assert_eq!(mapping.outcome(0), ExitOutcome::Pass);
    }

    #[test]
    fn versions_split_as_cargo_splits_them() {
        let parts = |v| {
            let (a, b, c, d) = version_parts(v);
            [a, b, c, d]
        };
        assert_eq!(parts("1.2.3"), ["1", "2", "3", ""]);
        assert_eq!(parts("1.2.3-rc.1-x+meta"), ["1", "2", "3", "rc.1-x"]);
    }
}
