//! Prompt templates (#18 §2), through the admin API and jobs on both databases, and
//! on the bus: a template renders into the prompt (image kinds) or the system prompt
//! (text), and the rendered text is what the task stores; a missing variable is
//! `invalid_request` naming it; templates render in a sandbox (no include, bounded
//! work) and are checked when stored.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{Command, Event, EventBody};
use switchyard_runtime::bus::EventFilter;

use crate::{
    jobs::wait_for_status,
    reload::{Node, start_node},
    support::TestDb,
};

fn put(node: &Node, name: &str, body: Value) -> (u16, Value) {
    node.call("PUT", &format!("/v1/templates/{name}"), Some(body))
}

fn job(node: &Node, body: Value) -> (u16, Value) {
    node.call("POST", "/v1/jobs", Some(body))
}

async fn templates_render_into_what_the_task_stores(db: &TestDb) {
    let node = start_node(db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (status, stored) = put(
        &node,
        "product",
        json!({"kind": "image",
               "template": "A photo of {{ product }} on {{ background | default('white') }}{% if prompt %}, {{ prompt }}{% endif %}"}),
    );
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["enabled"], true);
    let (status, _) = put(
        &node,
        "persona",
        json!({"kind": "text", "template": "You are {{ persona }}.{% if system %} {{ system }}{% endif %}"}),
    );
    assert_eq!(status, 200);
    for (bad, named) in [
        (json!({"kind": "video", "template": "x"}), "kind"),
        (json!({"kind": "image", "template": "{% if %}"}), "template"),
        (json!({"kind": "image", "template": ""}), "template"),
        (json!({"kind": "image"}), "template"),
        (
            json!({"kind": "image", "template": "x", "owner": "me"}),
            "owner",
        ),
    ] {
        let (status, body) = put(&node, "bad", bad.clone());
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(named),
            "{bad}: {body}"
        );
    }
    let (_, list) = node.call("GET", "/v1/templates", None);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

    // An image job: the rendered text is the prompt the task stores.
    let (status, posted) = job(
        &node,
        json!({"tenant": "acme", "kind": "image.generate",
               "input": {"size": "64x64", "prompt": "studio light", "seed": 7,
                         "template": {"name": "product", "variables": {"product": "a red kite"}}}}),
    );
    assert_eq!(status, 202, "{posted}");
    let id = posted["id"].as_i64().unwrap();
    let finished = wait_for_status(&node, id, "done").await;
    assert_eq!(finished["status"], "done", "{finished}");
    let rendered = "A photo of a red kite on white, studio light";
    let prompts = db
        .raw_strings(&format!("SELECT prompt FROM tasks WHERE id = {id}"))
        .await;
    assert_eq!(prompts, [rendered]);
    // And the provider got the same, rendered once: the mock's image is a function of
    // the prompt and the seed.
    let expected = switchyard_runtime::artifacts::describe(
        &switchyard_runtime::providers::mock::png_for_test(rendered, 7, 0, 64, 64),
    )
    .unwrap()
    .id;
    assert_eq!(
        finished["result"]["output"]["images"][0]["artifact_id"], expected,
        "{finished}"
    );

    // A text job: the rendered text is the system prompt.
    let (status, posted) = job(
        &node,
        json!({"tenant": "acme", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "hi"}],
                         "template": {"name": "persona", "variables": {"persona": "a pirate"}}}}),
    );
    assert_eq!(status, 202, "{posted}");
    let id = posted["id"].as_i64().unwrap();
    wait_for_status(&node, id, "done").await;
    let commands = db
        .raw_strings(&format!(
            "SELECT CAST(command AS TEXT) FROM tasks WHERE id = {id}"
        ))
        .await;
    assert!(commands[0].contains("You are a pirate."), "{commands:?}");

    // Refusals name what is wrong.
    for (input, named) in [
        (
            json!({"size": "64x64", "template": {"name": "product"}}),
            "'product'",
        ),
        (
            json!({"size": "64x64", "template": {"name": "nope"}}),
            "nope",
        ),
        (
            json!({"size": "64x64", "template": {"name": "persona", "variables": {"persona": "x"}}}),
            "text requests",
        ),
        (
            json!({"size": "64x64", "template": {"name": "product", "vars": {}}}),
            "vars",
        ),
    ] {
        let (status, body) = job(
            &node,
            json!({"tenant": "acme", "kind": "image.generate", "input": input.clone()}),
        );
        assert_eq!(status, 400, "{input}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(named),
            "{input}: {body}"
        );
    }

    // A sandbox: no include or extends (no file access) is even accepted, and a
    // runaway loop runs out of fuel.
    for text in ["{% include '/etc/passwd' %}", "{% extends 'base' %}"] {
        let (status, body) = put(&node, "sneaky", json!({"kind": "image", "template": text}));
        assert_eq!(status, 400, "{text}: {body}");
    }
    let runaway =
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    let (status, body) = put(
        &node,
        "runaway",
        json!({"kind": "image", "template": runaway}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = job(
        &node,
        json!({"tenant": "acme", "kind": "image.generate",
               "input": {"size": "64x64", "template": {"name": "runaway"}}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot render"),
        "{body}"
    );

    // A disabled template is as good as none; a removed one is gone.
    let (status, _) = put(
        &node,
        "product",
        json!({"kind": "image", "template": "x {{ product }}", "enabled": false}),
    );
    assert_eq!(status, 200);
    let (status, _) = job(
        &node,
        json!({"tenant": "acme", "kind": "image.generate",
               "input": {"size": "64x64", "template": {"name": "product", "variables": {"product": "p"}}}}),
    );
    assert_eq!(status, 400);
    let (status, _) = node.call("DELETE", "/v1/templates/product", None);
    assert_eq!(status, 204);
    let (status, _) = node.call("GET", "/v1/templates/product", None);
    assert_eq!(status, 404);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_into_what_the_task_stores_on_sqlite() {
    let db = TestDb::sqlite().await;
    templates_render_into_what_the_task_stores(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_into_what_the_task_stores_on_postgres() {
    let db = TestDb::postgres().await;
    templates_render_into_what_the_task_stores(&db).await;
    db.cleanup().await;
}

/// On the bus, a command missing a template's variable ends with one `failed`
/// `invalid_request` naming it; a complete one completes with the rendered prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_commands_are_rendered_at_intake() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (status, _) = put(
        &node,
        "product",
        json!({"kind": "image", "template": "A photo of {{ product }}"}),
    );
    assert_eq!(status, 200);
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    for (id, variables) in [
        ("missing", json!({})),
        ("whole", json!({"product": "a kite"})),
    ] {
        let command: Command = serde_json::from_value(json!({
            "request_id": id, "tenant": "acme", "kind": "image.generate",
            "input": {"size": "64x64", "template": {"name": "product", "variables": variables}}}))
        .unwrap();
        node.bus.publish_command(&command).await.unwrap();
    }
    let mut ended = std::collections::HashMap::new();
    while ended.len() < 2 {
        let event: Event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("no terminal event")
            .unwrap();
        if event.is_terminal() {
            ended.insert(event.request_id.to_string(), event);
        }
    }
    let EventBody::Failed { error, .. } = &ended["missing"].body else {
        panic!("{:?}", ended["missing"]);
    };
    assert_eq!(error.code.as_str(), "invalid_request");
    assert!(error.message.contains("'product'"), "{}", error.message);
    assert!(matches!(ended["whole"].body, EventBody::Completed { .. }));
    assert_eq!(
        db.raw_strings("SELECT prompt FROM tasks WHERE request_id = 'whole'")
            .await,
        ["A photo of a kite"]
    );
    node.stop().await;
    db.cleanup().await;
}
