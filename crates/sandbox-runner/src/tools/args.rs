//! Checking and extracting the model's JSON arguments, one place for every tool, so that every
//! tool words its argument errors the same way (`[Error] bad arguments to TOOL: ...`, exit 2).
//!
//! Rules: the arguments are a JSON object; unknown fields are ignored; an optional field that is
//! `null` counts as absent (models often send `null` for "not given"); integers may come as
//! integral floats (`5.0`) but never as strings.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ToolOutput;

/// A tool's arguments, checked field by field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args<'a> {
    tool: &'static str,
    map: &'a Map<String, Value>,
}

/// A path argument: as the model wrote it (for messages and output) and resolved against the
/// working directory (for the file system).
#[derive(Debug, Clone)]
pub(crate) struct PathArg<'a> {
    pub shown: &'a str,
    pub path: PathBuf,
}

type Checked<T> = Result<T, ToolOutput>;

impl<'a> Args<'a> {
    /// Accepts `value` only if it is a JSON object.
    pub(crate) fn new(tool: &'static str, value: &'a Value) -> Checked<Self> {
        match value {
            Value::Object(map) => Ok(Self { tool, map }),
            _ => Err(ToolOutput::bad_args(
                tool,
                "arguments must be a JSON object",
            )),
        }
    }

    fn bad(&self, message: impl std::fmt::Display) -> ToolOutput {
        ToolOutput::bad_args(self.tool, message)
    }

    /// The value under `key`, treating `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// `primary` unless only `alias` is given (for ripgrep-style keys such as `-i`).
    pub(crate) fn pick(&self, primary: &'static str, alias: &'static str) -> &'static str {
        if self.get(primary).is_none() && self.get(alias).is_some() {
            alias
        } else {
            primary
        }
    }

    /// A required string; empty is allowed (file content).
    pub(crate) fn string(&self, key: &str) -> Checked<&'a str> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad(format!("{key} must be a string")))
    }

    /// A required, non-empty string.
    pub(crate) fn non_empty_string(&self, key: &str) -> Checked<&'a str> {
        self.opt_non_empty_string(key)?
            .ok_or_else(|| self.bad(format!("{key} must be a non-empty string")))
    }

    /// An optional string which, when given, must be non-empty.
    pub(crate) fn opt_non_empty_string(&self, key: &str) -> Checked<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err(self.bad(format!("{key} must be a non-empty string"))),
        }
    }

    /// A required path.
    pub(crate) fn path(&self, key: &str, cwd: &Path) -> Checked<PathArg<'a>> {
        self.opt_path(key, cwd)?
            .ok_or_else(|| self.bad(format!("{key} must be a non-empty string")))
    }

    /// An optional path; relative paths resolve against `cwd` (the call's working directory).
    pub(crate) fn opt_path(&self, key: &str, cwd: &Path) -> Checked<Option<PathArg<'a>>> {
        let Some(shown) = self.opt_non_empty_string(key)? else {
            return Ok(None);
        };
        // The kernel would cut the path at the NUL and act on a different file.
        if shown.contains('\0') {
            return Err(self.bad(format!("{key} must not contain a NUL byte")));
        }
        Ok(Some(PathArg {
            shown,
            path: cwd.join(shown),
        }))
    }

    /// An optional integer >= 1.
    pub(crate) fn positive_int(&self, key: &str, default: u64) -> Checked<u64> {
        match self.get(key).map(integer) {
            None => Ok(default),
            Some(Some(n)) if n >= 1 => Ok(n),
            Some(_) => Err(self.bad(format!("{key} must be a positive integer"))),
        }
    }

    /// An optional integer >= 0.
    pub(crate) fn non_negative_int(&self, key: &str, default: u64) -> Checked<u64> {
        match self.get(key).map(integer) {
            None => Ok(default),
            Some(Some(n)) => Ok(n),
            Some(None) => Err(self.bad(format!("{key} must be a non-negative integer"))),
        }
    }

    /// An optional finite number > 0 (seconds, for example).
    pub(crate) fn positive_number(&self, key: &str, default: f64) -> Checked<f64> {
        match self.get(key).map(Value::as_f64) {
            None => Ok(default),
            Some(Some(x)) if x.is_finite() && x > 0.0 => Ok(x),
            Some(_) => Err(self.bad(format!("{key} must be a positive number"))),
        }
    }

    /// An optional boolean.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Checked<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.bad(format!("{key} must be a boolean"))),
        }
    }

    /// An optional string that must be one of `choices`.
    pub(crate) fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Checked<&'static str> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        let given = value.as_str();
        choices
            .iter()
            .copied()
            .find(|c| Some(*c) == given)
            .ok_or_else(|| {
                let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                self.bad(format!("{key} must be one of {}", quoted.join(", ")))
            })
    }
}

/// A JSON number that is a non-negative integer (`5` or `5.0`, not `5.5`, `-1` or `"5"`).
fn integer(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let x = value.as_f64()?;
    // The cast saturates, so 1e30 means "as many as possible", which is what the model meant.
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0).then_some(x as u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn err(result: Checked<impl std::fmt::Debug>) -> String {
        let out = result.expect_err("should be refused");
        assert_eq!(out.code, 2, "{out:?}");
        out.stderr
    }

    #[test]
    fn arguments_must_be_an_object() {
        for value in [json!([1]), json!("x"), json!(null), json!(3)] {
            assert_eq!(
                err(Args::new("read", &value)),
                "[Error] bad arguments to read: arguments must be a JSON object"
            );
        }
    }

    #[test]
    fn strings_and_paths() {
        let v = json!({"path": "a/文件 $(x);.txt", "empty": "", "num": 3, "nul": "a\u{0}b", "none": null});
        let args = Args::new("read", &v).expect("object");
        let cwd = Path::new("/work");
        let p = args.path("path", cwd).expect("path");
        assert_eq!(p.shown, "a/文件 $(x);.txt");
        assert_eq!(p.path, Path::new("/work/a/文件 $(x);.txt"));
        assert_eq!(
            args.path("abs", cwd).map(|p| p.path).ok(),
            None,
            "missing path is an error"
        );
        assert_eq!(args.string("empty").expect("empty is a string"), "");
        assert!(err(args.non_empty_string("empty")).ends_with("empty must be a non-empty string"));
        assert!(err(args.string("num")).ends_with("num must be a string"));
        assert!(err(args.path("nul", cwd)).ends_with("nul must not contain a NUL byte"));
        assert!(err(args.path("none", cwd)).ends_with("none must be a non-empty string"));
        assert_eq!(
            args.opt_path("none", cwd)
                .expect("null is absent")
                .map(|p| p.path),
            None
        );

        let abs = json!({"path": "/etc/hosts"});
        let args = Args::new("read", &abs).expect("object");
        assert_eq!(
            args.path("path", cwd).expect("path").path,
            Path::new("/etc/hosts")
        );
    }

    #[test]
    fn integers_accept_integral_floats_only() {
        let v =
            json!({"a": 5, "b": 5.0, "c": 5.5, "d": -1, "e": "5", "f": 0, "g": true, "h": 1e30});
        let args = Args::new("read", &v).expect("object");
        assert_eq!(args.positive_int("a", 1).expect("int"), 5);
        assert_eq!(args.positive_int("b", 1).expect("float 5.0"), 5);
        assert_eq!(args.positive_int("missing", 7).expect("default"), 7);
        assert_eq!(args.positive_int("h", 1).expect("huge"), u64::MAX);
        for key in ["c", "d", "e", "f", "g"] {
            assert!(
                err(args.positive_int(key, 1))
                    .ends_with(&format!("{key} must be a positive integer"))
            );
        }
        assert_eq!(args.non_negative_int("f", 3).expect("zero"), 0);
        assert!(err(args.non_negative_int("d", 3)).ends_with("d must be a non-negative integer"));
    }

    #[test]
    fn booleans_numbers_choices_and_aliases() {
        let v = json!({"-i": true, "t": 0.5, "z": 0, "m": "count", "bad": "x", "s": "true"});
        let args = Args::new("grep", &v).expect("object");
        let key = args.pick("case_insensitive", "-i");
        assert_eq!(key, "-i");
        assert!(args.bool(key, false).expect("bool"));
        assert_eq!(args.pick("t", "-t"), "t");
        assert!(err(args.bool("s", false)).ends_with("s must be a boolean"));
        assert_eq!(args.positive_number("t", 30.0).expect("number"), 0.5);
        assert!(err(args.positive_number("z", 30.0)).ends_with("z must be a positive number"));
        let modes = ["content", "count"];
        assert_eq!(
            args.choice("m", &modes, "content").expect("choice"),
            "count"
        );
        assert_eq!(
            args.choice("none", &modes, "content").expect("default"),
            "content"
        );
        assert!(
            err(args.choice("bad", &modes, "content"))
                .ends_with("bad must be one of \"content\", \"count\"")
        );
    }
}
