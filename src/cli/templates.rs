//! `switchyard templates …`: prompt templates in the database (list, set, show,
//! remove). Each is checked as the API checks it (kind, size, syntax). Runtimes read a
//! change within 2 s.

use std::process::ExitCode;

use clap::Subcommand;
use switchyard_runtime::{
    store::Store,
    templates::{check, valid_name},
};

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// List the templates.
    List,
    /// Create or replace a template.
    Set {
        /// Its name.
        name: String,
        /// `text` (renders the system prompt) or `image` (renders the prompt).
        #[arg(long)]
        kind: String,
        /// The template text (Jinja syntax).
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
        /// Read the template text from FILE (`-`: standard input).
        #[arg(long)]
        file: Option<String>,
        /// Store it disabled (requests naming it are refused).
        #[arg(long)]
        disabled: bool,
    },
    /// Print a template's text.
    Show {
        /// Its name.
        name: String,
    },
    /// Remove a template.
    Remove {
        /// Its name.
        name: String,
    },
}

fn read_text(text: Option<String>, file: Option<String>) -> anyhow::Result<String> {
    match (text, file) {
        (Some(text), _) => Ok(text),
        (None, Some(path)) if path == "-" => Ok(std::io::read_to_string(std::io::stdin())?),
        (None, Some(path)) => Ok(std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?),
        (None, None) => anyhow::bail!("give the template with --text or --file"),
    }
}

/// `templates …` against the database.
pub async fn run(store: &Store, command: TemplatesCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplatesCommand::List => {
            for t in store.templates().await? {
                let state = if t.enabled { "" } else { " (disabled)" };
                println!(
                    "{:<24} {:<6} {} bytes{state}",
                    t.name,
                    t.kind,
                    t.template.len()
                );
            }
        }
        TemplatesCommand::Set {
            name,
            kind,
            text,
            file,
            disabled,
        } => {
            anyhow::ensure!(
                valid_name(&name),
                "a template's name is 1 to 100 letters, digits, '-', '_' or '.'"
            );
            let text = read_text(text, file)?;
            check(&kind, &text).map_err(|e| anyhow::anyhow!("--{e}"))?;
            let stored = store.put_template(&name, &kind, &text, !disabled).await?;
            println!("template {} ({}) stored", stored.name, stored.kind);
        }
        TemplatesCommand::Show { name } => {
            let template = store
                .template(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no template '{name}'"))?;
            println!("{}", template.template);
        }
        TemplatesCommand::Remove { name } => {
            anyhow::ensure!(store.delete_template(&name).await?, "no template '{name}'");
            println!("template {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
