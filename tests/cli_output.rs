//! What the one-shot commands do when their standard output is a pipe nobody reads any more
//! (`imagepipeline-operator demo | head -1` once `head` has exited).

use std::process::{Command, Stdio};

/// Runs `args` with stdout a pipe whose reading end is already closed (its reader, `true`, has
/// exited before the command starts); the exit code and stderr.
fn into_a_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("start true");
    let writer = reader.stdin.take().expect("the pipe's writing end");
    reader.wait().expect("true exits");
    let out = Command::new(env!("CARGO_BIN_EXE_imagepipeline-operator"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("run the command");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `print!` panicked there; the commands now report the closed pipe and exit 1.
#[test]
fn demo_and_crds_into_a_closed_pipe_report_it_and_do_not_panic() {
    for args in [&["demo"][..], &["crds"][..]] {
        let (code, stderr) = into_a_closed_pipe(args);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}
