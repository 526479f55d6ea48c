//! The layering rules a single crate cannot enforce through Cargo: `domain` depends on nothing
//! impure, `app` and `ui` do no IO and know no terminal library, backend or AWS type.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push((path.display().to_string(), text));
        }
    }
}

fn check(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut found = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for f in forbidden {
                if code.contains(f) {
                    found.push(format!("{path}:{}: `{f}` in {layer}", n + 1));
                }
            }
        }
    }
    found
}

const IMPURE: [&str; 12] = [
    "tokio",
    "crossterm",
    "rusqlite",
    "aws_",
    "notify::",
    "std::fs",
    "std::net",
    "std::env",
    "std::process",
    "std::thread",
    "Utc::now",
    "SystemTime::now",
];

#[test]
fn domain_is_pure_and_depends_on_no_other_layer() {
    let mut forbidden = IMPURE.to_vec();
    forbidden.extend([
        "ratatui",
        "crate::app",
        "crate::ui",
        "crate::store",
        "crate::config",
        "crate::runtime",
        "crate::cli",
    ]);
    let found = check("domain", &forbidden);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn app_is_pure_and_knows_no_terminal_or_backend() {
    let mut forbidden = IMPURE.to_vec();
    forbidden.extend([
        "ratatui",
        "crate::ui",
        "crate::runtime",
        "crate::cli",
        "store::sqlite",
    ]);
    let found = check("app", &forbidden);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn ui_is_pure_rendering() {
    let mut forbidden = IMPURE.to_vec();
    forbidden.extend(["crate::runtime", "crate::cli", "store::sqlite"]);
    let found = check("ui", &forbidden);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_scanner_finds_what_is_there() {
    assert!(
        !check("runtime", &["tokio", "crossterm"]).is_empty(),
        "positive control failed"
    );
}
