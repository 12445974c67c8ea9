//! Applying `adjust` rules to a tree for a context, mirroring fmf's `Tree.adjust` with tmt's
//! choices: undecided rules are skipped.

use crate::merge::merge_special;
use crate::rule::{Decision, Rule};
use crate::tree::{merge_error, Node, Tree};
use crate::{Context, FmfError};
use serde_yaml_ng::{Mapping, Value};

/// The keys of a rule that control it rather than being merged into the node.
const CONTROL_KEYS: [&str; 3] = ["because", "continue", "when"];

impl Tree {
    /// Applies every node's `adjust` rules for `context`. Each node's rules are its own
    /// `adjust` key after inheritance (a mapping or a list of mappings). A rule applies when its
    /// `when` condition holds (a rule without `when` always applies); its other keys, except
    /// `because` and `continue`, are then merged into the node with the usual suffixes. A rule
    /// whose condition is undecided is skipped, and an applied rule with `continue: false` ends
    /// the node's list.
    pub fn adjust(&mut self, context: &Context) -> Result<(), FmfError> {
        for node in self.nodes_mut() {
            adjust_node(node, context)?;
        }
        Ok(())
    }

    /// A copy of the tree with [`Tree::adjust`] applied.
    pub fn adjusted(&self, context: &Context) -> Result<Tree, FmfError> {
        let mut tree = self.clone();
        tree.adjust(context)?;
        Ok(tree)
    }
}

fn adjust_node(node: &mut Node, context: &Context) -> Result<(), FmfError> {
    let rules = match node.get("adjust") {
        None => return Ok(()),
        Some(Value::Mapping(rule)) => vec![Value::Mapping(rule.clone())],
        Some(Value::Sequence(rules)) => rules.clone(),
        Some(other) => {
            return Err(adjust_error(
                node,
                format!(
                    "`adjust` must be a mapping or a list of mappings, found {}",
                    crate::yaml::kind(other)
                ),
            ))
        }
    };
    for rule in &rules {
        let Value::Mapping(rule) = rule else {
            return Err(adjust_error(node, "each rule must be a mapping".to_owned()));
        };
        let keep_going = continues(node, rule)?;
        if decide(node, rule, context)? != Decision::Yes {
            continue;
        }
        let changes: Mapping = rule
            .iter()
            .filter(|(key, _)| !key.as_str().is_some_and(|key| CONTROL_KEYS.contains(&key)))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let name = node.name().to_owned();
        let file = node.sources().last().cloned();
        merge_special(node.data_mut(), &changes)
            .map_err(|problem| merge_error(&name, file.as_ref(), problem))?;
        if !keep_going {
            break;
        }
    }
    Ok(())
}

fn continues(node: &Node, rule: &Mapping) -> Result<bool, FmfError> {
    match rule.get("continue") {
        None => Ok(true),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(other) => Err(adjust_error(
            node,
            format!(
                "`continue` must be a boolean, found {}",
                crate::python::repr(other)
            ),
        )),
    }
}

fn decide(node: &Node, rule: &Mapping, context: &Context) -> Result<Decision, FmfError> {
    let (expression, parsed) = match rule.get("when") {
        None => return Ok(Decision::Yes),
        Some(Value::Bool(true)) => return Ok(Decision::Yes),
        Some(Value::Bool(false)) => return Ok(Decision::No),
        Some(Value::String(text)) => (text, Rule::parse(text)),
        Some(other) => {
            return Err(adjust_error(
                node,
                format!(
                    "`when` must be a string or a boolean, found {}",
                    crate::yaml::kind(other)
                ),
            ))
        }
    };
    parsed
        .and_then(|rule| rule.evaluate(context))
        .map_err(|source| FmfError::Condition {
            node: node.name().to_owned(),
            file: node.sources().last().cloned(),
            expression: expression.clone(),
            source,
        })
}

fn adjust_error(node: &Node, problem: String) -> FmfError {
    FmfError::Adjust {
        node: node.name().to_owned(),
        file: node.sources().last().cloned(),
        problem,
    }
}
