//! `switchyard providers …`: operators' account management against the database.
//! Every write goes through the same validation as the admin API and bumps the
//! config's version.

use std::{io::Read, process::ExitCode};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use switchyard_core::{
    ApiKey, ConfigId, ConfigRef, CostTable, Kind, ProviderConfigDraft, ProviderType,
    RateLimitDraft, Supports,
};
use switchyard_runtime::{
    Store,
    store::{ConfigChange, ConfigWriteError, ProviderFilter, ProviderRecord},
};

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// List provider configs, highest priority first (API keys masked).
    List {
        /// Print PROTOCOL.md §6 objects as a JSON array.
        #[arg(long)]
        json: bool,
        /// Only this provider type.
        #[arg(long)]
        provider: Option<String>,
        /// Only enabled (true) or disabled (false) configs.
        #[arg(long)]
        enabled: Option<bool>,
        /// Only configs serving this kind.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Print one config as a JSON object.
    Show {
        /// Config id or name.
        target: String,
    },
    /// Add a config: from flags, from a §6 JSON object (--from-json), or both (flags win).
    Add {
        #[command(flatten)]
        fields: ProviderFields,
        /// Read a §6 JSON object from FILE, or from standard input with `-`.
        #[arg(long, value_name = "FILE|-")]
        from_json: Option<String>,
    },
    /// Change some fields of a config; the rest stays.
    Update {
        /// Config id or name.
        target: String,
        #[command(flatten)]
        fields: ProviderFields,
        /// Read a (partial) §6 JSON object from FILE, or from standard input with `-`.
        #[arg(long, value_name = "FILE|-")]
        from_json: Option<String>,
    },
    /// Enable a config.
    Enable {
        /// Config id or name.
        target: String,
    },
    /// Disable a config.
    Disable {
        /// Config id or name.
        target: String,
    },
    /// Delete a config.
    Remove {
        /// Config id or name.
        target: String,
    },
    /// Statistics per config over a time range: attempts, success rate, error codes,
    /// latency percentiles, images, cost and feedback (they survive edits).
    Stats(super::stats::StatsArgs),
    /// Set a config's priority (higher is tried first).
    SetPriority {
        /// Config id or name.
        target: String,
        /// The new priority.
        #[arg(allow_negative_numbers = true)]
        priority: i64,
    },
}

/// Flags mirroring the provider config fields of PROTOCOL.md §6.
#[derive(Debug, Args, Default)]
pub struct ProviderFields {
    /// Unique name, e.g. stability-main.
    #[arg(long)]
    name: Option<String>,
    /// Provider type: openai, anthropic, gemini, stability, ideogram, aliyun, seedream,
    /// openai_compatible, mock, wasm.
    #[arg(long)]
    provider: Option<String>,
    /// Kinds served, comma separated (default: all the type can do).
    #[arg(long, value_delimiter = ',')]
    kinds: Option<Vec<String>>,
    /// Model name.
    #[arg(long)]
    model: Option<String>,
    /// API base URL.
    #[arg(long)]
    base_url: Option<String>,
    /// API key (prefer --api-key-env: a key on the command line lands in shell history).
    #[arg(long, conflicts_with = "api_key_env")]
    api_key: Option<String>,
    /// Read the API key from this environment variable.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// true or false.
    #[arg(long)]
    enabled: Option<bool>,
    /// Higher is tried first.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i64>,
    /// Tie-breaker and share for the weighted strategy.
    #[arg(long)]
    weight: Option<i64>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Burst above the steady rate.
    #[arg(long)]
    burst: Option<i64>,
    /// Calls in flight at most.
    #[arg(long)]
    max_concurrency: Option<i64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Per-call timeout in ms.
    #[arg(long)]
    timeout_ms: Option<i64>,
    /// Circuit breaker settings as JSON, e.g. '{"window":20,"open_ms":30000}'.
    #[arg(long, value_name = "JSON")]
    breaker: Option<String>,
    /// Price per image, SIZE=USD (repeatable; SIZE may be `default`).
    #[arg(long, value_name = "SIZE=USD")]
    cost_per_image: Vec<String>,
    /// USD per 1,000 input tokens.
    #[arg(long)]
    per_1k_input_tokens: Option<f64>,
    /// USD per 1,000 output tokens.
    #[arg(long)]
    per_1k_output_tokens: Option<f64>,
    /// Multimodal inputs accepted, comma separated: images, files, audio, video.
    #[arg(long, value_delimiter = ',')]
    supports: Option<Vec<String>>,
    /// WASM plugin (`name` or `name@version`), for --provider wasm.
    #[arg(long)]
    plugin: Option<String>,
    /// Type-specific options as a JSON object.
    #[arg(long, value_name = "JSON")]
    options: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
}

impl ProviderFields {
    pub fn into_draft(self) -> anyhow::Result<ProviderConfigDraft> {
        let api_key = match (self.api_key, self.api_key_env) {
            (Some(key), _) => Some(ApiKey::new(key)),
            (None, Some(var)) => {
                Some(ApiKey::new(std::env::var(&var).with_context(|| {
                    format!("environment variable {var} is not set")
                })?))
            }
            (None, None) => None,
        };
        let rate_limit = (self.rpm.is_some()
            || self.burst.is_some()
            || self.max_concurrency.is_some()
            || self.tpm.is_some())
        .then_some(RateLimitDraft {
            rpm: self.rpm,
            burst: self.burst,
            max_concurrency: self.max_concurrency,
            tpm: self.tpm,
        });
        let breaker = self
            .breaker
            .map(|json| {
                serde_json::from_str(&json).context("--breaker is not a valid breaker object")
            })
            .transpose()?;
        let cost = if self.cost_per_image.is_empty()
            && self.per_1k_input_tokens.is_none()
            && self.per_1k_output_tokens.is_none()
        {
            None
        } else {
            let mut per_image = std::collections::BTreeMap::new();
            for entry in &self.cost_per_image {
                let (size, price) = entry
                    .split_once('=')
                    .with_context(|| format!("--cost-per-image '{entry}' is not SIZE=USD"))?;
                let price: f64 = price.parse().with_context(|| {
                    format!("--cost-per-image '{entry}': '{price}' is not a number")
                })?;
                per_image.insert(size.to_owned(), price);
            }
            Some(CostTable {
                per_image,
                per_1k_input_tokens: self.per_1k_input_tokens.unwrap_or(0.0),
                per_1k_output_tokens: self.per_1k_output_tokens.unwrap_or(0.0),
            })
        };
        let supports = self
            .supports
            .map(|list| {
                let mut s = Supports::default();
                for item in list {
                    match item.trim() {
                        "images" => s.images = true,
                        "files" => s.files = true,
                        "audio" => s.audio = true,
                        "video" => s.video = true,
                        "" | "none" => {}
                        other => bail!(
                            "--supports: unknown input '{other}' (images, files, audio, video)"
                        ),
                    }
                }
                Ok(s)
            })
            .transpose()?;
        let options = self
            .options
            .map(|json| match serde_json::from_str::<Value>(&json) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => bail!("--options must be a JSON object"),
                Err(e) => bail!("--options is not valid JSON: {e}"),
            })
            .transpose()?;
        Ok(ProviderConfigDraft {
            name: self.name,
            provider: self.provider,
            kinds: self.kinds,
            model: self.model,
            base_url: self.base_url,
            api_key,
            enabled: self.enabled,
            priority: self.priority,
            weight: self.weight,
            rate_limit,
            breaker,
            timeout_ms: self.timeout_ms,
            cost,
            supports,
            plugin: self.plugin,
            options,
            description: self.description,
            ..ProviderConfigDraft::default()
        })
    }
}

/// Runs one `providers` subcommand; returns the exit code and, for a write, the
/// change to announce. Validation problems exit with code 2.
pub async fn run(
    store: &Store,
    command: ProvidersCommand,
) -> anyhow::Result<(ExitCode, Option<ConfigChange>)> {
    match run_inner(store, command).await {
        Err(e) => match e.downcast_ref::<ConfigWriteError>() {
            Some(ConfigWriteError::Invalid(v)) => {
                eprintln!("error: invalid provider config:");
                for field in &v.errors {
                    eprintln!("  - {field}");
                }
                Ok((ExitCode::from(2), None))
            }
            _ => Err(e),
        },
        Ok(change) => Ok((ExitCode::SUCCESS, change)),
    }
}

async fn run_inner(
    store: &Store,
    command: ProvidersCommand,
) -> anyhow::Result<Option<ConfigChange>> {
    let change = |id: ConfigId, op: &str, version: i64| {
        Some(ConfigChange {
            id,
            op: op.to_owned(),
            version,
        })
    };
    let written = match command {
        ProvidersCommand::List {
            json,
            provider,
            enabled,
            kind,
        } => {
            let filter = ProviderFilter {
                provider: provider
                    .map(|p| p.parse::<ProviderType>())
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                enabled,
                kind: kind.map(|k| k.parse::<Kind>()).transpose()?,
                ..ProviderFilter::default()
            };
            let records = store.list_providers(&filter).await?;
            if json {
                let objects: Vec<Value> = records.iter().map(ProviderRecord::to_json).collect();
                println!("{}", serde_json::to_string_pretty(&objects)?);
            } else {
                print_table(&records);
            }
            None
        }
        ProvidersCommand::Show { target } => {
            let record = resolve(store, &target).await?;
            println!("{}", serde_json::to_string_pretty(&record.to_json())?);
            None
        }
        ProvidersCommand::Add { fields, from_json } => {
            let base = match from_json {
                Some(source) => read_draft(&source)?,
                None => ProviderConfigDraft::default(),
            };
            let spec = base
                .overlay(fields.into_draft()?)
                .validate()
                .map_err(ConfigWriteError::Invalid)?;
            let config = store.insert_provider(&spec).await?;
            println!(
                "added provider config {} '{}' ({}, priority {})",
                config.id, config.spec.name, config.spec.provider, config.spec.priority
            );
            change(config.id, "insert", config.version)
        }
        ProvidersCommand::Update {
            target,
            fields,
            from_json,
        } => {
            let record = resolve(store, &target).await?;
            let base = match from_json {
                Some(source) => read_draft(&source)?,
                None => ProviderConfigDraft::default(),
            };
            let patch = base.overlay(fields.into_draft()?);
            let config = store.patch_provider(record.id, patch).await?;
            println!(
                "updated provider config {} '{}' (version {})",
                config.id, config.spec.name, config.version
            );
            change(config.id, "update", config.version)
        }
        ProvidersCommand::Enable { target } => Some(set_enabled(store, &target, true).await?),
        ProvidersCommand::Disable { target } => Some(set_enabled(store, &target, false).await?),
        ProvidersCommand::Stats(args) => {
            let config = match args.target() {
                // A bare id also names a deleted config (its statistics stay).
                Some(target) => match target.parse::<i64>() {
                    Ok(id) => Some((id, String::new())),
                    Err(_) => {
                        let record = resolve(store, target).await?;
                        Some((record.id.0, record.name().to_owned()))
                    }
                },
                None => None,
            };
            super::stats::local(store, args, config).await?;
            None
        }
        ProvidersCommand::Remove { target } => {
            let record = resolve(store, &target).await?;
            store.delete_provider(record.id).await?;
            println!("removed provider config {} '{}'", record.id, record.name());
            change(record.id, "delete", record.version)
        }
        ProvidersCommand::SetPriority { target, priority } => {
            let record = resolve(store, &target).await?;
            let patch = ProviderConfigDraft {
                priority: Some(priority),
                ..ProviderConfigDraft::default()
            };
            let config = store.patch_provider(record.id, patch).await?;
            println!(
                "provider config {} '{}' now has priority {} (version {})",
                config.id, config.spec.name, config.spec.priority, config.version
            );
            change(config.id, "update", config.version)
        }
    };
    Ok(written)
}

async fn set_enabled(store: &Store, target: &str, enabled: bool) -> anyhow::Result<ConfigChange> {
    let record = resolve(store, target).await?;
    let patch = ProviderConfigDraft {
        enabled: Some(enabled),
        ..ProviderConfigDraft::default()
    };
    let config = store.patch_provider(record.id, patch).await?;
    println!(
        "{} provider config {} '{}' (version {})",
        if enabled { "enabled" } else { "disabled" },
        config.id,
        config.spec.name,
        config.version
    );
    Ok(ConfigChange {
        id: config.id,
        op: "update".to_owned(),
        version: config.version,
    })
}

async fn resolve(store: &Store, target: &str) -> anyhow::Result<ProviderRecord> {
    let reference = match target.parse::<i64>() {
        Ok(id) => ConfigRef::Id(id),
        Err(_) => ConfigRef::Name(target.to_owned()),
    };
    store
        .find_provider(&reference)
        .await?
        .with_context(|| format!("no provider config with id or name '{target}'"))
}

/// A draft from `--from-json` (a file, `-` for standard input), or an empty one.
pub fn read_draft_source(source: Option<&str>) -> anyhow::Result<ProviderConfigDraft> {
    match source {
        Some(source) => read_draft(source),
        None => Ok(ProviderConfigDraft::default()),
    }
}

fn read_draft(source: &str) -> anyhow::Result<ProviderConfigDraft> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not a provider config object"))
}

fn print_table(records: &[ProviderRecord]) {
    let header = [
        "ID", "NAME", "PROVIDER", "MODEL", "PRIORITY", "WEIGHT", "ENABLED", "RPM", "API KEY",
        "VERSION", "STATUS",
    ];
    let rows: Vec<[String; 11]> = records
        .iter()
        .map(|r| {
            let d = &r.draft;
            [
                r.id.to_string(),
                r.name().to_owned(),
                d.provider.clone().unwrap_or_default(),
                d.model.clone().unwrap_or_else(|| "-".into()),
                d.priority.map(|p| p.to_string()).unwrap_or_default(),
                d.weight.map(|w| w.to_string()).unwrap_or_default(),
                d.enabled
                    .map(|e| if e { "yes" } else { "no" }.to_owned())
                    .unwrap_or_default(),
                d.rate_limit
                    .as_ref()
                    .and_then(|l| l.rpm)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.api_key
                    .as_ref()
                    .map(ApiKey::masked)
                    .unwrap_or_else(|| "-".into()),
                r.version.to_string(),
                match r.config() {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("invalid: {e}"),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(&header.map(String::from)));
    for row in &rows {
        println!("{}", line(row));
    }
}
