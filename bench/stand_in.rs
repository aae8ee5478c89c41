//! `--stand-in ADDR`: a stand-in for an OpenAI-compatible upstream, answering every
//! request at once with the same small chat completion (hyper, HTTP/1.1 keep-alive).
//! The HTTP benchmark (`bench/http.sh`) drives it directly and through the gateway, in
//! the same run, to give the gateway's figure as a ratio to direct.

use std::convert::Infallible;

use anyhow::Context;
use hyper::{Request, Response, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use switchyard_tasks::Tasks;

/// The stand-in's one answer, the shape of OpenAI's.
const ANSWER: &str = r#"{"id":"chatcmpl-standin","object":"chat.completion","created":1747000000,"model":"stand-in","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

async fn answer(_: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let mut response = Response::new(ANSWER.to_owned());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Serves the stand-in on `addr` until the process is stopped.
pub async fn stand_in(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("stand-in upstream on http://{}/v1", listener.local_addr()?);
    let connections = Tasks::new("stand-in");
    loop {
        let (stream, _) = listener.accept().await.context("accept failed")?;
        connections.spawn("stand-in connection", async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
