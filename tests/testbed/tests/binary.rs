//! The `wsgate-testbed` binary: its JSON lines, its stop signal, its errors.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_wsgate-testbed");
const PROMPT: Duration = Duration::from_secs(10);

#[cfg(unix)]
#[tokio::test]
async fn prints_ready_line_then_counts_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("wsgate-testbed-bin-{}", std::process::id()));
    let mut child = Command::new(BIN)
        .args(["--v6", "refused", "--v4", "ok", "--plain", "--cert-dir"])
        .arg(&dir)
        // As when started in the background by make: stdin at EOF at once.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();

    let ready = timeout(PROMPT, lines.next_line())
        .await
        .expect("ready line is prompt")
        .expect("stdout readable")
        .expect("a ready line");
    let json: serde_json::Value = serde_json::from_str(&ready).expect("ready line is JSON");
    assert!(ready.starts_with("{\"port\":"), "{ready}");
    let port = json["port"].as_u64().expect("port") as u16;
    assert_ne!(port, 0);
    assert_eq!(json["tls"], false);
    assert_eq!(json["v6"], "refused");
    assert_eq!(json["v4"], "ok");
    let ca = dir.join("ca.pem");
    assert_eq!(json["ca"].as_str(), ca.to_str());
    assert!(ca.is_file());

    // Stdin at EOF must not have stopped it: it still serves.
    let stream = timeout(PROMPT, tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("prompt")
        .expect("v4 listens");
    let (ws, _) = timeout(
        PROMPT,
        tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), stream),
    )
    .await
    .expect("prompt")
    .expect("upgrade");
    drop(ws);

    let pid = child.id().expect("child running");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());

    let counts = timeout(PROMPT, lines.next_line())
        .await
        .expect("counts line is prompt")
        .expect("stdout readable")
        .expect("a counts line");
    assert_eq!(counts, r#"{"upgrades":{"v6":0,"v4":1},"connections":{"v6":0,"v4":1}}"#);
    let status = timeout(PROMPT, child.wait())
        .await
        .expect("exits promptly")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_flags_fail_with_a_message() {
    let output = timeout(
        PROMPT,
        Command::new(BIN)
            .args(["--v6", "sideways"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits promptly")
    .expect("binary runs");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sideways"), "{stderr}");
}
