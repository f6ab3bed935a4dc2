//! The optional TOML configuration file: `--config FILE` (or `XMODAL_CONFIG`). Keys are the
//! flags' names (`max_batch = 64` or `max-batch = 64`); tables flatten into prefixes
//! (`[index]` `m = 32` is `--index-m`); arrays are lists (`heads = ["zero-shot", "DIR"]`).
//!
//! The file fills the matching `XMODAL_*` variables that are not already set, before clap parses:
//! precedence is flag > environment > file > default, and one mechanism (clap's `env`) does the
//! work, so a key can never mean something different from its flag.

use std::{collections::BTreeMap, ffi::OsString, path::PathBuf};

use anyhow::Context;

/// Where the file is: `--config FILE` / `--config=FILE` on the command line, else the variable.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("XMODAL_CONFIG").map(PathBuf::from)
}

/// Every `XMODAL_*` variable some flag of some subcommand reads.
fn known_variables(command: &clap::Command, out: &mut BTreeMap<String, ()>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            out.insert(env.to_string_lossy().into_owned(), ());
        }
    }
    for sub in command.get_subcommands() {
        known_variables(sub, out);
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.replace('-', "_")
        } else {
            format!("{prefix}_{}", key.replace('-', "_"))
        };
        let text = match value {
            toml::Value::Table(t) => {
                flatten(&name, t, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    toml::Value::Float(f) => Ok(f.to_string()),
                    other => anyhow::bail!(
                        "{name}: list items must be strings or numbers, not {}",
                        other.type_str()
                    ),
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            toml::Value::Datetime(d) => d.to_string(),
        };
        out.push((name, text));
    }
    Ok(())
}

/// Read the configuration file, if one is named, into the environment clap reads.
pub fn apply(command: &clap::Command, args: &[OsString]) -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = config_path(args) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut known = BTreeMap::new();
    known_variables(command, &mut known);
    let mut pairs = Vec::new();
    flatten("", &table, &mut pairs)?;
    for (key, value) in pairs {
        let var = format!("XMODAL_{}", key.to_uppercase());
        anyhow::ensure!(
            var != "XMODAL_CONFIG" && known.contains_key(&var),
            "{}: unknown key {key:?} (keys are flag names, e.g. max_batch, index_ef_search, heads)",
            path.display()
        );
        if std::env::var_os(&var).is_none() {
            // single-threaded: this runs in main before any runtime or thread starts
            std::env::set_var(&var, value);
        }
    }
    Ok(Some(path))
}
