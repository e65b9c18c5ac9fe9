//! `tools add|remove|list`: edits `tools.wrap` in the config text, keeping comments and layout (pure, no I/O).

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use toml_edit::{Array, DocumentMut, Value};

use crate::config::{is_valid_tool, tool_command_name, Config};
use crate::paths;

/// The result of an edit: the new text, validated, or that nothing had to change.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit {
    Changed(String),
    Unchanged,
}

/// One allowed tool, as `tools list` shows it.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ToolEntry {
    /// As written in tools.wrap: a command name or an absolute path.
    pub tool: String,
    /// What operators type: the wrapper's name.
    pub command: String,
    pub wrapper: String,
}

pub fn list(config: &Config) -> Vec<ToolEntry> {
    config
        .tools
        .wrap
        .iter()
        .map(|tool| ToolEntry {
            tool: tool.clone(),
            command: tool_command_name(tool).to_string(),
            wrapper: format!("{}/{}", paths::WRAPPER_DIR, tool_command_name(tool)),
        })
        .collect()
}

fn wrap_array<'a>(doc: &'a mut DocumentMut, source: &str) -> Result<&'a mut Array> {
    doc.get_mut("tools")
        .and_then(|tools| tools.get_mut("wrap"))
        .and_then(|wrap| wrap.as_array_mut())
        .ok_or_else(|| anyhow!("{source}: `tools.wrap` is missing or not an array"))
}

fn parse(text: &str, source: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>()
        .with_context(|| format!("{source} is not valid TOML"))
}

/// The new text, checked by the same strict parser every other command uses.
fn validated(doc: DocumentMut, source: &str) -> Result<Edit> {
    let text = doc.to_string();
    Config::parse(&text, source)?;
    Ok(Edit::Changed(text))
}

/// Add `tool` to `tools.wrap` (a command name, or an absolute path).
pub fn add(text: &str, tool: &str, source: &str) -> Result<Edit> {
    if !is_valid_tool(tool) {
        bail!(
            "{tool:?} is not a valid tool: use a command name of letters, digits, `.`, `_`, `+` \
             or `-` (not starting with `-` or `.`), or an absolute path"
        );
    }
    let mut doc = parse(text, source)?;
    let wrap = wrap_array(&mut doc, source)?;
    if wrap.iter().any(|value| value.as_str() == Some(tool)) {
        return Ok(Edit::Unchanged);
    }
    // One entry per line (the shipped layout): lay the new one out like the last one.
    let multi_line = wrap.iter().last().and_then(|last| {
        let decor = last.decor();
        let prefix = decor.prefix().and_then(|p| p.as_str())?;
        prefix.contains('\n').then(|| {
            (
                prefix.to_string(),
                decor
                    .suffix()
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_string(),
            )
        })
    });
    match multi_line {
        Some((prefix, suffix)) => {
            let mut value = Value::from(tool);
            value.decor_mut().set_prefix(prefix);
            value.decor_mut().set_suffix(suffix);
            wrap.push_formatted(value);
        }
        None => wrap.push(tool),
    }
    validated(doc, source)
}

/// Remove `tool` from `tools.wrap`: an exact entry, or the entry whose wrapper has that name.
pub fn remove(text: &str, tool: &str, source: &str) -> Result<Edit> {
    let mut doc = parse(text, source)?;
    let wrap = wrap_array(&mut doc, source)?;
    let Some(index) = wrap
        .iter()
        .position(|value| value.as_str() == Some(tool))
        .or_else(|| {
            wrap.iter().position(|value| {
                value
                    .as_str()
                    .is_some_and(|entry| entry.starts_with('/') && tool_command_name(entry) == tool)
            })
        })
    else {
        return Ok(Edit::Unchanged);
    };
    let was_first_with_more = index == 0 && wrap.len() > 1;
    let first_prefix = wrap
        .get(0)
        .and_then(|v| v.decor().prefix())
        .and_then(|p| p.as_str())
        .map(str::to_string);
    wrap.remove(index);
    if was_first_with_more {
        if let (Some(prefix), Some(first)) = (first_prefix, wrap.get_mut(0)) {
            first.decor_mut().set_prefix(prefix);
        }
    }
    if wrap.is_empty() {
        wrap.set_trailing("");
        wrap.set_trailing_comma(false);
    }
    validated(doc, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG_TOML;

    fn changed(edit: Edit) -> String {
        match edit {
            Edit::Changed(text) => text,
            Edit::Unchanged => panic!("expected a change"),
        }
    }

    #[test]
    fn add_keeps_comments_and_one_entry_per_line() {
        let text = changed(add(DEFAULT_CONFIG_TOML, "aider", "t").unwrap());
        assert!(text.contains(
            "wrap = [\n    \"claude\",\n    \"codex\",\n    \"gemini\",\n    \"aider\",\n]\n"
        ));
        let expected =
            DEFAULT_CONFIG_TOML.replace("    \"gemini\",\n]", "    \"gemini\",\n    \"aider\",\n]");
        assert_eq!(text, expected, "only the list changed");
        let config = Config::parse(&text, "t").unwrap();
        assert_eq!(config.tools.wrap, ["claude", "codex", "gemini", "aider"]);
    }

    #[test]
    fn add_is_idempotent_and_validated() {
        assert_eq!(
            add(DEFAULT_CONFIG_TOML, "claude", "t").unwrap(),
            Edit::Unchanged
        );
        assert!(add(DEFAULT_CONFIG_TOML, "../x", "t").is_err());
        assert!(add(DEFAULT_CONFIG_TOML, "a b", "t").is_err());
        // A second tool whose wrapper would also be called claude.
        let err = add(DEFAULT_CONFIG_TOML, "/opt/bin/claude", "t").unwrap_err();
        assert!(format!("{err:#}").contains("listed twice"), "{err:#}");
        assert!(add(DEFAULT_CONFIG_TOML, "cc-launch", "t").is_err());
        let text = changed(add(DEFAULT_CONFIG_TOML, "/opt/aider/bin/aider", "t").unwrap());
        assert!(text.contains("    \"/opt/aider/bin/aider\",\n]"));
    }

    #[test]
    fn add_to_an_inline_or_empty_list() {
        let inline = DEFAULT_CONFIG_TOML.replace(
            "wrap = [\n    \"claude\",\n    \"codex\",\n    \"gemini\",\n]",
            "wrap = [\"claude\"]",
        );
        let text = changed(add(&inline, "codex", "t").unwrap());
        assert!(text.contains("wrap = [\"claude\", \"codex\"]\n"), "{text}");
        let empty = inline.replace("wrap = [\"claude\"]", "wrap = []");
        let text = changed(add(&empty, "codex", "t").unwrap());
        assert!(text.contains("wrap = [\"codex\"]\n"), "{text}");
    }

    #[test]
    fn remove_keeps_layout() {
        let text = changed(remove(DEFAULT_CONFIG_TOML, "codex", "t").unwrap());
        assert_eq!(
            text,
            DEFAULT_CONFIG_TOML.replace("    \"codex\",\n", ""),
            "only the entry went"
        );
        let text = changed(remove(DEFAULT_CONFIG_TOML, "claude", "t").unwrap());
        assert!(
            text.contains("wrap = [\n    \"codex\",\n    \"gemini\",\n]\n"),
            "{text}"
        );
        assert_eq!(
            remove(DEFAULT_CONFIG_TOML, "aider", "t").unwrap(),
            Edit::Unchanged
        );
        let mut text = DEFAULT_CONFIG_TOML.to_string();
        for tool in ["claude", "codex", "gemini"] {
            text = changed(remove(&text, tool, "t").unwrap());
        }
        assert!(Config::parse(&text, "t").unwrap().tools.wrap.is_empty());
        assert!(text.contains("wrap = []\n"), "{text}");
    }

    #[test]
    fn remove_by_wrapper_name_of_an_absolute_entry() {
        let text = changed(add(DEFAULT_CONFIG_TOML, "/opt/aider/bin/aider", "t").unwrap());
        let text = changed(remove(&text, "aider", "t").unwrap());
        assert_eq!(text, DEFAULT_CONFIG_TOML);
    }

    #[test]
    fn list_names_wrappers() {
        let mut config = Config::defaults();
        config.tools.wrap = vec!["claude".into(), "/opt/aider/bin/aider".into()];
        let entries = list(&config);
        assert_eq!(entries[1].command, "aider");
        assert_eq!(
            entries[1].wrapper,
            "/var/lib/pipelock-containment/wrappers/aider"
        );
    }
}
