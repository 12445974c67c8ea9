//! Jobs in YAML and JSON: what is accepted and how it reads back, and every kind of error with its exact
//! field path and, where the parser knows it, line and column.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proctor_job::{
    Job, JobFormat, Location, Phase, ProblemKind, TestCommands, DEFAULT_GLOBAL_TIMEOUT,
    DEFAULT_OUTPUT_TIMEOUT, DEFAULT_RESERVE_TIMEOUT,
};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/jobs")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// The problem a YAML job has, as (kind, path, line, column).
fn yaml_problem(text: &str) -> (ProblemKind, String, Option<(usize, usize)>) {
    let problem = Job::from_yaml(text)
        .expect_err("the job should be refused")
        .problem;
    (
        problem.kind,
        problem.path,
        problem.location.map(|at| (at.line, at.column)),
    )
}

fn json_problem(text: &str) -> (ProblemKind, String, Option<(usize, usize)>) {
    let problem = Job::from_json(text)
        .expect_err("the job should be refused")
        .problem;
    (
        problem.kind,
        problem.path,
        problem.location.map(|at| (at.line, at.column)),
    )
}

#[test]
fn a_minimal_job_gets_testflingers_defaults() {
    for job in [
        Job::from_yaml("job_queue: local\n"),
        Job::from_json(r#"{"job_queue": "local"}"#),
    ] {
        let job = job.expect("minimal job");
        assert_eq!(job.job_queue.as_str(), "local");
        assert_eq!(job.global_timeout, DEFAULT_GLOBAL_TIMEOUT);
        assert_eq!(job.global_timeout, Duration::from_secs(4 * 3600));
        assert_eq!(job.output_timeout, DEFAULT_OUTPUT_TIMEOUT);
        assert_eq!(job.output_timeout, Duration::from_secs(15 * 60));
        assert_eq!(job.max_attempts.get(), 1);
        assert_eq!(job.job_priority, 0);
        assert!(job.test_data.is_none() && job.recipe.is_none() && job.options.is_empty());
    }
}

#[test]
fn the_hello_example_runs_its_commands_with_bash() {
    let job = Job::from_yaml(&example("hello.yaml")).expect("hello.yaml");
    assert_eq!(job.job_queue.as_str(), "local");
    assert_eq!(job.output_timeout, Duration::from_secs(60));
    let commands = job
        .test_data
        .and_then(|data| data.test_cmds)
        .expect("test_cmds");
    let output = Command::new("bash")
        .arg("-c")
        .arg(commands.script())
        .env("PROCTOR_JOB_ID", "job-7")
        .output()
        .expect("run bash");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("hello from "), "{stdout}");
    assert!(stdout.contains("job job-7 in "), "{stdout}");
}

#[test]
fn the_full_example_has_every_field() {
    let job = Job::from_yaml(&example("full.yaml")).expect("full.yaml");
    assert_eq!(job.name.as_deref(), Some("nightly image check"));
    assert_eq!(job.tags, ["nightly", "arm64"]);
    assert_eq!(job.job_priority, 10);
    assert_eq!(job.global_timeout, Duration::from_secs(7200));
    assert_eq!(job.output_timeout, Duration::from_secs(900));
    assert_eq!(job.max_attempts.get(), 2);
    let provision = job.provision_data.as_ref().expect("provision_data");
    assert_eq!(
        provision["url"],
        "http://images.example.com/ubuntu-arm64.img.xz"
    );
    let test_data = job.test_data.as_ref().expect("test_data");
    assert_eq!(test_data.environment["RETRIES"].0, "3");
    assert_eq!(test_data.environment["VERBOSE"].0, "true");
    assert_eq!(test_data.attachments[0].local, "tests/check.sh");
    assert_eq!(
        test_data.attachments[0]
            .agent
            .as_ref()
            .map(|path| path.as_path()),
        Some(Path::new("check.sh"))
    );
    assert_eq!(
        test_data.test_cmds,
        Some(TestCommands::Script(
            "set -e\nbash attachments/test/check.sh\n".into()
        ))
    );
    let reserve = job.reserve_data.as_ref().expect("reserve_data");
    assert_eq!(reserve.ssh_keys, ["lp:alice", "gh:bob"]);
    assert_eq!(reserve.timeout, Duration::from_secs(1800));
    assert!(Phase::ALL.iter().all(|&phase| job.has_data_for(phase)));
}

#[test]
fn jobs_round_trip_through_json() {
    for text in [
        example("hello.yaml"),
        example("full.yaml"),
        example("testflinger.yaml"),
        "job_queue: q\nrecipe: smoke\noptions: {n: 2}\n".into(),
    ] {
        let job = Job::from_yaml(&text).expect("example job");
        let json = serde_json::to_string(&job).expect("serialise");
        assert_eq!(Job::from_json(&json).expect("read back"), job, "{json}");
        // The pretty form (what a person would keep) reads back too.
        let pretty = serde_json::to_string_pretty(&job).expect("serialise");
        assert_eq!(
            Job::parse(&pretty, JobFormat::detect(&pretty)).expect("read back"),
            job
        );
    }
}

#[test]
fn serialised_timeouts_are_testflinger_seconds() {
    let job =
        Job::from_yaml("job_queue: q\nglobal_timeout: 1h 30m\nreserve_data: {ssh_keys: [lp:me]}\n")
            .expect("job");
    let json: serde_json::Value = serde_json::to_value(&job).expect("serialise");
    assert_eq!(json["global_timeout"], 5400);
    assert_eq!(json["output_timeout"], 900);
    assert_eq!(
        json["reserve_data"]["timeout"],
        DEFAULT_RESERVE_TIMEOUT.as_secs()
    );
}

/// PyYAML, the reader behind Testflinger's client, sees the same document we do: every field it reads has
/// the value our JSON gives back (timeouts in seconds).
#[test]
fn pyyaml_reads_the_examples_as_we_do() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs/full.yaml");
    let job = Job::from_yaml(&example("full.yaml")).expect("full.yaml");
    let ours = serde_json::to_string(&job).expect("serialise");
    let script = r#"
import json, sys, yaml
theirs = yaml.safe_load(open(sys.argv[1]))
ours = json.loads(sys.argv[2])
theirs["global_timeout"] = 7200
theirs["reserve_data"]["timeout"] = 1800
theirs["test_data"]["environment"] = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in theirs["test_data"]["environment"].items()}
assert theirs == ours, (theirs, ours)
"#;
    let output = Command::new(proctor_testkit::python())
        .args(["-c", script])
        .arg(&path)
        .arg(&ours)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn test_cmds_is_a_string_or_a_list() {
    let script =
        Job::from_yaml("job_queue: q\ntest_data:\n  test_cmds: |\n    echo a\n    echo b\n")
            .expect("job");
    let list =
        Job::from_yaml("job_queue: q\ntest_data:\n  test_cmds:\n    - echo a\n    - echo b\n")
            .expect("job");
    let script = script
        .test_data
        .and_then(|data| data.test_cmds)
        .expect("test_cmds");
    let list = list
        .test_data
        .and_then(|data| data.test_cmds)
        .expect("test_cmds");
    assert_eq!(script, TestCommands::Script("echo a\necho b\n".into()));
    assert_eq!(
        list,
        TestCommands::List(vec!["echo a".into(), "echo b".into()])
    );
    assert_eq!(list.script(), script.script());
    // Each keeps its shape in JSON.
    assert_eq!(
        serde_json::to_value(&list).expect("json"),
        serde_json::json!(["echo a", "echo b"])
    );
    assert_eq!(
        serde_json::to_value(&script).expect("json"),
        serde_json::json!("echo a\necho b\n")
    );
}

#[test]
fn timeouts_are_seconds_or_duration_strings() {
    let cases = [
        ("600", 600),
        ("\"600\"", 600),
        ("30m", 1800),
        ("1h30m", 5400),
        ("\"2 hours\"", 7200),
        ("PT1H", 3600),
    ];
    for (written, seconds) in cases {
        let job =
            Job::from_yaml(&format!("job_queue: q\noutput_timeout: {written}\n")).expect(written);
        assert_eq!(
            job.output_timeout,
            Duration::from_secs(seconds),
            "{written}"
        );
    }
    let job = Job::from_json(r#"{"job_queue": "q", "global_timeout": "45m"}"#).expect("json");
    assert_eq!(job.global_timeout, Duration::from_secs(2700));
}

#[test]
fn a_bad_entry_in_test_cmds_is_pointed_at() {
    let text =
        "job_queue: local\ntest_data:\n  test_cmds:\n    - echo a\n    - echo b\n    - [nested]\n";
    assert_eq!(
        yaml_problem(text),
        (
            ProblemKind::WrongType,
            "test_data.test_cmds[2]".into(),
            Some((6, 7))
        )
    );
    let json = "{\"job_queue\": \"local\",\n \"test_data\": {\"test_cmds\": [\"a\", \"b\", 3]}}";
    assert_eq!(
        json_problem(json),
        (
            ProblemKind::WrongType,
            "test_data.test_cmds[2]".into(),
            Some((2, 40))
        )
    );
    let message = Job::from_yaml(text).expect_err("refused").to_string();
    assert_eq!(
        message,
        "invalid YAML job: `test_data.test_cmds[2]` at line 6, column 7: invalid type: sequence, expected a string"
    );
}

#[test]
fn unknown_fields_are_errors_at_their_own_path() {
    assert_eq!(
        yaml_problem("job_queue: local\njob_queu: typo\n"),
        (ProblemKind::UnknownField, "job_queu".into(), Some((2, 1)))
    );
    assert_eq!(
        yaml_problem("job_queue: local\ntest_data:\n  test_cmd: echo\n"),
        (
            ProblemKind::UnknownField,
            "test_data.test_cmd".into(),
            Some((3, 3))
        )
    );
    assert_eq!(
        yaml_problem("job_queue: local\nreserve_data:\n  ssh_keys: []\n  timout: 60\n"),
        (
            ProblemKind::UnknownField,
            "reserve_data.timout".into(),
            Some((4, 3))
        )
    );
    assert_eq!(
        yaml_problem(
            "job_queue: local\ntest_data:\n  attachments:\n    - local: a\n      remote: b\n"
        ),
        (
            ProblemKind::UnknownField,
            "test_data.attachments[0].remote".into(),
            Some((5, 7))
        )
    );
    assert_eq!(
        json_problem(r#"{"job_queue": "local", "test_data": {"env": {}}}"#),
        (
            ProblemKind::UnknownField,
            "test_data.env".into(),
            Some((1, 42))
        )
    );
    let error = Job::from_yaml("job_queue: local\njob_queu: typo\n").expect_err("refused");
    assert!(
        error
            .problem
            .message
            .starts_with("unknown field `job_queu`, expected one of `job_queue`"),
        "{error}"
    );
}

#[test]
fn wrong_types_name_the_expected_type() {
    let cases = [
        (
            "job_queue: local\ntags: nightly\n",
            "tags",
            (2, 7),
            "expected a sequence",
        ),
        (
            "job_queue: local\njob_priority: high\n",
            "job_priority",
            (2, 15),
            "expected u32",
        ),
        (
            "job_queue: local\nprovision_data: [a]\n",
            "provision_data",
            (2, 17),
            "expected a map",
        ),
        (
            "job_queue: local\ntest_data:\n  test_cmds: {a: 1}\n",
            "test_data.test_cmds",
            (3, 14),
            "expected a string or a list of strings",
        ),
        (
            "job_queue: local\ntest_data:\n  environment:\n    A: [1]\n",
            "test_data.environment.A",
            (4, 8),
            "expected a string, number or boolean",
        ),
        (
            "job_queue: local\nglobal_timeout: [1]\n",
            "global_timeout",
            (2, 17),
            "expected a positive whole number of seconds",
        ),
    ];
    for (text, path, (line, column), expected) in cases {
        let problem = Job::from_yaml(text).expect_err(text).problem;
        assert_eq!(problem.kind, ProblemKind::WrongType, "{text}");
        assert_eq!(problem.path, path, "{text}");
        assert_eq!(problem.location, Some(Location { line, column }), "{text}");
        assert!(
            problem.message.contains(expected),
            "{text}: {}",
            problem.message
        );
    }
}

#[test]
fn missing_fields_name_the_field_and_its_parent() {
    assert_eq!(
        yaml_problem("name: x\n"),
        (ProblemKind::MissingField, String::new(), Some((1, 1)))
    );
    assert_eq!(
        yaml_problem(""),
        (ProblemKind::MissingField, String::new(), Some((1, 1)))
    );
    let problem = Job::from_yaml("job_queue: q\ntest_data:\n  attachments:\n    - agent: a.sh\n")
        .expect_err("refused")
        .problem;
    assert_eq!(
        (problem.kind, problem.path.as_str()),
        (ProblemKind::MissingField, "test_data.attachments[0]")
    );
    assert_eq!(problem.message, "missing field `local`");
    assert_eq!(problem.location.map(|at| at.line), Some(4));
    let problem = Job::from_json("{\"name\": \"x\"}")
        .expect_err("refused")
        .problem;
    assert_eq!(problem.message, "missing field `job_queue`");
}

#[test]
fn invalid_values_say_why() {
    let cases = [
        ("job_queue: ''\n", "job_queue", (1, 12), "cannot be empty"),
        ("job_queue: two words\n", "job_queue", (1, 12), "whitespace"),
        ("job_queue: q\nglobal_timeout: 0\n", "global_timeout", (2, 17), "integer `0`"),
        ("job_queue: q\noutput_timeout: -5\n", "output_timeout", (2, 17), "integer `-5`"),
        ("job_queue: q\noutput_timeout: 1.5s\n", "output_timeout", (2, 17), "whole number of seconds"),
        ("job_queue: q\noutput_timeout: soon\n", "output_timeout", (2, 17), "not a duration"),
        ("job_queue: q\nmax_attempts: 0\n", "max_attempts", (2, 15), "nonzero"),
        ("job_queue: q\nrecipe: ''\n", "recipe", (2, 9), "cannot be empty"),
        (
            "job_queue: q\ntest_data:\n  attachments:\n    - local: a\n      agent: ../../etc/passwd\n",
            "test_data.attachments[0].agent",
            (5, 14),
            "must not contain `..`",
        ),
    ];
    for (text, path, (line, column), reason) in cases {
        let problem = Job::from_yaml(text).expect_err(text).problem;
        assert_eq!(problem.kind, ProblemKind::InvalidValue, "{text}");
        assert_eq!(problem.path, path, "{text}");
        assert_eq!(problem.location, Some(Location { line, column }), "{text}");
        assert!(
            problem.message.contains(reason),
            "{text}: {}",
            problem.message
        );
    }
}

#[test]
fn syntax_errors_have_a_position() {
    let (kind, _, location) = yaml_problem("job_queue: local\ntest_data: {test_cmds: [a, b}\n");
    assert_eq!(kind, ProblemKind::Syntax);
    assert_eq!(location.map(|(line, _)| line), Some(2));
    let (kind, _, location) = yaml_problem("job_queue: \"unterminated\n");
    assert_eq!(kind, ProblemKind::Syntax);
    assert!(location.is_some());
    assert_eq!(
        json_problem("{\"job_queue\": \"q\",\n}"),
        (ProblemKind::Syntax, String::new(), Some((2, 1)))
    );
    assert_eq!(
        json_problem("{\"job_queue\": \"q\"} extra"),
        (ProblemKind::Syntax, String::new(), Some((1, 20)))
    );
    assert_eq!(json_problem("").0, ProblemKind::Syntax);
}

#[test]
fn fields_that_contradict_each_other_are_refused() {
    let problem = Job::from_yaml("job_queue: q\noptions: {n: 1}\n")
        .expect_err("options without recipe")
        .problem;
    assert_eq!(
        (problem.kind, problem.path.as_str()),
        (ProblemKind::Conflict, "options")
    );
    let problem = Job::from_yaml("job_queue: q\nrecipe: smoke\ntest_data: {test_cmds: echo}\n")
        .expect_err("recipe and test_cmds")
        .problem;
    assert_eq!(
        (problem.kind, problem.path.as_str()),
        (ProblemKind::Conflict, "test_data.test_cmds")
    );
    assert_eq!(
        yaml_problem("job_queue: q\nname: a\nname: b\n"),
        // serde finds the duplicate after the mapping, so the position is the mapping's.
        (ProblemKind::Conflict, "name".into(), Some((1, 1)))
    );
    // A recipe with options, environment and attachments is fine.
    let job = Job::from_yaml("job_queue: q\nrecipe: smoke\noptions: {n: 1, fast: true}\ntest_data: {environment: {A: b}}\n")
        .expect("recipe job");
    assert_eq!(job.options["fast"].0, "true");
    assert!(job.has_data_for(Phase::Test));
}

#[test]
fn the_format_comes_from_the_file_name_or_the_text() {
    assert_eq!(JobFormat::from_path(Path::new("job.json")), JobFormat::Json);
    assert_eq!(JobFormat::from_path(Path::new("job.JSON")), JobFormat::Json);
    assert_eq!(JobFormat::from_path(Path::new("job.yaml")), JobFormat::Yaml);
    assert_eq!(JobFormat::from_path(Path::new("job")), JobFormat::Yaml);
    assert_eq!(
        JobFormat::detect("\u{feff}  {\"job_queue\": \"q\"}"),
        JobFormat::Json
    );
    assert_eq!(JobFormat::detect("job_queue: q"), JobFormat::Yaml);
    let error = Job::parse("{\"job_queue\": 1}", JobFormat::Json).expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("invalid JSON job: `job_queue` at line 1, column 15: invalid type"),
        "{error}"
    );
}

/// Every field of Testflinger's job schema (its server's `schemas.Job`, `TestData`, `Attachment`, `ReserveData`)
/// is accepted; those Proctor does not act on are kept, and named.
#[test]
fn a_testflinger_job_is_accepted_with_every_field_of_its_schema() {
    let job = Job::from_yaml(&example("testflinger.yaml")).expect("testflinger.yaml");
    assert_eq!(job.allocation_timeout, Some(Duration::from_secs(7200)));
    assert_eq!(
        job.job_status_webhook.as_deref(),
        Some("https://ci.example.com/hooks/testflinger")
    );
    assert_eq!(job.exclude_agents, ["rpi4b-03"]);
    assert_eq!(job.debug, Some(false));
    let test_data = job.test_data.as_ref().expect("test_data");
    assert_eq!(test_data.test_username.as_deref(), Some("ubuntu"));
    assert_eq!(test_data.test_password.as_deref(), Some("ubuntu"));
    assert_eq!(test_data.secrets["STORE_TOKEN"], "ci/store-token");
    assert_eq!(
        test_data.attachments[0].device.as_deref(),
        Some("/home/ubuntu/check.sh")
    );
    assert_eq!(
        job.reserve_data
            .as_ref()
            .map(|reserve| reserve.ssh_keys.clone()),
        Some(vec!["lp:alice".to_owned(), "gh:bob".to_owned()])
    );
    assert_eq!(
        job.inert_fields(),
        [
            "allocation_timeout",
            "job_status_webhook",
            "exclude_agents",
            "debug",
            "test_data.test_username",
            "test_data.test_password",
            "test_data.secrets",
            "test_data.attachments[].device",
        ]
    );
    assert!(Job::from_yaml(&example("full.yaml"))
        .expect("full.yaml")
        .inert_fields()
        .is_empty());

    // A job as Testflinger's server hands it back for a resubmit: its ids, a null provision_data, reserve_data
    // without keys.
    let resubmitted = Job::from_json(
        r#"{"job_id": "0f3c8a5e-5a1d-4c1e-9f39-6f4f2b0c9d11", "parent_job_id": "7b1e", "job_queue": "q",
            "provision_data": null, "reserve_data": {"timeout": 600}}"#,
    )
    .expect("resubmitted job");
    assert_eq!(resubmitted.inert_fields(), ["job_id", "parent_job_id"]);
    assert!(resubmitted.provision_data.is_none());
    let json = serde_json::to_value(&resubmitted).expect("serialise");
    assert_eq!(json["job_id"], "0f3c8a5e-5a1d-4c1e-9f39-6f4f2b0c9d11");
    assert_eq!(json["reserve_data"], serde_json::json!({"timeout": 600}));
}

/// Accepting Testflinger's fields does not make typos welcome: a field neither knows is refused, saying which and
/// where.
#[test]
fn a_misspelt_testflinger_field_is_still_refused_where_it_is() {
    let text = "# -*- mode: yaml -*-\njob_queue: q\ntest_data:\n  test_usrname: ubuntu\n";
    assert_eq!(
        yaml_problem(text),
        (
            ProblemKind::UnknownField,
            "test_data.test_usrname".into(),
            Some((4, 3))
        )
    );
    let message = Job::from_yaml(text).expect_err("refused").problem.message;
    assert!(
        message.starts_with("unknown field `test_usrname`, expected one of")
            && message.contains("`test_username`"),
        "{message}"
    );
}

/// Testflinger's CLI drops the leading `/` of an absolute `agent` path; so does Proctor, and `..` stays refused.
#[test]
fn an_absolute_agent_path_lands_inside_the_attachments() {
    let job = Job::from_yaml(
        "job_queue: q\ntest_data:\n  attachments:\n    - local: a\n      agent: /etc/passwd\n",
    )
    .expect("accepted");
    let attachment = &job.test_data.expect("test_data").attachments[0];
    assert_eq!(
        attachment.agent.as_ref().map(|path| path.as_path()),
        Some(Path::new("etc/passwd"))
    );
}
