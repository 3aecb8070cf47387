//! The real binary as a separate process, for tests that kill it (`kill -9`) or run several.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// `loyalty-bridge serve` on a config whose `[log]` is `format = "json"`, `level = "info"`.
pub struct BridgeProcess {
    child: Child,
    /// `127.0.0.1:<port>`, from its "listening" log line.
    pub addr: String,
}

impl BridgeProcess {
    /// Starts the binary on `config` with `env` and waits for its "listening" log line.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> BridgeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the bridge starts and logs its address");
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["message"] == "loyalty-bridge listening" {
                break v["addr"].as_str().unwrap().to_string();
            }
        };
        BridgeProcess { child, addr }
    }

    /// SIGTERM, as systemd stops a unit, and waits for the process to end.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.child.wait().unwrap()
    }

    /// SIGKILL: no shutdown, nothing given back.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
