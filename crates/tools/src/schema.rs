//! Which tools run in the sandbox, and their JSON schemas for the model.
//!
//! The argument names here are exactly the ones the host checks ([`crate::args`]) and the
//! in-container runner accepts (`sandbox-runner`'s `tools` module); the descriptions state the
//! defaults and limits that those two enforce, as configured, so the model can plan around
//! them.

use std::time::Duration;

use sandbox_exec::Tool;
use serde_json::{Value, json};

use crate::config::ToolsConfig;

/// The names of the tools that run inside the user's container ([`Tool::ALL`]); every other
/// tool runs on the host.
pub const SANDBOX_TOOLS: [&str; 7] = [
    Tool::Shell.name(),
    Tool::RunPython.name(),
    Tool::Read.name(),
    Tool::Write.name(),
    Tool::Edit.name(),
    Tool::Glob.name(),
    Tool::Grep.name(),
];

/// Whether `name` is one of the sandbox tools ([`Tool::from_name`]).
pub fn is_sandbox_tool(name: &str) -> bool {
    Tool::from_name(name).is_some()
}

/// One schema per sandbox tool, in the order of [`SANDBOX_TOOLS`]:
/// `{"name", "description", "parameters"}`, where `parameters` is a JSON Schema object that
/// lists every argument and allows no others. The defaults and limits they state are
/// `config`'s: what the calls will really do.
pub fn sandbox_tool_schemas(config: &ToolsConfig) -> Vec<Value> {
    let told = Told::from(config);
    vec![
        shell(&told),
        run_python(&told),
        read(&told),
        write(&told),
        edit(&told),
        glob(&told),
        grep(&told),
    ]
}

/// What the descriptions state, from the configuration.
struct Told {
    shell: String,
    python: String,
    file: String,
    max: String,
    head: String,
    tail: String,
}

impl From<&ToolsConfig> for Told {
    fn from(c: &ToolsConfig) -> Self {
        // A default over the cap is cut to it, as the argument checks do.
        let default = |d: Duration| secs(d.min(c.max_timeout));
        Self {
            shell: default(c.shell_timeout),
            python: default(c.python_timeout),
            file: default(c.file_timeout),
            max: secs(c.max_timeout),
            head: size(c.output_head.as_u64()),
            tail: size(c.output_tail.as_u64()),
        }
    }
}

/// Seconds as a model reads them: `60`, `2.5`.
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", (d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

/// `32 KiB`, or bytes when not a whole KiB.
fn size(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// `{"name", "description", "parameters"}` with an object schema over `properties`.
fn tool(name: &str, description: String, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        },
    })
}

/// What every tool that prints says about its output.
fn output_note(told: &Told) -> String {
    format!(
        "stdout and stderr are each capped (the first {} and the last {} are kept) and the \
         middle is replaced by a line counting the bytes dropped",
        told.head, told.tail
    )
}

fn timeout_property(default: &str, told: &Told) -> Value {
    json!({
        "type": "number",
        "exclusiveMinimum": 0,
        "description": format!(
            "Seconds before the command is killed (default {default}, at most {}). \
             On timeout everything it started is killed.",
            told.max
        ),
    })
}

fn shell(told: &Told) -> Value {
    let secs = &told.shell;
    tool(
        "shell",
        format!(
            "Run a command with `bash -c` as an unprivileged user in the sandbox, in the current \
             working directory under /workspace (your files). There is no network. Times out \
             after {secs} s unless `timeout` says otherwise. The result shows [stdout], [stderr] \
             (each only when non-empty) and [exit N]; {}.",
            output_note(told)
        ),
        json!({
            "command": prop("string", "The bash command line to run."),
            "timeout": timeout_property(secs, told),
        }),
        &["command"],
    )
}

fn run_python(told: &Told) -> Value {
    let secs = &told.python;
    tool(
        "run_python",
        format!(
            "Run a Python 3 program in the sandbox as an unprivileged user, in the current \
             working directory under /workspace, with /sandbox and /workspace on PYTHONPATH \
             (so `from skills.NAME import ...` works). There is no network. Times out after \
             {secs} s unless `timeout` says otherwise. The result shows [stdout], [stderr] \
             (each only when non-empty) and [exit N]; {}.",
            output_note(told)
        ),
        json!({
            "code": prop("string", "The Python source to run."),
            "timeout": timeout_property(secs, told),
        }),
        &["code"],
    )
}

/// The note every file tool carries: where paths resolve and how long it may take.
fn file_note(told: &Told) -> String {
    format!(
        "Relative paths resolve against the current working directory. Times out after {} s.",
        told.file
    )
}

/// `{"type": ty, "description": description}`.
fn prop(ty: &str, description: &str) -> Value {
    json!({"type": ty, "description": description})
}

/// A string the runner refuses when empty.
fn non_empty_string(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "description": description})
}

/// An integer of at least `minimum`.
fn integer(minimum: u64, description: &str) -> Value {
    json!({"type": "integer", "minimum": minimum, "description": description})
}

fn read(told: &Told) -> Value {
    tool(
        "read",
        format!(
            "Read a text file, with line numbers like `cat -n`. Shows up to 2000 lines from \
             `offset` (lines over 2000 characters are cut, the whole answer is capped at \
             256 KiB) and says how to continue. Binary files are refused. {}",
            file_note(told)
        ),
        json!({
            "path": prop("string", "The file to read."),
            "offset": integer(1, "First line to show (1-based, default 1)."),
            "limit": integer(1, "Number of lines to show (default 2000)."),
        }),
        &["path"],
    )
}

fn write(told: &Told) -> Value {
    tool(
        "write",
        format!(
            "Create a file or replace its whole content, atomically, creating missing parent \
             directories. Refused when it would exceed the disk quota. {}",
            file_note(told)
        ),
        json!({
            "path": prop("string", "The file to write."),
            "content": prop("string", "The complete new content (may be empty)."),
        }),
        &["path", "content"],
    )
}

fn edit(told: &Told) -> Value {
    tool(
        "edit",
        format!(
            "Replace an exact string in a UTF-8 text file. `old_string` must occur exactly once \
             unless `replace_all` is true. Refused when it would exceed the disk quota. {}",
            file_note(told)
        ),
        json!({
            "path": prop("string", "The file to edit."),
            "old_string": non_empty_string("The exact text to replace, including whitespace."),
            "new_string": prop("string", "The replacement (must differ from old_string)."),
            "replace_all": prop("boolean", "Replace every occurrence (default false)."),
        }),
        &["path", "old_string", "new_string"],
    )
}

fn glob(told: &Told) -> Value {
    tool(
        "glob",
        format!(
            "List files whose path relative to `path` matches a glob pattern (`*` stays within \
             one directory, `**` crosses directories), newest first, at most 1000. Hidden files \
             are included; `.git` is skipped. {}",
            file_note(told)
        ),
        json!({
            "pattern": non_empty_string("Glob pattern, relative to path, e.g. `**/*.py`."),
            "path": prop("string", "Directory to search (default: the current working directory)."),
        }),
        &["pattern"],
    )
}

fn grep(told: &Told) -> Value {
    let secs = &told.file;
    tool(
        "grep",
        format!(
            "Search file contents with a regular expression (Rust regex syntax, like ripgrep), \
             honouring .gitignore and skipping hidden and binary files. Relative paths resolve \
             against the current working directory. Stops after `timeout` seconds \
             (default {secs}) and returns what it found so far, marked incomplete."
        ),
        json!({
            "pattern": non_empty_string("The regular expression."),
            "path": prop(
                "string",
                "File or directory to search (default: the current working directory).",
            ),
            "glob": prop(
                "string",
                "Only search files matching this glob, e.g. `*.rs` (overrides ignore rules).",
            ),
            "case_insensitive": prop("boolean", "Ignore case (default false)."),
            "context": integer(
                0,
                "Lines of context around each match, in content mode (default 0).",
            ),
            "output_mode": {
                "type": "string",
                "enum": ["content", "files_with_matches", "count"],
                "description": "content: matching lines as path:LINE:text; \
                    files_with_matches: paths only (default); count: path:N per file.",
            },
            "head_limit": integer(1, "Most entries (lines or files) shown (default 250)."),
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": format!(
                    "Seconds the search may take (default {secs}, at most {}).",
                    told.max
                ),
            },
            "multiline": prop(
                "boolean",
                "Let matches span lines; `.` then matches newlines too (default false).",
            ),
        }),
        &["pattern"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_is_a_closed_object_whose_required_names_exist() {
        let schemas = sandbox_tool_schemas(&ToolsConfig::default());
        let names: Vec<&str> = schemas.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, SANDBOX_TOOLS);
        assert_eq!(SANDBOX_TOOLS, Tool::ALL.map(Tool::name));
        for schema in &schemas {
            let name = &schema["name"];
            assert!(
                schema["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{name}"
            );
            let params = &schema["parameters"];
            assert_eq!(params["type"], "object", "{name}");
            assert_eq!(params["additionalProperties"], false, "{name}");
            let props = params["properties"].as_object().expect("properties");
            let required = params["required"].as_array().expect("required");
            assert!(!required.is_empty(), "{name}");
            for key in required {
                let key = key.as_str().expect("required names are strings");
                assert!(props.contains_key(key), "{name}: {key} not in properties");
            }
            for (key, prop) in props {
                assert!(prop["type"].is_string(), "{name}.{key} has a type");
                assert!(prop["description"].is_string(), "{name}.{key} is described");
            }
        }
    }

    #[test]
    fn routing_knows_the_seven_sandbox_tools() {
        for name in SANDBOX_TOOLS {
            assert!(is_sandbox_tool(name));
        }
        for name in ["load_skill", "web_search", "Shell", ""] {
            assert!(!is_sandbox_tool(name));
        }
    }

    #[test]
    fn schemas_snapshot() {
        insta::assert_json_snapshot!(sandbox_tool_schemas(&ToolsConfig::default()));
    }

    #[test]
    fn schemas_state_the_configured_defaults() {
        let config = ToolsConfig {
            shell_timeout: Duration::from_secs(10),
            python_timeout: Duration::from_millis(2500),
            file_timeout: Duration::from_secs(900),
            max_timeout: Duration::from_secs(300),
            output_head: bytesize::ByteSize::kib(8),
            output_tail: bytesize::ByteSize::b(100),
            ..ToolsConfig::default()
        };
        let schemas = sandbox_tool_schemas(&config);
        let text = |i: usize, path: &[&str]| {
            let mut v = &schemas[i];
            for key in path {
                v = &v[*key];
            }
            v.as_str().expect("a string").to_owned()
        };
        let shell = text(0, &["description"]);
        assert!(shell.contains("Times out after 10 s"), "{shell}");
        assert!(
            shell.contains("the first 8 KiB and the last 100 bytes"),
            "{shell}"
        );
        let timeout = text(0, &["parameters", "properties", "timeout", "description"]);
        assert!(timeout.contains("(default 10, at most 300)"), "{timeout}");
        assert!(text(1, &["description"]).contains("after 2.5 s"));
        // Over the cap, the file default is the cap.
        assert!(text(2, &["description"]).contains("Times out after 300 s."));
        let grep = text(6, &["parameters", "properties", "timeout", "description"]);
        assert!(grep.contains("(default 300, at most 300)"), "{grep}");
    }
}
