//! The README says what is true today:
//!
//! - its "Write a plugin" code is `examples/echo-client/src/main.rs`,
//!   whole, between the `echo-client:begin` and `echo-client:end` markers
//!   (so that it compiles: `make plugins` builds it);
//! - every `wsgate` command of its `sh` blocks runs as written against the
//!   demo's testbed, with the exit status (0, or `# exits N` after the
//!   command) and the output (the `text` block right after the `sh` block:
//!   each command's standard output, then its standard error) it shows.
//!
//! The README's commands name the demo's testbed and the plugins as
//! `make run` leaves them; here they are this test's testbed and plugins.

mod common;

use common::*;
use std::path::Path;

const BEGIN: &str = "<!-- echo-client:begin -->\n";
const END: &str = "<!-- echo-client:end -->\n";

/// What the README's commands name, and what this test puts in its place.
const DEMO_PORT: &str = "8443";
const DEMO_PLUGIN_DIR: &str = "target/wasm32-wasip2/plugin";
const DEMO_CA: &str = "target/testbed/ca.pem";
/// The README's command that starts the demo's testbed: the port and CA
/// above are its.
const DEMO_TESTBED: &str = "wsgate-testbed --port 8443 --cert-dir target/testbed";

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

#[test]
fn readme_gateway_plugin_code_is_the_echo_server_example() {
    let readme = readme();
    let example = std::fs::read_to_string(root().join("examples/echo-server/src/lib.rs")).unwrap();
    let (begin, end) = ("<!-- echo-server:begin -->\n", "<!-- echo-server:end -->\n");
    assert_eq!(
        readme.matches(begin).count(),
        1,
        "README.md needs one `{}`",
        begin.trim()
    );
    let (_, rest) = readme.split_once(begin).unwrap();
    let (section, _) = rest.split_once(end).expect("README.md has no echo-server end marker");
    assert!(
        section == format!("```rust\n{example}```\n"),
        "README.md's gateway plugin code (between the echo-server markers) differs from examples/echo-server/src/lib.rs"
    );
}

#[test]
fn readme_plugin_code_is_the_echo_client_example() {
    let readme = readme();
    let example = std::fs::read_to_string(root().join("examples/echo-client/src/main.rs")).unwrap();
    assert_eq!(
        readme.matches(BEGIN).count(),
        1,
        "README.md needs one `{}`",
        BEGIN.trim()
    );
    let (_, rest) = readme.split_once(BEGIN).unwrap();
    let (section, _) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("README.md has no `{}` after the begin marker", END.trim()));
    assert!(
        section == format!("```rust\n{example}```\n"),
        "README.md's plugin code (between the echo-client markers) differs from examples/echo-client/src/main.rs"
    );
}

/// A fenced block: its info string and its lines.
struct Block<'a> {
    info: &'a str,
    lines: Vec<&'a str>,
    /// What precedes it since the previous block: a line ending with
    /// "(`NAME`):" makes it a file the commands can read as NAME.
    before: Vec<&'a str>,
}

fn blocks(markdown: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    let mut before = Vec::new();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            before.push(line);
            continue;
        };
        let body = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push(Block {
            info,
            lines: body,
            before: std::mem::take(&mut before),
        });
    }
    blocks
}

/// The words of one shell command line, as sh splits them (quotes and
/// backslashes; no expansion), and the number after a `# exits N` comment.
fn shell_words(line: &str) -> (Vec<String>, Option<i32>) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => word
                .get_or_insert_default()
                .extend(chars.by_ref().take_while(|c| *c != '\'')),
            '"' => word
                .get_or_insert_default()
                .extend(chars.by_ref().take_while(|c| *c != '"')),
            '\\' => word.get_or_insert_default().extend(chars.next()),
            '#' if word.is_none() => {
                let comment = chars.as_str().trim();
                let code = comment.strip_prefix("exits ").map(|n| n.parse().expect("`# exits N`"));
                return (words, code);
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    (words, None)
}

/// The commands of an `sh` block, continuation lines joined.
fn commands(block: &Block) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in &block.lines {
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// The README's names of the demo's things replaced by this test's.
fn substitute(word: &str, tb: &TestbedHandle) -> String {
    let plugins = plugin_dir().display().to_string();
    let ca = tb.ca_path().unwrap().display().to_string();
    word.replace(DEMO_PLUGIN_DIR, &plugins)
        .replace(DEMO_CA, &ca)
        .replace(DEMO_PORT, &tb.port().to_string())
}

#[test]
fn readme_commands_run_as_written_on_the_demo() {
    let readme = readme();
    assert!(
        readme.contains(DEMO_TESTBED),
        "README.md no longer starts the testbed with `{DEMO_TESTBED}`"
    );
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let work = tempdir("readme");
    let blocks = blocks(&readme);
    let mut ran = 0;
    for (i, block) in blocks.iter().enumerate() {
        // A block introduced by "... (`NAME`):" is a file the commands use.
        if let Some(name) = block.before.iter().rev().find(|l| !l.is_empty()).and_then(|l| {
            let (_, name) = l.strip_suffix("`):")?.rsplit_once("(`")?;
            Some(name)
        }) {
            let text: String = block.lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(work.join(name), text).unwrap();
        }
        if block.info != "sh" {
            continue;
        }
        let mut shown = Vec::new();
        let mut printed = Vec::new();
        for command in commands(block) {
            let (words, code) = shell_words(&command);
            let Some(("wsgate", args)) = words.split_first().map(|(w, a)| (w.as_str(), a)) else {
                continue;
            };
            let mut args: Vec<String> = args.iter().map(|a| substitute(a, &tb)).collect();
            assert_eq!(args.first().map(String::as_str), Some("run"), "{command}");
            // The tests' compiled plugins, not the user's cache.
            args.splice(2..2, ["--cache-dir".into(), cache_dir().display().to_string()]);
            let run = wsgate_in(&work, &args);
            assert_eq!(run.code, Some(code.unwrap_or(0)), "README.md: `{command}`: {run:?}");
            printed.extend(run.stdout.lines().chain(run.stderr.lines()).map(str::to_owned));
            shown.push(command);
            ran += 1;
        }
        if shown.is_empty() {
            continue;
        }
        let output = blocks
            .get(i + 1)
            .filter(|b| b.info == "text" && b.before.iter().all(|l| l.is_empty()));
        let Some(output) = output else {
            assert!(
                printed.is_empty(),
                "README.md shows no output for {shown:?}: {printed:?}"
            );
            continue;
        };
        let tb_port = tb.port().to_string();
        let got: Vec<String> = printed.iter().map(|l| l.replace(&tb_port, DEMO_PORT)).collect();
        assert_eq!(output.lines, got, "README.md: the output of {shown:?}");
    }
    assert!(ran >= 4, "README.md: only {ran} wsgate commands found");
}

/// [`wsgate`] in the directory `dir`.
fn wsgate_in(dir: &Path, args: &[String]) -> Run {
    wsgate_with(args, |command| {
        command.current_dir(dir);
    })
}
