//! B1: a plain reverse proxy (hyper, no parsing) - what any proxy hop costs
//! at the least.

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;

/// Relays every request to `upstream` (`host:port`), streaming both ways.
pub async fn serve(listener: tokio::net::TcpListener, upstream: String) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    crate::serve_http(listener, move |request: Request<Incoming>| {
        let client = client.clone();
        let upstream = upstream.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = match format!("http://{upstream}{path}").parse::<Uri>() {
                Ok(uri) => uri,
                Err(_) => return Ok::<_, Infallible>(bad_gateway()),
            };
            parts.headers.remove(http::header::HOST);
            match client.request(Request::from_parts(parts, body)).await {
                Ok(response) => Ok(response.map(http_body_util::BodyExt::boxed_unsync)),
                Err(_) => Ok(bad_gateway()),
            }
        }
    })
    .await;
}

fn bad_gateway() -> Response<http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, hyper::Error>>
{
    let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(
        http_body_util::Empty::new().map_err(|never: Infallible| match never {}),
    ));
    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
    response
}

use http_body_util::BodyExt as _;
