//! `loyalty-bridge new-mapping`: the skeleton it writes maps all nine operations and passes
//! `check` as written; it never overwrites a file unless told to.

use std::path::Path;
use std::process::{Command, Output};

use engine::op::Op;
use engine::plan::Mapping;

fn bridge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_skeleton_maps_every_operation_and_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = bridge(dir.path(), &["new-mapping", "acme"]);
    assert!(out.status.success(), "{}", text(&out));
    let path = dir.path().join("acme.toml");
    let written = std::fs::read_to_string(&path).unwrap();

    let check = bridge(dir.path(), &["check", "--mapping", "acme.toml"]);
    let report = text(&check);
    assert!(check.status.success(), "{report}");
    assert!(
        report.contains("acme.toml: compiles (9 examples)"),
        "{report}"
    );
    assert!(!report.contains("FAIL"), "{report}");

    let mapping = Mapping::load(&path).unwrap();
    assert_eq!(mapping.vendor.name, "acme");
    for op in Op::ALL {
        let name = op.name();
        assert!(mapping.op(op).is_some(), "no plan for {name}");
        assert!(
            mapping.examples.iter().any(|e| e.op == op),
            "no example for {name}"
        );
        assert!(
            written.contains(&format!("# {name}: ")),
            "no notes for {name}"
        );
    }
    assert!(!written.contains("__NAME__"), "a placeholder left unfilled");
}

#[test]
fn an_existing_file_is_overwritten_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    std::fs::write(&path, "# the vendor mapping someone already wrote\n").unwrap();

    let refused = bridge(dir.path(), &["new-mapping", "acme"]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--force"), "{}", text(&refused));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# the vendor mapping someone already wrote\n"
    );

    let forced = bridge(dir.path(), &["new-mapping", "acme", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("name = \"acme\"")
    );

    // --out names the file; it is refused the same way.
    let out = dir.path().join("vendor-x.toml");
    let args = ["new-mapping", "acme", "--out", out.to_str().unwrap()];
    assert!(bridge(dir.path(), &args).status.success());
    assert!(Mapping::load(&out).is_ok());
    assert!(!bridge(dir.path(), &args).status.success());
}

#[test]
fn a_name_that_is_no_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = bridge(dir.path(), &["new-mapping", "../acme"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("letters, digits"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
