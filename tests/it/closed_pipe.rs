//! CLI manners: a command whose reader goes away (`loyalty-bridge check | head -1`) ends quietly,
//! by SIGPIPE as any Unix tool does, instead of panicking with "failed printing to stdout".

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// Runs the binary with `args`, `stdin` on its standard input, and its standard output a pipe
/// whose reading end is closed at once; → (status, stderr).
fn with_stdout_closed(args: &[&str], stdin: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    // The command may stop before it has read it all (that is the point), so a failed write is
    // fine here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn printing_commands_end_quietly_when_the_reader_goes_away() {
    let recalc = r#"{"retailStore": {"meta": {"id": "s1"}}, "positions": [{"assortment": {"meta": {"id": "p1"}}, "quantity": 1, "price": 100}]}"#;
    for (args, stdin) in [
        (&["check", "--mapping", "mappings/maxma.toml"][..], ""),
        (
            &["map", "--op", "recalc", "--mapping", "mappings/maxma.toml"][..],
            recalc,
        ),
        (&["--help"][..], ""),
    ] {
        let (status, stderr) = with_stdout_closed(args, stdin);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?} ends by SIGPIPE, as a Unix tool does: {status:?} {stderr}"
        );
    }
}
