//! `riskwatch rules check FILE [--registry REG]`: a rules file checked on its own, or bound to
//! the sensors it will run on; every problem listed as `FILE:LINE: field: message`, non-zero
//! exit if there is any.
//!
//! Without a registry the kinds are checked against the built-in kinds (a kind a registry
//! declares under `[kinds]` needs `--registry`), and literal thresholds must be in level
//! order; thresholds that name sensor attributes are checked only with `--registry`.

use crate::settings::load_registry;
use anyhow::{bail, Context, Result};
use riskwatch_core::{KindCatalog, Problem};
use riskwatch_rules::{Engine, RuleError, RuleSet};
use std::path::Path;

/// Checks `file`, against `registry` if given.
pub fn rules_check(file: &Path, registry: Option<&Path>) -> Result<()> {
    let name = file.display().to_string();
    let registry = registry.map(load_registry).transpose()?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading rules {name}"))?;
    let builtin = KindCatalog::default();
    let catalog = registry.as_ref().map_or(&builtin, |r| r.catalog());
    let rules = match RuleSet::from_toml_for(&text, catalog) {
        Ok(rules) => rules,
        Err(RuleError::File(problems)) => {
            print_problems(&name, &problems);
            if registry.is_none() && problems.iter().any(|p| p.field.ends_with(".applies_to.kind")) {
                eprintln!(
                    "note: without --registry only the built-in kinds are known; a kind declared in a registry's \
                     [kinds] table is checked with --registry"
                );
            }
            bail!("{name}: {} problem(s)", problems.len());
        }
        Err(e) => bail!("{name}: {e}"),
    };
    let Some(registry) = registry.as_ref() else {
        println!("{name}: {} rule(s): OK", rules.rules.len());
        let attrs = rules.attribute_thresholds();
        if attrs > 0 {
            println!(
                "note: {attrs} threshold(s) name sensor attributes; their values and order are checked only with --registry"
            );
        }
        return Ok(());
    };
    let problems = rules.problems_against(registry);
    if !problems.is_empty() {
        print_problems(&name, &problems);
        bail!("{name}: {} problem(s) against the registry", problems.len());
    }
    for w in rules.warnings_against(registry) {
        println!("warning: {}", w.render(&name));
    }
    let engine = Engine::new(&rules, registry).with_context(|| format!("{name} against the registry"))?;
    println!(
        "{name}: {} rule(s), {} quality table(s), {} composite(s), {} sensor binding(s): OK",
        rules.rules.len(),
        rules.quality.len(),
        rules.composites.len(),
        engine.binding_count()
    );
    Ok(())
}

fn print_problems(file: &str, problems: &[Problem]) {
    for p in problems {
        eprintln!("{}", p.render(file));
    }
}
