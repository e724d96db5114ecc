//! The README's "Write a plugin" code is the echo-client example, whole,
//! so that it compiles (`make plugins` builds it).

#[test]
fn readme_plugin_code_is_the_echo_client_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/echo-client/src/main.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md's plugin code differs from examples/echo-client/src/main.rs"
    );
}
