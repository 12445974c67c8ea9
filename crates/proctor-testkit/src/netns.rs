//! A network namespace joined to this one by a veth pair, for partitions: a process started in it (an agent)
//! reaches this side only over the pair, and [`Netns::cut`] takes the link down as a pulled cable would. Needs root
//! (the tests run as root in CI); removed when dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace and its link.
pub struct Netns {
    name: String,
    host_link: String,
    /// This side's address on the link: listen here to be reachable from inside.
    pub host_address: String,
    /// The inside's address.
    pub inside_address: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("ip {args:?}: {error}"));
    assert!(
        status.success(),
        "ip {args:?} failed (the tests need root for network namespaces)"
    );
}

impl Netns {
    /// A new namespace with a link up, on a /30 of its own in 10.201.0.0/16.
    pub fn create() -> Netns {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let index = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        // One /30 per (process, namespace), spread over the /16 so parallel tests do not collide.
        let subnet = (pid.wrapping_mul(7).wrapping_add(index * 131)) % 16_000;
        let base = subnet * 4;
        let (third, fourth) = (base / 256, base % 256);
        let name = format!("proctor-{pid}-{index}");
        let host_link = format!("pr{pid}h{index}");
        let inside_link = format!("pr{pid}i{index}");
        let host_address = format!("10.201.{third}.{}", fourth + 1);
        let inside_address = format!("10.201.{third}.{}", fourth + 2);
        ip(&["netns", "add", &name]);
        let netns = Netns {
            name,
            host_link,
            host_address,
            inside_address,
        };
        ip(&[
            "link",
            "add",
            &netns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inside_link,
        ]);
        ip(&["link", "set", &inside_link, "netns", &netns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_address),
            "dev",
            &netns.host_link,
        ]);
        ip(&["link", "set", &netns.host_link, "up"]);
        netns.inside(&[
            "addr",
            "add",
            &format!("{}/30", netns.inside_address),
            "dev",
            &inside_link,
        ]);
        netns.inside(&["link", "set", &inside_link, "up"]);
        netns.inside(&["link", "set", "lo", "up"]);
        netns
    }

    fn inside(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Takes the link down: nothing crosses until [`Netns::mend`].
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_link, "down"]);
    }

    /// Brings the link back up.
    pub fn mend(&self) {
        ip(&["link", "set", &self.host_link, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
