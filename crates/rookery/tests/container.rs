//! The container image's configuration: the environment `packaging/Dockerfile` sets, with no
//! config file, is a valid configuration that listens where a published port reaches.

use std::process::Command;

/// `KEY=VALUE` pairs of the Dockerfile's `ENV` instruction (continued lines, quoted values).
fn dockerfile_env() -> Vec<(String, String)> {
    let text = include_str!("../../../packaging/Dockerfile");
    let start = text.find("\nENV ").expect("an ENV instruction") + 5;
    let mut block = String::new();
    for line in text[start..].lines() {
        let (part, more) = match line.trim_end().strip_suffix('\\') {
            Some(p) => (p, true),
            None => (line, false),
        };
        block.push_str(part);
        block.push(' ');
        if !more {
            break;
        }
    }
    block
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn the_images_environment_alone_is_a_valid_configuration() {
    let env = dockerfile_env();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"ROOKERY_DATA_DIR") && names.contains(&"ROOKERY_LISTEN__HTTP"));
    let data = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rookery"));
    c.arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap());
    for (k, v) in &env {
        // The image's data volume, here a temporary directory.
        let v = if k == "ROOKERY_DATA_DIR" {
            data.path().display().to_string()
        } else {
            v.clone()
        };
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Ports may be taken on a test machine; the configuration itself must be accepted.
    assert!(text.contains("http: 0.0.0.0:5280"), "{text}");
    assert!(text.contains("https: 0.0.0.0:5281"), "{text}");
    assert!(text.contains("c2s (STARTTLS): 0.0.0.0:5222"), "{text}");
    assert!(!text.contains("unknown"), "{text}");
}
