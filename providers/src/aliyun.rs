//! `aliyun`: DashScope Wan text-to-image, an async task API. The adapter submits with
//! `X-DashScope-Async: enable`, then polls `GET /tasks/{id}` (1 s, doubling every three
//! polls up to 5 s, as the official SDK does) until the task ends, reporting `progress`
//! on the way. A task that fails reports its failure inside a 200 answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{ErrorCode, Kind, ProviderConfig, ProviderType};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter,
    answer::{Answer, AnswerImage},
    options,
    wire::{Api, Authorize, KeyIn, Refined, scrub_raw, str_at},
};

/// Type-specific options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AliyunOptions {
    /// First poll interval.
    poll_interval_ms: u64,
    /// Longest poll interval.
    max_poll_interval_ms: u64,
    /// Let the service rewrite the prompt (its default is true).
    prompt_extend: Option<bool>,
    /// Add the "AI生成" mark (its default is false).
    watermark: Option<bool>,
    /// `X-DashScope-WorkSpace`.
    workspace: Option<String>,
}

impl Default for AliyunOptions {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            max_poll_interval_ms: 5_000,
            prompt_extend: None,
            watermark: None,
            workspace: None,
        }
    }
}

/// The adapter of one DashScope account.
#[derive(Debug)]
pub struct AliyunAdapter {
    api: Api,
    model: String,
    options: AliyunOptions,
}

impl AliyunAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        let options: AliyunOptions = options(config)?;
        if options.poll_interval_ms == 0 || options.max_poll_interval_ms < options.poll_interval_ms
        {
            return Err(AdapterBuildError {
                provider: ProviderType::Aliyun,
                reason: "options.poll_interval_ms must be > 0 and ≤ max_poll_interval_ms"
                    .to_owned(),
            });
        }
        Ok(Self {
            api: Api::for_config(config, "https://dashscope.aliyuncs.com/api/v1", refine),
            model: config
                .spec
                .model
                .clone()
                .unwrap_or_else(|| "wan2.2-t2i-flash".to_owned()),
            options,
        })
    }
}

/// Flat `{"code", "message", "request_id"}`.
pub(crate) fn refine(_status: StatusCode, body: &Value) -> Refined {
    let code = str_at(body, "/code").unwrap_or_default();
    Refined {
        code: classify_code(code),
        message: str_at(body, "/message").map(|m| format!("{code}: {m}")),
        retry_after_ms: None,
    }
}

fn classify_code(code: &str) -> Option<ErrorCode> {
    match code {
        "DataInspectionFailed" => Some(ErrorCode::ContentFiltered),
        "Arrearage" | "Throttling.AllocationQuota" => Some(ErrorCode::Unauthorized),
        "InvalidApiKey" => Some(ErrorCode::Unauthorized),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct TaskResponse {
    output: TaskOutput,
}

#[derive(Debug, Deserialize)]
struct TaskOutput {
    task_id: Option<String>,
    task_status: String,
    #[serde(default)]
    results: Vec<TaskResult>,
    code: Option<String>,
    message: Option<String>,
    task_metrics: Option<TaskMetrics>,
}

#[derive(Debug, Deserialize)]
struct TaskResult {
    url: Option<String>,
    actual_prompt: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct TaskMetrics {
    #[serde(default)]
    total: u32,
    #[serde(default)]
    succeeded: u32,
    #[serde(default)]
    failed: u32,
}

impl ProviderAdapter for AliyunAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Aliyun
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let body = self.body(&request);
        let api = self.api.clone();
        let options = self.options.clone();
        Box::pin(async move {
            let mut submit = api
                .client
                .post(api.url("/services/aigc/text2image/image-synthesis"))
                .auth(&api, KeyIn::Bearer)?
                .header("X-DashScope-Async", "enable")
                .json(&body?);
            if let Some(workspace) = &options.workspace {
                submit = submit.header("X-DashScope-WorkSpace", workspace);
            }
            let response = api.send(submit).await?;
            let task_id = read_submitted(&api, &api.body(response).await?)?;
            request.progress(0.0);
            poll(&api, &options, &task_id, &request).await
        })
    }

    /// The cheapest authenticated call: asking for an unknown task (answered
    /// `UNKNOWN` with a good key, 401 with a bad one).
    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        Box::pin(async move {
            let http = api
                .client
                .get(api.url("/tasks/00000000-0000-0000-0000-000000000000"))
                .auth(&api, KeyIn::Bearer)?;
            api.send(http).await?;
            Ok(())
        })
    }
}

impl AliyunAdapter {
    fn body(&self, request: &AdapterRequest) -> Result<Value, AttemptError> {
        let command = &request.command;
        if command.kind != Kind::ImageGenerate {
            return Err(AttemptError::new(
                ErrorCode::InvalidRequest,
                "aliyun only generates images",
            ));
        }
        let input = &command.input;
        let mut task_input = Map::new();
        task_input.insert(
            "prompt".into(),
            json!(input.prompt.as_deref().unwrap_or_default()),
        );
        if let Some(negative) = &input.negative_prompt {
            task_input.insert("negative_prompt".into(), json!(negative));
        }
        let mut parameters = Map::new();
        // Billing is per image and the service's default n is 4: always send n.
        parameters.insert("n".into(), json!(command.image_count()));
        if let Some(size) = &input.size {
            parameters.insert("size".into(), json!(size.replace('x', "*")));
        }
        if let Some(seed) = input.seed {
            parameters.insert("seed".into(), json!(seed));
        }
        if let Some(extend) = self.options.prompt_extend {
            parameters.insert("prompt_extend".into(), json!(extend));
        }
        if let Some(watermark) = self.options.watermark {
            parameters.insert("watermark".into(), json!(watermark));
        }
        if let Some(style) = &input.style {
            parameters.insert("style".into(), json!(style));
        }
        parameters.extend(request.params_for(ProviderType::Aliyun));
        Ok(json!({"model": self.model, "input": task_input, "parameters": parameters}))
    }
}

async fn poll(
    api: &Api,
    options: &AliyunOptions,
    task_id: &str,
    request: &AdapterRequest,
) -> Result<AdapterOutput, AttemptError> {
    let mut interval = options.poll_interval_ms;
    let mut polls = 0u32;
    let mut reported = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(interval)).await;
        polls += 1;
        if polls.is_multiple_of(3) {
            interval = (interval * 2).min(options.max_poll_interval_ms);
        }
        let http = api
            .client
            .get(api.url(&format!("/tasks/{task_id}")))
            .auth(api, KeyIn::Bearer)?;
        let response = api.send(http).await?;
        match read_task(api, task_id, &api.body(response).await?)? {
            TaskState::Running(fraction) => {
                if fraction > reported {
                    reported = fraction;
                    request.progress(fraction);
                }
            }
            TaskState::Succeeded(answer) => return answer.fetch(api).await,
        }
    }
}

/// Reads the answer of a submit: the task's id.
pub(crate) fn read_submitted(api: &Api, body: &[u8]) -> Result<String, AttemptError> {
    let (submitted, _): (TaskResponse, Value) = api.parse(body)?;
    submitted
        .output
        .task_id
        .ok_or_else(|| api.malformed(&"no output.task_id"))
}

/// What a poll of a task says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskState {
    /// Queued or running, this far along (0–1).
    Running(f64),
    /// Done, with its images.
    Succeeded(Answer),
}

/// Reads the answer of a poll of task `task_id`; a task that failed or ended otherwise
/// is an error.
pub(crate) fn read_task(api: &Api, task_id: &str, body: &[u8]) -> Result<TaskState, AttemptError> {
    let (task, raw): (TaskResponse, Value) = api.parse(body)?;
    let output = &task.output;
    match output.task_status.as_str() {
        "PENDING" | "RUNNING" => {
            // The counts are the provider's: added as f64, so no count overflows.
            let done = |m: &TaskMetrics| f64::from(m.succeeded) + f64::from(m.failed);
            let fraction = match (&output.task_metrics, output.task_status.as_str()) {
                (Some(m), _) if m.total > 0 && done(m) > 0.0 => {
                    (done(m) / f64::from(m.total)).min(1.0)
                }
                (_, "RUNNING") => 0.5,
                _ => 0.0,
            };
            Ok(TaskState::Running(fraction))
        }
        "SUCCEEDED" => finish(api, task, &raw).map(TaskState::Succeeded),
        "FAILED" => {
            let code = output.code.as_deref().unwrap_or("FAILED");
            Err(api.error(
                classify_code(code).unwrap_or(ErrorCode::ProviderError),
                format!(
                    "task {task_id} failed: {code}: {}",
                    output.message.as_deref().unwrap_or("no message")
                ),
            ))
        }
        // CANCELED, SUSPENDED, UNKNOWN (expired or unknown id).
        other => Err(api.error(
            ErrorCode::ProviderError,
            format!("task {task_id} ended as {other}"),
        )),
    }
}

fn finish(api: &Api, task: TaskResponse, raw: &Value) -> Result<Answer, AttemptError> {
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for result in task.output.results {
        match result.url {
            Some(url) => {
                let mut image = AnswerImage::url(url);
                image.revised_prompt = result.actual_prompt;
                images.push(image);
            }
            None => failures.push(format!(
                "{}: {}",
                result.code.unwrap_or_default(),
                result.message.unwrap_or_default()
            )),
        }
    }
    if images.is_empty() {
        return Err(api.error(
            ErrorCode::ProviderError,
            format!(
                "the task succeeded without images ({})",
                failures.join("; ")
            ),
        ));
    }
    Ok(Answer {
        images,
        text: None,
        input_tokens: 0,
        output_tokens: 0,
        raw: Some(scrub_raw(raw)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        Api::new(
            ProviderType::Aliyun,
            None,
            "http://127.0.0.1:1",
            None,
            refine,
        )
    }

    /// Found by fuzzing (issue #14): `SUCCEEDED + FAILED` overflowed a u32 (a panic in
    /// a debug build, a wrong fraction in a release one).
    #[test]
    fn task_metrics_at_the_edges_of_u32_read_as_done() {
        let body = json!({"output": {"task_id": "t", "task_status": "RUNNING",
            "task_metrics": {"TOTAL": 4, "SUCCEEDED": u32::MAX, "FAILED": 1}}});
        let state = read_task(&api(), "t", body.to_string().as_bytes());
        assert_eq!(state, Ok(TaskState::Running(1.0)));
    }

    #[test]
    fn task_metrics_give_the_fraction_done() {
        let body = json!({"output": {"task_id": "t", "task_status": "PENDING",
            "task_metrics": {"TOTAL": 4, "SUCCEEDED": 1, "FAILED": 1}}});
        let state = read_task(&api(), "t", body.to_string().as_bytes());
        assert_eq!(state, Ok(TaskState::Running(0.5)));
    }
}
