//! `proctor recipe …`: named scripts stored on the server, started as jobs with options.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};

use proctor_api::{NewRecipe, StartRecipe};

use crate::cli::RecipeCommand;
use crate::client::{after_start, connect, print_json, print_listing};
use crate::error::CliError;
use crate::exit;

/// Runs one `proctor recipe` command.
pub fn run(command: RecipeCommand) -> Result<u8, CliError> {
    match command {
        RecipeCommand::Add {
            name,
            file,
            queue,
            options,
            remote,
        } => {
            let script = fs::read_to_string(&file).map_err(|source| CliError::Input {
                path: file.clone(),
                source,
            })?;
            let recipe = NewRecipe {
                queue,
                script,
                options: options.into_iter().collect(),
            };
            let stored = connect(&remote)?.put_recipe(&name, &recipe)?;
            println!("stored recipe {} for queue {}", stored.name, stored.queue);
            Ok(exit::OK)
        }
        RecipeCommand::List { json, remote } => {
            let recipes = connect(&remote)?.recipes()?;
            let header = format!("{:<24}  {:<16}  OPTIONS", "RECIPE", "QUEUE");
            print_listing(&recipes, json, &header, |recipe| {
                let options = options_text(&recipe.options);
                format!("{:<24}  {:<16}  {options}", recipe.name, recipe.queue)
            })
        }
        RecipeCommand::Show { name, json, remote } => {
            let recipe = connect(&remote)?.recipe(&name)?;
            if json {
                print_json(&recipe)?;
                return Ok(exit::OK);
            }
            let mut out = io::stdout().lock();
            writeln!(out, "recipe   {}", recipe.name)?;
            writeln!(out, "queue    {}", recipe.queue)?;
            writeln!(out, "options  {}", options_text(&recipe.options))?;
            writeln!(out, "\n{}", recipe.script.trim_end())?;
            out.flush()?;
            Ok(exit::OK)
        }
        RecipeCommand::Remove { name, remote } => {
            connect(&remote)?.remove_recipe(&name)?;
            println!("removed recipe {name}");
            Ok(exit::OK)
        }
        RecipeCommand::Start {
            name,
            options,
            follow,
            remote,
        } => {
            let client = connect(&remote)?;
            let start = StartRecipe {
                options: options.into_iter().collect(),
            };
            let job = client.start_recipe(&name, &start)?;
            after_start(&client, job, &follow)
        }
    }
}

/// Options as the script sees them: `--key value …`.
fn options_text(options: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = options
        .iter()
        .map(|(key, value)| format!("--{key} {value}"))
        .collect();
    parts.join(" ")
}
