//! gRPC end to end with a real gRPC client and server (tonic): HTTP/2 to a `grpc` port, the
//! response message and its trailers (`grpc-status`, `grpc-message`) through the gateway, and a
//! fault abort answered as a gRPC status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::convert::Infallible;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::{Code, Request, Response, Status};

use e2e::TestGateway;

/// Messages as raw bytes: no protobuf needed to carry them.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let out = src.chunk().to_vec();
        src.advance(out.len());
        Ok(Some(out))
    }
}

/// `test.Echo/*`: answers the message reversed (status OK in the trailers); the message `fail`
/// gets NOT_FOUND.
#[derive(Debug, Clone, Copy)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

struct Reverse;

impl tonic::server::UnaryService<Vec<u8>> for Reverse {
    type Response = Vec<u8>;
    type Future = std::future::Ready<Result<Response<Vec<u8>>, Status>>;
    fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
        let message = request.into_inner();
        std::future::ready(if message == b"fail" {
            Err(Status::not_found("no such thing"))
        } else {
            Ok(Response::new(message.into_iter().rev().collect()))
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move { Ok(tonic::server::Grpc::new(Raw).unary(Reverse, req).await) })
    }
}

/// Starts the gRPC server on an ephemeral loopback port.
async fn serve() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(Echo).serve_with_incoming(incoming));
    port
}

async fn call(gw: &TestGateway, method: &'static str, message: &[u8]) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(gw.url(80))
        .unwrap()
        .connect()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(method);
    client.unary(Request::new(message.to_vec()), path, Raw).await.map(Response::into_inner)
}

fn config(port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.internal]\n  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {port}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - match: [{{uri: {{exact: /test.Echo/Aborted}}}}]\n    fault: {{abort: {{grpcStatus: UNAVAILABLE, percentage: {{value: 100}}}}}}\n    route: [{{destination: {{host: echo.internal}}}}]\n  - route: [{{destination: {{host: echo.internal}}}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_and_its_trailers_pass_through_the_gateway() {
    let gw = TestGateway::start(&config(serve().await));
    assert_eq!(call(&gw, "/test.Echo/Reverse", b"hello").await.unwrap(), b"olleh", "status OK, from the trailers");
    let failed = call(&gw, "/test.Echo/Reverse", b"fail").await.unwrap_err();
    assert_eq!((failed.code(), failed.message()), (Code::NotFound, "no such thing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_fault_abort_reaches_the_client_as_its_status() {
    let gw = TestGateway::start(&config(serve().await));
    let aborted = call(&gw, "/test.Echo/Aborted", b"x").await.unwrap_err();
    assert_eq!((aborted.code(), aborted.message()), (Code::Unavailable, "fault filter abort"));
}
