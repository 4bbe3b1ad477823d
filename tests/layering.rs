//! The crate's import structure: every top-level module belongs to one layer, a module imports
//! only from its own layer or the ones below, and no two modules import each other, directly or
//! round a longer loop. A lower layer that needs something from a higher one is a design error
//! (the venue seam, issue 17): the thing belongs lower, or the higher layer passes it in.
//!
//! Read from the source text (`crate::name` paths outside `#[cfg(test)] mod tests`), so a new
//! module fails here until it is given a layer.
//!
//! A venue's tree (each directory under `src/venue/`, e.g. `venue::binance`) is a unit of its
//! own in the venues layer; the files beside the trees (`src/venue/mod.rs`, `history.rs`, the
//! live seam's directory `live/`) are the seam (`venue`) every layer above takes venues through. Outside its own tree, a venue is
//! named only where [`NAMES_A_VENUE`] says, each entry a place the seam does not reach yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top. Within a layer a module may use another of the same layer (the cycle check
/// keeps those acyclic).
const LAYERS: &[(&str, &[&str])] = &[
    // What the data is: errors, limits, times, markets, records, the data types and what
    // identifies their records (`registry`), the job's identity. Venue-neutral.
    (
        "model",
        &[
            "error",
            "secret",
            "bounds",
            "backoff",
            "time_range",
            "market",
            "flat_json",
            "record",
            "registry",
            "schema",
            "identity",
            "source_mode",
        ],
    ),
    // The outside world: the archive's files, the broker, the one TLS connector.
    ("connectors", &["archive", "kafka", "tls"]),
    // What the generic layers ask of a venue (`venue::history`: the `History` of a type, the
    // cursor and emitter its rows go through, the venue's clock). Names no venue.
    ("seam", &["venue"]),
    // Each venue's tree: its endpoints, limits, streams, archive layout and row mapping.
    ("venues", &["venue::binance", "venue::bybit", "venue::okx"]),
    // The one list of venues (`EXCHANGE` finds its venue there): it names every venue, by
    // design, and nothing else does.
    ("registered venues", &["venues"]),
    // Sources yield records, sinks publish them; resume, verify and reporting read both.
    (
        "components",
        &[
            "resume",
            "lease",
            "sink",
            "status",
            "source",
            "verify",
            "control",
            "telemetry",
            "metrics",
        ],
    ),
    // Settings, the job that wires the components, and the process around it.
    ("job", &["config", "job", "lifecycle", "demo"]),
];

/// Files that are the crate's roots, not modules of a layer.
const ROOTS: &[&str] = &["lib", "main"];

/// The module that lists every venue (`src/venues.rs`): it names each venue's spec, and only
/// that (a test checks).
const REGISTRY: &str = "venues";

/// The modules outside a venue's tree that still name the venue, and why: the places the seam
/// does not reach yet (issue 17). The test fails on any other, and on an entry that no longer
/// names the venue, so the list only shrinks.
const NAMES_A_VENUE: &[(&str, &str, &str)] = &[];

struct Import {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Directories under `src/venue/` that are part of the seam, not a venue's tree (`live`: the
/// live seam, `venue::live`).
const SEAM_DIRS: &[&str] = &["live"];

/// The unit a file belongs to: its top-level module (`src/source/live/mod.rs` → `source`), or
/// its venue's tree (`src/venue/binance/rest.rs` → `venue::binance`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src/");
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let first = parts.next().expect("non-empty path");
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    match (name.as_str(), parts.next()) {
        ("venue", Some(second))
            if src.join("venue").join(second.as_ref()).is_dir()
                && !SEAM_DIRS.contains(&second.as_ref()) =>
        {
            format!("venue::{second}")
        }
        _ => name,
    }
}

/// The unit a path names: `venue::binance::api` → `venue::binance` (a venue's tree),
/// `venue::history` → `venue` (the seam), `source::plan` → `source`.
fn unit_of(first: &str, after: &str) -> String {
    if first == "venue" {
        if let Some(next) = after.strip_prefix("::") {
            let tree = ident(next);
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/venue");
            if !tree.is_empty() && src.join(tree).is_dir() && !SEAM_DIRS.contains(&tree) {
                return format!("venue::{tree}");
            }
        }
    }
    first.to_string()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The leading identifier of `s`.
fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules one line of code names after `crate::` (`crate::a::X`, and each
/// first segment of `crate::{a::X, b::{Y, Z}}`, also when the group spans lines).
fn named_modules(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) || c == '$');
        let after = &rest[at + "crate::".len()..];
        let consumed;
        if preceded_by_ident {
            // `$crate::` in a macro, or an identifier ending in `crate`.
            consumed = at + "crate::".len();
        } else if let Some(group) = after.strip_prefix('{') {
            let mut depth = 1;
            let mut segment_start = true;
            let mut end = group.len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    ',' if depth == 1 => segment_start = true,
                    c if depth == 1 && segment_start && is_ident(c) => {
                        let name = ident(&group[i..]);
                        let unit = unit_of(name, &group[i + name.len()..]);
                        found.push((offset + at + 8 + i, unit));
                        segment_start = false;
                    }
                    _ => {}
                }
            }
            consumed = at + "crate::{".len() + end;
        } else {
            let name = ident(after);
            if !name.is_empty() {
                found.push((offset + at, unit_of(name, &after[name.len()..])));
            }
            consumed = at + "crate::".len() + name.len();
        }
        rest = &rest[consumed..];
        offset += consumed;
    }
    found
}

/// The file's code without its unit tests and without comments (which name modules in
/// intra-doc links without importing them).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut imports = Vec::new();
    for file in files {
        let from = top_module(&src, &file);
        if ROOTS.contains(&from.as_str()) {
            continue;
        }
        let code = code_of(&fs::read_to_string(&file).expect("read a source file"));
        for (at, to) in named_modules(&code) {
            if to != from {
                let line = code[..at].matches('\n').count() + 1;
                imports.push(Import {
                    from: from.clone(),
                    to,
                    file: file
                        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&file)
                        .to_path_buf(),
                    line,
                });
            }
        }
    }
    imports
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

#[test]
fn every_module_has_a_layer_and_imports_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(&src, f))
        .filter(|m| !ROOTS.contains(&m.as_str()))
        .collect();
    let unplaced: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer (add them to LAYERS in tests/layering.rs): {unplaced:?}"
    );

    let upward: Vec<String> = imports()
        .into_iter()
        .filter_map(|i| {
            let (from, to) = (layer_of(&i.from)?, layer_of(&i.to)?);
            (to > from).then(|| {
                format!(
                    "{}:{}: {} ({}) uses {} ({})",
                    i.file.display(),
                    i.line,
                    i.from,
                    LAYERS[from].0,
                    i.to,
                    LAYERS[to].0
                )
            })
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_modules_import_each_other() {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for i in imports() {
        graph
            .entry(i.from.clone())
            .or_default()
            .entry(i.to.clone())
            .or_insert_with(|| format!("{}:{}", i.file.display(), i.line));
    }
    // Depth-first search; a back edge closes a cycle, reported with the line of each import.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for (next, site) in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).expect("on the path");
                    let mut ring: Vec<String> = path[start..].to_vec();
                    ring.push(next.clone());
                    cycles.push(format!("{} (closed at {site})", ring.join(" -> ")));
                }
                Some(_) => {}
                None => visit(next, graph, state, path, cycles),
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            visit(node, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_finds_paths_and_groups() {
    let code =
        "use crate::a::X;\nuse crate::{b::{Y, Z}, c};\nlet v = $crate::d::e;\nf(crate::g::h())";
    let names: Vec<String> = named_modules(code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["a", "b", "c", "g"]);
    let venues = "use crate::venue::binance::api::X;\nuse crate::venue::history::Y;\nuse crate::{venue::binance::Z, source};";
    let names: Vec<String> = named_modules(venues).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names,
        ["venue::binance", "venue", "venue::binance", "source"]
    );
    let at = named_modules(code)[2].0;
    assert_eq!(
        code[..at].matches('\n').count() + 1,
        2,
        "group member on line 2"
    );
}

#[test]
fn only_a_venues_own_tree_names_it() {
    let mut found: BTreeMap<(String, String), String> = BTreeMap::new();
    for i in imports() {
        // The registry (`venues`) is the one list of every venue's spec.
        if i.to.starts_with("venue::") && !i.from.starts_with("venue::") && i.from != REGISTRY {
            found
                .entry((i.from.clone(), i.to.clone()))
                .or_insert_with(|| format!("{}:{}", i.file.display(), i.line));
        }
        // One venue's tree never names another's.
        assert!(
            !(i.from.starts_with("venue::") && i.to.starts_with("venue::") && i.from != i.to),
            "{}:{}: {} names {}",
            i.file.display(),
            i.line,
            i.from,
            i.to
        );
    }
    let allowed: BTreeSet<(String, String)> = NAMES_A_VENUE
        .iter()
        .map(|(from, to, _)| (from.to_string(), to.to_string()))
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|(k, _)| !allowed.contains(*k))
        .map(|((from, to), site)| format!("{site}: {from} names {to}"))
        .collect();
    assert!(
        new.is_empty(),
        "modules outside a venue's tree that name it (take it through the seam, `venue::history`):\n{}",
        new.join("\n")
    );
    let stale: Vec<String> = allowed
        .iter()
        .filter(|k| !found.contains_key(*k))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(
        stale.is_empty(),
        "NAMES_A_VENUE lists modules that no longer name the venue (remove them): {stale:?}"
    );
}

#[test]
fn the_registry_names_only_each_venues_spec() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/venues.rs");
    let text = fs::read_to_string(&src).expect("read src/venues.rs");
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.trim().strip_prefix("use crate::venue::") {
            let named = rest.trim_end_matches(';');
            let is_spec = named
                .split_once("::")
                .is_some_and(|(_tree, path)| path.starts_with("spec::"));
            assert!(
                is_spec || !named.contains("::") || named.starts_with('{'),
                "src/venues.rs:{}: the registry names {named}; it lists venues' specs only",
                n + 1
            );
        }
    }
}
