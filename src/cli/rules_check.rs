//! `riskwatch rules check FILE [--registry REG]`: a rules file checked on its own, or bound to
//! the sensors it will run on; every problem listed, non-zero exit if there is any.

use crate::settings::{load_registry, load_rules};
use anyhow::{Context, Result};
use riskwatch_rules::Engine;
use std::path::Path;

/// Checks `file`, against `registry` if given.
pub fn rules_check(file: &Path, registry: Option<&Path>) -> Result<()> {
    let rules = load_rules(file)?;
    if let Some(reg) = registry {
        let registry = load_registry(reg)?;
        let engine =
            Engine::new(&rules, &registry).with_context(|| format!("{} against {}", file.display(), reg.display()))?;
        for w in rules.warnings_against(&registry) {
            println!("warning: {w}");
        }
        println!(
            "{}: {} rule(s), {} quality table(s), {} composite(s), {} sensor binding(s): OK",
            file.display(),
            rules.rules.len(),
            rules.quality.len(),
            rules.composites.len(),
            engine.binding_count()
        );
    } else {
        println!("{}: {} rule(s): OK", file.display(), rules.rules.len());
    }
    Ok(())
}
