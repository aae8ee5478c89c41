//! The artifact store against a real S3-compatible server (#17 §1): moto's server,
//! started by each test on a free port. Put, get, a missing object, large images in
//! parts, and the start-up check that refuses a missing bucket or bad credentials.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use switchyard_runtime::artifacts::{ArtifactError, ArtifactStore, MULTIPART_BYTES};

use crate::support::free_port;

/// A moto S3 server, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    /// Starts one; with `auth_after = Some(n)`, requests after the first `n` must be
    /// signed with real (IAM-made) credentials, so made-up ones are refused.
    fn start(auth_after: Option<u32>) -> Self {
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = auth_after {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = command
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]'; .ci/run does)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Makes a bucket (unsigned: moto takes it while no auth is asked).
    async fn bucket(&self, name: &str) {
        switchyard_runtime::providers::wire::install_tls();
        let answer = reqwest::Client::new()
            .put(format!("{}/{name}", self.url))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");
    }

    fn store(&self, url: &str, key_id: &str) -> ArtifactStore {
        ArtifactStore::open_with(
            url,
            &[
                ("aws_endpoint", &self.url),
                ("aws_access_key_id", key_id),
                ("aws_secret_access_key", "secret-for-the-test"),
                ("aws_region", "us-east-1"),
                ("aws_allow_http", "true"),
            ],
        )
        .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PNG of `side`×`side` noise (it does not compress: about 4 bytes a pixel).
fn noise_png(side: u32, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let pixels: Vec<u8> = (0..side * side * 4)
        .map(|_| {
            // xorshift: cheap noise.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_round_trip_through_a_real_s3_server_large_ones_in_parts() {
    let moto = Moto::start(None);
    moto.bucket("images").await;
    let store = moto.store("s3://images/switchyard", "test-key");
    store.check().await.unwrap();

    let small = noise_png(16, 1);
    let meta = store.put(&small).await.unwrap();
    let (bytes, read) = store.get(&meta.id).await.unwrap();
    assert_eq!(bytes, small);
    assert_eq!((read.width, read.height), (16, 16));
    // The same bytes again: a no-op.
    assert_eq!(store.put(&small).await.unwrap().id, meta.id);

    // Larger than the multipart threshold: uploaded in parts, read back whole.
    let large = noise_png(1600, 2);
    assert!(large.len() > MULTIPART_BYTES, "{} bytes", large.len());
    let meta = store.put(&large).await.unwrap();
    let (bytes, _) = store.get(&meta.id).await.unwrap();
    assert!(bytes == large, "the large image came back changed");

    // A missing object, and a malformed id.
    let missing = "ab".repeat(32);
    assert!(matches!(
        store.get(&missing).await,
        Err(ArtifactError::NotFound(id)) if id == missing
    ));
    assert!(matches!(
        store.get("../etc/passwd").await,
        Err(ArtifactError::BadId(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_refused_credentials_fail_the_start_up_check() {
    let moto = Moto::start(None);
    let store = moto.store("s3://no-such-bucket", "test-key");
    let error = store.check().await.unwrap_err().to_string();
    assert!(
        error.contains("no-such-bucket") && error.contains("cannot be used"),
        "{error}"
    );

    // Credentials checked after the bucket is made: made-up keys are refused.
    let strict = Moto::start(Some(1));
    strict.bucket("images").await;
    let store = strict.store("s3://images", "AKIAMADEUP000000");
    let error = store.check().await.unwrap_err().to_string();
    assert!(error.contains("cannot be used"), "{error}");
    assert!(
        !error.contains("secret-for-the-test"),
        "the secret never shows: {error}"
    );
}

/// With `artifacts.presign`, an event's image URL is the store's own presigned GET
/// URL: it fetches the image, with its type, straight from the store, for the URL TTL.
/// (moto does not check signatures unless it runs with IAM: the store's refusal of a
/// forged or expired link is S3's own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_fetch_the_image_from_the_store() {
    let moto = Moto::start(None);
    moto.bucket("images").await;
    let store = moto.store("s3://images/p", "test-key");
    let image = noise_png(8, 3);
    let meta = store.put(&image).await.unwrap();
    let urls = switchyard_runtime::artifact_urls::ArtifactUrls::new(
        b"a key of sixteen bytes or more",
        Duration::from_secs(600),
        "https://gateway.example",
    )
    .presigned_by(store.clone());
    let tenant = switchyard_core::Tenant::new("acme").unwrap();
    let url = urls.image_url(&meta.id, &tenant, 0).await;
    assert!(url.starts_with(&moto.url), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "image/png"
    );
    assert_eq!(answer.bytes().await.unwrap().to_vec(), image);
    assert!(
        url.contains("X-Amz-Expires=600"),
        "lives the URL TTL: {url}"
    );

    // A store that does not sign (local files) keeps the gateway's links.
    let dir = tempfile::tempdir().unwrap();
    let local = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
    let urls = switchyard_runtime::artifact_urls::ArtifactUrls::new(
        b"a key of sixteen bytes or more",
        Duration::from_secs(600),
        "https://gateway.example",
    )
    .presigned_by(local);
    let url = urls.image_url(&meta.id, &tenant, 0).await;
    assert!(
        url.starts_with("https://gateway.example/v1/artifacts/"),
        "{url}"
    );
}
