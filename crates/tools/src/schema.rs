//! Which tools run in the sandbox, and their JSON schemas for the model.
//!
//! The argument names here are exactly the ones the host checks ([`crate::args`]) and the
//! in-container runner accepts (`sandbox-runner`'s `tools` module); the descriptions state the
//! defaults and limits that those two enforce, so the model can plan around them.

use serde_json::{Value, json};

use crate::args::{
    DEFAULT_FILE_TIMEOUT, DEFAULT_PYTHON_TIMEOUT, DEFAULT_SHELL_TIMEOUT, MAX_TIMEOUT,
};

/// The tools that run inside the user's container; every other tool runs on the host.
pub const SANDBOX_TOOLS: [&str; 7] = [
    "shell",
    "run_python",
    "read",
    "write",
    "edit",
    "glob",
    "grep",
];

/// Whether `name` is one of [`SANDBOX_TOOLS`].
pub fn is_sandbox_tool(name: &str) -> bool {
    SANDBOX_TOOLS.contains(&name)
}

/// One schema per sandbox tool, in the order of [`SANDBOX_TOOLS`]:
/// `{"name", "description", "parameters"}`, where `parameters` is a JSON Schema object that
/// lists every argument and allows no others.
pub fn sandbox_tool_schemas() -> Vec<Value> {
    vec![
        shell(),
        run_python(),
        read(),
        write(),
        edit(),
        glob(),
        grep(),
    ]
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
fn output_note() -> String {
    let head = crate::config::DEFAULT_OUTPUT_HEAD.as_u64() / 1024;
    let tail = crate::config::DEFAULT_OUTPUT_TAIL.as_u64() / 1024;
    format!(
        "stdout and stderr are each capped (by default the first {head} KiB and the last \
         {tail} KiB are kept) and the middle is replaced by a line counting the bytes dropped"
    )
}

fn timeout_property(default_secs: u64) -> Value {
    json!({
        "type": "number",
        "exclusiveMinimum": 0,
        "description": format!(
            "Seconds before the command is killed (default {default_secs}, at most {}). \
             On timeout everything it started is killed.",
            MAX_TIMEOUT.as_secs()
        ),
    })
}

fn shell() -> Value {
    let secs = DEFAULT_SHELL_TIMEOUT.as_secs();
    tool(
        "shell",
        format!(
            "Run a command with `bash -c` as an unprivileged user in the sandbox, in the current \
             working directory under /workspace (your files). There is no network. Times out \
             after {secs} s unless `timeout` says otherwise. The result shows [stdout], [stderr] \
             (each only when non-empty) and [exit N]; {}.",
            output_note()
        ),
        json!({
            "command": prop("string", "The bash command line to run."),
            "timeout": timeout_property(secs),
        }),
        &["command"],
    )
}

fn run_python() -> Value {
    let secs = DEFAULT_PYTHON_TIMEOUT.as_secs();
    tool(
        "run_python",
        format!(
            "Run a Python 3 program in the sandbox as an unprivileged user, in the current \
             working directory under /workspace, with /sandbox and /workspace on PYTHONPATH \
             (so `from skills.NAME import ...` works). There is no network. Times out after \
             {secs} s unless `timeout` says otherwise. The result shows [stdout], [stderr] \
             (each only when non-empty) and [exit N]; {}.",
            output_note()
        ),
        json!({
            "code": prop("string", "The Python source to run."),
            "timeout": timeout_property(secs),
        }),
        &["code"],
    )
}

/// The note every file tool carries: where paths resolve and how long it may take.
fn file_note() -> String {
    format!(
        "Relative paths resolve against the current working directory. Times out after {} s.",
        DEFAULT_FILE_TIMEOUT.as_secs()
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

fn read() -> Value {
    tool(
        "read",
        format!(
            "Read a text file, with line numbers like `cat -n`. Shows up to 2000 lines from \
             `offset` (lines over 2000 characters are cut, the whole answer is capped at \
             256 KiB) and says how to continue. Binary files are refused. {}",
            file_note()
        ),
        json!({
            "path": prop("string", "The file to read."),
            "offset": integer(1, "First line to show (1-based, default 1)."),
            "limit": integer(1, "Number of lines to show (default 2000)."),
        }),
        &["path"],
    )
}

fn write() -> Value {
    tool(
        "write",
        format!(
            "Create a file or replace its whole content, atomically, creating missing parent \
             directories. Refused when it would exceed the disk quota. {}",
            file_note()
        ),
        json!({
            "path": prop("string", "The file to write."),
            "content": prop("string", "The complete new content (may be empty)."),
        }),
        &["path", "content"],
    )
}

fn edit() -> Value {
    tool(
        "edit",
        format!(
            "Replace an exact string in a UTF-8 text file. `old_string` must occur exactly once \
             unless `replace_all` is true. Refused when it would exceed the disk quota. {}",
            file_note()
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

fn glob() -> Value {
    tool(
        "glob",
        format!(
            "List files whose path relative to `path` matches a glob pattern (`*` stays within \
             one directory, `**` crosses directories), newest first, at most 1000. Hidden files \
             are included; `.git` is skipped. {}",
            file_note()
        ),
        json!({
            "pattern": non_empty_string("Glob pattern, relative to path, e.g. `**/*.py`."),
            "path": prop("string", "Directory to search (default: the current working directory)."),
        }),
        &["pattern"],
    )
}

fn grep() -> Value {
    let secs = DEFAULT_FILE_TIMEOUT.as_secs();
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
                    MAX_TIMEOUT.as_secs()
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
        let schemas = sandbox_tool_schemas();
        let names: Vec<&str> = schemas.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, SANDBOX_TOOLS);
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
        insta::assert_json_snapshot!(sandbox_tool_schemas());
    }
}
