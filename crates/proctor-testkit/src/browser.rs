//! A real headless browser for the web UI's tests: Debian's `chromium` driven through `chromedriver` (both
//! installed by `scripts/test`) with fantoccini, and screenshots written where reviewers look for them.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use fantoccini::elements::Element;
pub use fantoccini::{Client, Locator};

/// Where `scripts/test` has Debian put the driver and the browser.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A `chromedriver` process, killed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
    /// The sessions' browser profiles, removed with the driver.
    profiles: tempfile::TempDir,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port.
    pub fn start() -> Driver {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run ./scripts/test, which installs chromium and chromium-driver"
            );
        }
        let port = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            port,
            profiles: tempfile::tempdir().unwrap(),
        }
    }

    /// A new headless browser session, at a phone's width when `narrow`. The flags keep Chromium off the closed
    /// network (no background fetches, no QUIC) and out of the sandbox, which root cannot have.
    pub async fn session(&self, narrow: bool) -> Client {
        // Kept past this function (the browser uses it until the session ends); removed with `profiles`.
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap().keep();
        let size = if narrow { "390,844" } else { "1280,900" };
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", format!("--window-size={size}"),
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        // Another test of the process may have chosen already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        fantoccini::ClientBuilder::rustls()
            .expect("a client")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the UI tests put their screenshots: `target/ui-screenshots/` at the workspace root.
pub fn screenshot_dir() -> PathBuf {
    let dir = crate::workspace_root().join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves what the browser shows as `name.png` in [`screenshot_dir`].
pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}
