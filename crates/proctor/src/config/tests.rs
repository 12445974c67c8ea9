// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs;

use tempfile::TempDir;

use super::*;

/// A machine: a home directory, a project in it, and an environment of its own.
struct Machine {
    home: TempDir,
    project: TempDir,
    env: HashMap<String, String>,
}

impl Machine {
    fn new() -> Machine {
        let home = TempDir::new().unwrap();
        let env = HashMap::from([("HOME".to_owned(), home.path().display().to_string())]);
        Machine {
            home,
            project: TempDir::new().unwrap(),
            env,
        }
    }

    fn user_file(&self) -> PathBuf {
        self.home.path().join(".config/proctor/config.toml")
    }

    fn project_file(&self) -> PathBuf {
        self.project.path().join(".config/proctor.toml")
    }

    fn set(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), value.to_owned());
    }

    fn load(&self) -> Result<RunSettings, ConfigError> {
        RunSettings::load_with(self.project.path(), |name| {
            self.env.get(name).map(OsString::from)
        })
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// `settings` read from `text` as a project file's.
fn from_toml(text: &str) -> Result<RunSettings, Problem> {
    let mut settings = RunSettings::default();
    let source = Source::ProjectFile(PathBuf::from("proctor.toml"));
    settings.merge_toml(text, &source, Path::new("/project"))?;
    Ok(settings)
}

fn shown(settings: &RunSettings, key: &str) -> (Option<String>, Source) {
    let entry = settings
        .entries()
        .into_iter()
        .find(|entry| entry.key == key)
        .unwrap();
    (entry.value, entry.source.clone())
}

#[test]
fn every_key_starts_at_its_default() {
    let settings = RunSettings::default();
    let entries = settings.entries();
    let keys: Vec<_> = entries.iter().map(|entry| entry.key).collect();
    assert_eq!(keys, RunSettings::KEYS);
    assert!(entries.iter().all(|entry| entry.source == &Source::Default));
    assert_eq!(*settings.retries.get(), 0);
    assert_eq!(*settings.grace.get(), Duration::from_secs(10));
    assert_eq!(shown(&settings, "junit").0, None);
    assert_eq!(shown(&settings, "no-store").0.as_deref(), Some("false"));
}

#[test]
fn each_layer_overrides_the_ones_below() {
    let mut machine = Machine::new();
    write(
        &machine.user_file(),
        "[run]\nretries = 1\ngrace = 2.5\nmemory-limit = \"1K\"\n",
    );
    write(&machine.project_file(), "[run]\nretries = 2\ngrace = 4\n");
    machine.set("PROCTOR_GRACE", "3");
    let mut settings = machine.load().unwrap();
    assert_eq!(
        shown(&settings, "memory-limit"),
        (Some("1K".into()), Source::UserFile(machine.user_file()))
    );
    assert_eq!(
        shown(&settings, "retries"),
        (
            Some("2".into()),
            Source::ProjectFile(machine.project_file())
        )
    );
    assert_eq!(
        shown(&settings, "grace"),
        (Some("3".into()), Source::Env("PROCTOR_GRACE".into()))
    );
    assert_eq!(shown(&settings, "serial").1, Source::Default);
    settings.grace.set(Duration::from_millis(500));
    assert_eq!(
        shown(&settings, "grace"),
        (Some("0.5".into()), Source::Explicit)
    );
}

#[test]
fn the_user_file_is_under_xdg_config_home_else_home() {
    let home = |env: &[(&str, &str)]| {
        let env: HashMap<_, _> = env.iter().copied().collect();
        user_file(|name| env.get(name).map(OsString::from))
    };
    assert_eq!(
        home(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]),
        Some(PathBuf::from("/x/proctor/config.toml"))
    );
    assert_eq!(
        home(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/h")]),
        Some(PathBuf::from("/h/.config/proctor/config.toml"))
    );
    assert_eq!(home(&[]), None);
}

#[test]
fn files_and_the_environment_spell_every_key_alike() {
    // (key, as a file gives it, as the environment gives it, as it is shown)
    let cases = [
        ("failing", "true", "1", "true"),
        ("concurrency", "3", "3", "3"),
        ("pool", "\"/p/pool.toml\"", "/p/pool.toml", "/p/pool.toml"),
        ("serial", "false", "0", "false"),
        ("until-failure", "true", "true", "true"),
        ("retries", "\"2\"", "2", "2"),
        ("subunit", "true", "true", "true"),
        ("junit", "\"/r.xml\"", "/r.xml", "/r.xml"),
        ("no-store", "true", "true", "true"),
        ("memory-limit", "\"512MiB\"", "512M", "512M"),
        ("grace", "1.5", "1.5", "1.5"),
        ("time-limit", "30", "30", "30"),
    ];
    assert_eq!(cases.len(), RunSettings::KEYS.len());
    for (key, in_file, in_env, expected) in cases {
        let from_file = from_toml(&format!("[run]\n{key} = {in_file}\n")).unwrap();
        let mut from_env = RunSettings::default();
        let env = HashMap::from([(env_var(key), in_env)]);
        from_env
            .merge_env(|name| env.get(name).map(OsString::from))
            .unwrap();
        assert_eq!(shown(&from_file, key).0.as_deref(), Some(expected), "{key}");
        assert_eq!(shown(&from_env, key).0.as_deref(), Some(expected), "{key}");
        assert_eq!(shown(&from_env, key).1, Source::Env(env_var(key)));
    }
}

#[test]
fn relative_paths_in_a_file_are_in_the_project() {
    let settings = from_toml("[run]\njunit = \"out/report.xml\"\n").unwrap();
    assert_eq!(
        settings.junit.get().as_deref(),
        Some(Path::new("/project/out/report.xml"))
    );
    assert_eq!(
        parse::<PathBuf>("out/report.xml").unwrap(),
        PathBuf::from("out/report.xml")
    );
}

#[test]
fn bad_files_name_the_key_and_where_it_is() {
    let cases = [
        (
            "[run]\nretries = \"lots\"\n",
            "run.retries",
            (2, 11),
            "expected a whole number, 0 or more, not \"lots\"",
        ),
        (
            "[run]\nconcurrency = 0\n",
            "run.concurrency",
            (2, 15),
            "at least 1, not 0",
        ),
        (
            "[run]\nserial = \"yes\"\n",
            "run.serial",
            (2, 10),
            "expected true or false",
        ),
        (
            "[run]\n\nretires = 2\n",
            "run.retires",
            (3, 1),
            "unknown key `retires`; the keys are failing, concurrency,",
        ),
        (
            "[run]\njunit = [\"a\"]\n",
            "run.junit",
            (2, 9),
            "expected a single value, not array",
        ),
        ("[runs]\n", "runs", (1, 2), "unknown field `runs`"),
        ("[run\n", "", (1, 5), ""),
    ];
    for (text, path, (line, column), message) in cases {
        let problem = from_toml(text).expect_err(text);
        assert_eq!(problem.path, path, "{text}: {problem}");
        assert_eq!(
            problem.location,
            Some(Location { line, column }),
            "{text}: {problem}"
        );
        assert!(problem.message.contains(message), "{text}: {problem}");
    }
}

#[test]
fn a_bad_file_is_named_in_its_error() {
    let machine = Machine::new();
    write(&machine.project_file(), "[run]\ngrace = -1\n");
    let error = machine.load().unwrap_err().to_string();
    let expected = format!(
        "{}: `run.grace` at line 2, column 9: expected a number of seconds, 0 or more, not -1",
        machine.project_file().display()
    );
    assert_eq!(error, expected);
}

#[test]
fn bad_environment_values_name_the_variable() {
    let mut machine = Machine::new();
    machine.set("PROCTOR_MEMORY_LIMIT", "lots");
    let error = machine.load().unwrap_err().to_string();
    assert_eq!(
        error,
        "$PROCTOR_MEMORY_LIMIT: expected a number of bytes with an optional K, M or G suffix, not \"lots\""
    );
}

#[test]
fn the_highest_layer_chooses_the_workers() {
    let three = NonZeroUsize::new(3).unwrap();
    let mut settings = from_toml("[run]\nserial = true\n").unwrap();
    assert_eq!(
        settings.workers().unwrap(),
        Workers::Slots(NonZeroUsize::MIN)
    );
    settings.concurrency.set(three);
    assert_eq!(settings.workers().unwrap(), Workers::Slots(three));
    let mut settings = from_toml("[run]\nconcurrency = 3\n").unwrap();
    settings.pool.set(Some(PathBuf::from("pool.toml")));
    assert_eq!(
        settings.workers().unwrap(),
        Workers::Pool(PathBuf::from("pool.toml"))
    );
    let default = RunSettings::default();
    assert_eq!(
        default.workers().unwrap(),
        Workers::Slots(*default.concurrency.get())
    );
}

#[test]
fn workers_chosen_twice_by_one_layer_are_an_error() {
    let settings = from_toml("[run]\nserial = true\nconcurrency = 3\n").unwrap();
    let error = settings.workers().unwrap_err().to_string();
    assert_eq!(
        error,
        "`serial` (proctor.toml) and `concurrency` (proctor.toml) both choose the run's workers; set one of them"
    );
}

#[test]
fn sizes_read_and_show_in_their_largest_exact_unit() {
    let cases = [
        ("100", 100, "100"),
        ("512M", 512 << 20, "512M"),
        ("2g", 2 << 30, "2G"),
        ("1536K", 1536 << 10, "1536K"),
        ("1kib", 1 << 10, "1K"),
        ("0", 0, "0"),
    ];
    for (text, bytes, show) in cases {
        let read = parse::<Bytes>(text).unwrap();
        assert_eq!(read, Bytes(bytes), "{text}");
        assert_eq!(read.show().as_deref(), Some(show), "{text}");
    }
    for text in ["12X", "M", "", "-1", "99999999999999999999G"] {
        assert!(parse::<Bytes>(text).is_err(), "{text}");
    }
}
