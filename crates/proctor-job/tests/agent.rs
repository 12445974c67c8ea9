//! `agent.toml`: the keys, the errors (key path, line and column) and the limits a job gets on an agent.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_job::{
    AgentConfig, Job, Location, LoggingLevel, Name, Phase, ProblemKind, Timeouts,
    DEFAULT_SERVER_ADDRESS,
};

fn name(text: &str) -> Name {
    Name::new(text).expect("valid name")
}

fn problem(text: &str) -> (ProblemKind, String, Option<(usize, usize)>, String) {
    let problem = AgentConfig::from_toml(text)
        .expect_err("the configuration should be refused")
        .problem;
    (
        problem.kind,
        problem.path,
        problem.location.map(|at| (at.line, at.column)),
        problem.message,
    )
}

#[test]
fn a_minimal_configuration_has_defaults() {
    let config =
        AgentConfig::from_toml("agent_id = \"a1\"\njob_queues = [\"local\"]\n").expect("minimal");
    assert_eq!(config, AgentConfig::new(name("a1"), vec![name("local")]));
    assert_eq!(config.server_address, DEFAULT_SERVER_ADDRESS);
    assert_eq!(config.logging_level, LoggingLevel::Info);
    assert!(Phase::ALL
        .iter()
        .all(|&phase| config.command(phase).is_none()));
}

#[test]
fn the_example_configuration_has_every_kind_of_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs/agent.toml");
    let text = std::fs::read_to_string(&path).expect("read agent.toml");
    let config = AgentConfig::from_toml(&text).expect("agent.toml");
    assert_eq!(config.agent_id.as_str(), "rpi4b-01");
    assert_eq!(config.job_queues, [name("rpi4b")]);
    assert_eq!(config.advertised_queues["rpi4b"], "Raspberry Pi 4 B, 4 GB");
    assert_eq!(
        config.advertised_images["rpi4b"]["noble"],
        "url: http://images.example.com/noble.img.xz"
    );
    assert_eq!(
        config.execution_basedir,
        Some(PathBuf::from("/var/lib/proctor/run"))
    );
    assert_eq!(config.global_timeout, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(config.output_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(config.command(Phase::Cleanup), Some("power-cycle rpi4b-01"));
    assert_eq!(config.command(Phase::Setup), None);
}

#[test]
fn every_phase_has_its_command_key() {
    let mut text = String::from("agent_id = \"a\"\njob_queues = [\"q\"]\n");
    for phase in Phase::ALL {
        text.push_str(&format!("{phase}_command = \"run-{phase}\"\n"));
    }
    let config = AgentConfig::from_toml(&text).expect("all commands");
    for phase in Phase::ALL {
        assert_eq!(config.command(phase), Some(format!("run-{phase}").as_str()));
    }
}

#[test]
fn logging_levels_use_pythons_names() {
    for (written, level) in [
        ("DEBUG", LoggingLevel::Debug),
        ("warning", LoggingLevel::Warning),
        ("CRITICAL", LoggingLevel::Critical),
    ] {
        let text =
            format!("agent_id = \"a\"\njob_queues = [\"q\"]\nlogging_level = \"{written}\"\n");
        assert_eq!(
            AgentConfig::from_toml(&text).expect(written).logging_level,
            level
        );
    }
}

#[test]
fn errors_name_the_key_and_line() {
    let base = "agent_id = \"a\"\njob_queues = [\"q\"]\n";
    let (kind, path, location, message) = problem(&format!("{base}test_comand = \"x\"\n"));
    assert_eq!(
        (kind, path.as_str(), location),
        (ProblemKind::UnknownField, "test_comand", Some((3, 1)))
    );
    assert!(
        message.starts_with("unknown field `test_comand`"),
        "{message}"
    );

    let (kind, path, location, _) = problem("agent_id = \"a\"\njob_queues = [\"q\", 7]\n");
    assert_eq!(
        (kind, path.as_str(), location),
        (ProblemKind::WrongType, "job_queues[1]", Some((2, 20)))
    );

    let (kind, path, location, message) = problem("agent_id = \"a\"\njob_queues = []\n");
    assert_eq!(
        (kind, path.as_str(), location),
        (ProblemKind::InvalidValue, "job_queues", Some((2, 14)))
    );
    assert!(message.contains("at least one queue"), "{message}");

    let (kind, path, _, message) = problem("agent_id = \"a\"\n");
    assert_eq!(
        (kind, path.as_str(), message.as_str()),
        (ProblemKind::MissingField, "", "missing field `job_queues`")
    );

    let (kind, path, location, _) = problem(&format!("{base}global_timeout = \"forever\"\n"));
    assert_eq!(
        (kind, path.as_str(), location),
        (ProblemKind::InvalidValue, "global_timeout", Some((3, 18)))
    );

    let (kind, path, location, _) = problem(&format!("{base}logging_level = \"LOUD\"\n"));
    assert_eq!(
        (kind, path.as_str(), location),
        (ProblemKind::InvalidValue, "logging_level", Some((3, 17)))
    );

    let (kind, path, location, _) = problem(&format!("{base}[advertised_images.q]\nnoble = 3\n"));
    assert_eq!(
        (kind, path.as_str(), location),
        (
            ProblemKind::WrongType,
            "advertised_images.q.noble",
            Some((4, 9))
        )
    );

    let (kind, _, location, _) = problem("agent_id = \njob_queues = [\"q\"]\n");
    assert_eq!((kind, location), (ProblemKind::Syntax, Some((1, 12))));

    let error =
        AgentConfig::from_toml(&format!("{base}output_timeout = 0\n")).expect_err("zero cap");
    assert_eq!(
        error.problem.location,
        Some(Location {
            line: 3,
            column: 18
        })
    );
    assert!(error.to_string().starts_with(
        "invalid agent configuration: `output_timeout` at line 3, column 18: invalid value"
    ));
}

#[test]
fn agents_cap_job_timeouts() {
    let agent_text =
        "agent_id = \"a\"\njob_queues = [\"q\"]\nglobal_timeout = \"1h\"\noutput_timeout = 600\n";
    let capping = AgentConfig::from_toml(agent_text).expect("agent");
    let open = AgentConfig::new(name("b"), vec![name("q")]);

    let default_job = Job::from_yaml("job_queue: q\n").expect("job");
    assert_eq!(open.effective_timeouts(&default_job), Timeouts::default());
    assert_eq!(
        capping.effective_timeouts(&default_job),
        Timeouts {
            global: Duration::from_secs(3600),
            output: Duration::from_secs(600)
        }
    );

    let short_job =
        Job::from_yaml("job_queue: q\nglobal_timeout: 20m\noutput_timeout: 5m\n").expect("job");
    let short = Timeouts {
        global: Duration::from_secs(1200),
        output: Duration::from_secs(300),
    };
    assert_eq!(
        capping.effective_timeouts(&short_job),
        short,
        "shorter job values are kept"
    );
    assert_eq!(open.effective_timeouts(&short_job), short);

    let long_job =
        Job::from_yaml("job_queue: q\nglobal_timeout: 24h\noutput_timeout: 2h\n").expect("job");
    assert_eq!(
        capping.effective_timeouts(&long_job),
        Timeouts {
            global: Duration::from_secs(3600),
            output: Duration::from_secs(600)
        }
    );
    assert_eq!(
        open.effective_timeouts(&long_job),
        Timeouts {
            global: Duration::from_secs(86400),
            output: Duration::from_secs(7200)
        }
    );
}

#[test]
fn phases_run_where_the_agent_has_a_command_and_the_job_has_data() {
    let agent = AgentConfig::from_toml(
        "agent_id = \"a\"\njob_queues = [\"q\"]\nsetup_command = \"s\"\nprovision_command = \"p\"\ncleanup_command = \"c\"\n",
    )
    .expect("agent");
    let job = Job::from_yaml(
        "job_queue: q\ntest_data: {test_cmds: [true]}\nreserve_data: {ssh_keys: [lp:me]}\n",
    )
    .expect("job");
    // No provision data; the test phase runs with the built-in runner and the reserve phase holds the machine
    // without a reserve command.
    assert_eq!(
        agent.phases_for(&job),
        [Phase::Setup, Phase::Test, Phase::Reserve, Phase::Cleanup]
    );
    let bare = AgentConfig::new(name("b"), vec![name("q")]);
    assert_eq!(
        bare.phases_for(&Job::from_yaml("job_queue: q\n").expect("job")),
        []
    );
}

/// The `[device]` table: Testflinger's device connector keys, exported to the phases upper-cased, with the agent's
/// id as `agent_name` unless the table names one.
#[test]
fn the_device_table_describes_the_machine_under_test() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs/agent.toml");
    let config =
        AgentConfig::from_toml(&std::fs::read_to_string(&path).expect("read")).expect("agent.toml");
    assert_eq!(
        config.device.get("device_ip"),
        Some(&serde_json::json!("10.102.0.17"))
    );
    let environment = config.device_for_jobs().environment();
    assert_eq!(environment["DEVICE_IP"], "10.102.0.17");
    assert_eq!(environment["SERIAL_PORT"], "3001");
    assert_eq!(environment["AGENT_NAME"], "rpi4b-01");
    assert_eq!(environment["WPA_SSID"], "lab-ap");
    assert_eq!(environment["REBOOT_SCRIPT"].split(';').count(), 3);
    assert!(AgentConfig::new(name("a1"), vec![name("local")])
        .device_for_jobs()
        .environment()
        .keys()
        .eq(["AGENT_NAME"]));

    let named = AgentConfig::from_toml(
        "agent_id = \"a1\"\njob_queues = [\"q\"]\n[device]\nagent_name = \"rpi-example\"\n",
    )
    .expect("named");
    assert_eq!(
        named.device_for_jobs().environment()["AGENT_NAME"],
        "rpi-example"
    );

    let (kind, path, location, message) =
        problem("agent_id = \"a1\"\njob_queues = [\"q\"]\n[device]\ndevice-ip = \"10.0.0.1\"\n");
    assert_eq!(kind, ProblemKind::InvalidValue, "{message}");
    assert!(path.starts_with("device"), "{path}");
    // The toml parser points at the table a bad key is in; the message names the key.
    assert_eq!(location.map(|(line, _)| line), Some(3), "{message}");
    assert!(message.contains("string \"device-ip\""), "{message}");
}
