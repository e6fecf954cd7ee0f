use super::*;
use axum::extract::State;
use axum::http::HeaderMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fake OAuth token endpoint and metadata server: counts requests,
/// remembers the last form body and headers, answers `tok-N`.
#[derive(Clone, Default)]
struct Fake {
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<(String, HeaderMap)>>,
    expires_in: Arc<Mutex<serde_json::Value>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    delay_ms: Arc<AtomicUsize>,
}

async fn token(
    State(f): State<Fake>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let delay = f.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let n = f.calls.fetch_add(1, Ordering::SeqCst) + 1;
    *f.last.lock().unwrap() = (body, headers.clone());
    if f.fail.load(Ordering::SeqCst) {
        return (
            http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})),
        )
            .into_response();
    }
    let expires_in = f.expires_in.lock().unwrap().clone();
    axum::Json(serde_json::json!({"access_token": format!("tok-{n}"), "expires_in": expires_in, "token_type": "Bearer"}))
        .into_response()
}

async fn metadata_token(State(f): State<Fake>, headers: HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
        return (http::StatusCode::FORBIDDEN, "missing Metadata-Flavor").into_response();
    }
    token(State(f), headers, String::new()).await
}

async fn start() -> (Fake, String) {
    let fake = Fake::default();
    *fake.expires_in.lock().unwrap() = serde_json::json!(3599);
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            axum::routing::get(metadata_token),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, addr.to_string())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::upstream::tls_config().unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmproxy-gcp-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("application_default_credentials.json");
    std::fs::write(&path, contents).unwrap();
    path
}

fn user_file(addr: &str) -> String {
    serde_json::json!({"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
        "client_secret": "csecret", "refresh_token": "1//refresh", "token_uri": format!("http://{addr}/token"),
        "quota_project_id": "quota-p"})
    .to_string()
}

#[tokio::test]
async fn authorized_user_file_with_token_uri_caches_and_single_flights() {
    let (fake, addr) = start().await;
    let path = temp_file("user", &user_file(&addr));
    let env = AdcEnv {
        application_credentials: Some(path.clone()),
        ..AdcEnv::default()
    };
    let auth = Arc::new(GcpAuth::discover(None, &env, http()).await.unwrap());
    assert!(
        auth.origin().contains("user credentials")
            && auth.origin().contains("GOOGLE_APPLICATION_CREDENTIALS")
    );
    assert_eq!(auth.quota_project(), Some("quota-p"));
    fake.delay_ms.store(100, Ordering::SeqCst);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let a = auth.clone();
            tokio::spawn(async move { a.token().await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().expose(), "tok-1");
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        1,
        "one refresh at a time"
    );
    let (body, _) = fake.last.lock().unwrap().clone();
    assert_eq!(
        body,
        "grant_type=refresh_token&client_id=cid.apps.googleusercontent.com&client_secret=csecret&refresh_token=1%2F%2Frefresh"
    );
    assert_eq!(auth.token().await.unwrap().expose(), "tok-1", "cached");
    auth.invalidate(&Secret::new("tok-1"));
    fake.delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(
        auth.token().await.unwrap().expose(),
        "tok-2",
        "refreshed after a 401"
    );
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let (fake, addr) = start().await;
    *fake.expires_in.lock().unwrap() = serde_json::json!("2");
    let path = temp_file("short", &user_file(&addr));
    let auth = GcpAuth::discover(Some(&path), &AdcEnv::default(), http())
        .await
        .unwrap();
    assert!(auth.origin().contains("auth.gcp_credentials_file"));
    assert_eq!(auth.token().await.unwrap().expose(), "tok-1");
    // A 2 s token is refreshed after half its life, before it expires.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(auth.token().await.unwrap().expose(), "tok-2");
    // A failed refresh keeps the still-valid token...
    fake.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(auth.token().await.unwrap().expose(), "tok-2");
    // ...until it expires; the error says why and shows no secret.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let e = auth.token().await.unwrap_err().to_string();
    assert!(
        e.contains("invalid_grant") && e.contains("no longer valid"),
        "{e}"
    );
    assert!(
        !e.contains("1//refresh") && !e.contains("csecret") && !e.contains("tok-"),
        "{e}"
    );
    assert!(
        !e.contains("Token has been"),
        "the endpoint's description is not quoted: {e}"
    );
}

#[tokio::test]
async fn service_account_signs_a_jwt_grant() {
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let (fake, addr) = start().await;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let pem = std::fs::read_to_string(fixtures.join("test-service-account-key.pem")).unwrap();
    let public = std::fs::read(fixtures.join("test-service-account-key.pub.der")).unwrap();
    let file = serde_json::json!({"type": "service_account", "project_id": "p", "private_key_id": "kid-1",
        "private_key": pem, "client_email": "sa@p.iam.gserviceaccount.com", "token_uri": format!("http://{addr}/token")});
    let path = temp_file("sa", &file.to_string());
    let env = AdcEnv {
        application_credentials: Some(path),
        ..AdcEnv::default()
    };
    let auth = GcpAuth::discover(None, &env, http()).await.unwrap();
    assert!(auth.origin().contains("sa@p.iam.gserviceaccount.com"));
    assert_eq!(auth.token().await.unwrap().expose(), "tok-1");
    let (body, headers) = fake.last.lock().unwrap().clone();
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    let assertion = body
        .strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")
        .unwrap();
    let parts: Vec<&str> = assertion.split('.').collect();
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
    );
    assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["aud"], format!("http://{addr}/token"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
        .verify(signed.as_bytes(), &decode(parts[2]))
        .expect("the JWT is signed with the service account's key");
}

#[tokio::test]
async fn metadata_server_from_gce_metadata_host() {
    let (fake, addr) = start().await;
    let env = AdcEnv {
        metadata_host: Some(addr.clone()),
        home: Some(std::env::temp_dir().join("llmproxy-no-such-home")),
        ..AdcEnv::default()
    };
    let auth = GcpAuth::discover(None, &env, http()).await.unwrap();
    assert!(auth.origin().contains("metadata server"));
    assert_eq!(auth.token().await.unwrap().expose(), "tok-1");
    assert_eq!(fake.last.lock().unwrap().1["metadata-flavor"], "Google");
}

#[tokio::test]
async fn discovery_order_and_errors() {
    let (_fake, addr) = start().await;
    // The well-known file under CLOUDSDK_CONFIG (or ~/.config/gcloud).
    let well_known = temp_file("wk", &user_file(&addr));
    let config_dir = well_known.parent().unwrap().to_path_buf();
    let env = AdcEnv {
        cloudsdk_config: Some(config_dir.clone()),
        metadata_host: Some("127.0.0.1:9".into()),
        ..AdcEnv::default()
    };
    let auth = GcpAuth::discover(None, &env, http()).await.unwrap();
    assert!(
        auth.origin()
            .contains("gcloud's application default credentials"),
        "{}",
        auth.origin()
    );

    // GOOGLE_APPLICATION_CREDENTIALS wins, and a missing file is an error,
    // not a fall-through.
    let env = AdcEnv {
        application_credentials: Some("/nonexistent/key.json".into()),
        cloudsdk_config: Some(config_dir),
        ..AdcEnv::default()
    };
    let e = GcpAuth::discover(None, &env, http()).await.unwrap_err();
    assert!(
        e.contains("GOOGLE_APPLICATION_CREDENTIALS") && e.contains("/nonexistent/key.json"),
        "{e}"
    );

    let env = AdcEnv {
        home: Some("/nonexistent-home".into()),
        no_gce_check: true,
        ..AdcEnv::default()
    };
    let e = GcpAuth::discover(None, &env, http()).await.unwrap_err();
    for needle in [
        "GOOGLE_APPLICATION_CREDENTIALS (not set)",
        "/nonexistent-home/.config/gcloud/application_default_credentials.json (not found)",
        "NO_GCE_CHECK",
        "gcloud auth application-default login",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }

    let path = temp_file("ext", r#"{"type":"external_account","audience":"x"}"#);
    let e = GcpAuth::discover(Some(&path), &AdcEnv::default(), http())
        .await
        .unwrap_err();
    assert!(
        e.contains("external_account") && e.contains("service_account"),
        "{e}"
    );
}
