//! The REST API of the real binary, driven over HTTP with reqwest.

mod common;

use common::{RunningRegistry, record_schema};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// A registry process plus a client for it; the temp dir outlives the process.
struct Harness {
    registry: RunningRegistry,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = RunningRegistry::start(&dir.path().join("data")).await;
        Self {
            registry,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Sends a request with a JSON body (or none) and returns the status and JSON answer.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.registry.url));
        if let Some(body) = body {
            request = request
                .header("content-type", CONTENT_TYPE_V1)
                .body(body.to_string());
        }
        self.finish(request).await
    }

    /// Sends `body` verbatim with the given content type.
    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let request = self
            .client
            .request(method, format!("{}{path}", self.registry.url))
            .header("content-type", content_type)
            .body(body.to_owned());
        self.finish(request).await
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response {status} is not JSON ({e}): {text}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (StatusCode, Value) {
        let path = format!("/subjects/{subject}/versions");
        self.call(Method::POST, &path, Some(json!({ "schema": schema })))
            .await
    }

    async fn register_ok(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_u64().unwrap()
    }
}

fn assert_error(answer: (StatusCode, Value), status: u16, error_code: u64) -> String {
    let (actual_status, body) = answer;
    assert_eq!(actual_status.as_u16(), status, "{body}");
    assert_eq!(body["error_code"], error_code, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

fn user_v1() -> String {
    record_schema("User", r#"{"name":"id","type":"long"}"#)
}

fn user_with_email(default: bool) -> String {
    let default = if default { r#","default":"""# } else { "" };
    record_schema(
        "User",
        &format!(r#"{{"name":"id","type":"long"}},{{"name":"email","type":"string"{default}}}"#),
    )
}

fn same_json(a: &str, b: &str) -> bool {
    serde_json::from_str::<Value>(a).unwrap() == serde_json::from_str::<Value>(b).unwrap()
}

#[tokio::test]
async fn register_then_read_back_every_way() {
    let h = Harness::start().await;
    assert_eq!(h.get("/").await, (StatusCode::OK, json!({})));
    assert_eq!(h.register_ok("users-value", &user_v1()).await, 1);

    // Registering the same schema again, differently formatted, changes nothing.
    let reformatted =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&user_v1()).unwrap()).unwrap();
    assert_eq!(h.register_ok("users-value", &reformatted).await, 1);
    assert_eq!(h.get("/subjects/users-value/versions").await.1, json!([1]));
    assert_eq!(h.get("/subjects").await.1, json!(["users-value"]));

    for version in ["1", "latest", "-1"] {
        let (status, body) = h
            .get(&format!("/subjects/users-value/versions/{version}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["subject"], "users-value");
        assert_eq!(
            (body["id"].as_u64(), body["version"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(
            same_json(body["schema"].as_str().unwrap(), &user_v1()),
            "{body}"
        );
        assert!(body.get("schemaType").is_none(), "AVRO is implied: {body}");
    }

    let (status, raw) = h.get("/subjects/users-value/versions/1/schema").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(raw, serde_json::from_str::<Value>(&user_v1()).unwrap());

    let (status, found) = h
        .call(
            Method::POST,
            "/subjects/users-value",
            Some(json!({ "schema": user_v1() })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        (
            found["subject"].as_str(),
            found["id"].as_u64(),
            found["version"].as_u64()
        ),
        (Some("users-value"), Some(1), Some(1))
    );

    let (status, by_id) = h.get("/schemas/ids/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(same_json(by_id["schema"].as_str().unwrap(), &user_v1()));
    assert_eq!(
        h.get("/schemas/ids/1/versions").await.1,
        json!([{ "subject": "users-value", "version": 1 }])
    );
    assert_eq!(h.get("/schemas/types").await.1, json!(["AVRO"]));

    let response = reqwest::get(format!("{}/subjects", h.registry.url))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], CONTENT_TYPE_V1);
}

#[tokio::test]
async fn the_same_schema_gets_the_same_id_in_every_subject() {
    let h = Harness::start().await;
    let first = h.register_ok("orders-value", &user_v1()).await;
    let other = h.register_ok("orders-key", r#""string""#).await;
    let again = h.register_ok("customers-value", &user_v1()).await;
    assert_eq!((first, other, again), (1, 2, 1));
    let (_, version) = h.get("/subjects/customers-value/versions/latest").await;
    assert_eq!(
        (version["id"].as_u64(), version["version"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        h.get("/schemas/ids/1/versions").await.1,
        json!([
            { "subject": "customers-value", "version": 1 },
            { "subject": "orders-value", "version": 1 }
        ])
    );
    assert_eq!(
        h.get("/subjects").await.1,
        json!(["customers-value", "orders-key", "orders-value"])
    );
}

#[tokio::test]
async fn backward_compatibility_allows_a_defaulted_field_and_rejects_a_required_one() {
    let h = Harness::start().await;
    h.register_ok("users-value", &user_v1()).await;

    let test_path = "/compatibility/subjects/users-value/versions/latest?verbose=true";
    let (status, verdict) = h
        .call(
            Method::POST,
            test_path,
            Some(json!({ "schema": user_with_email(false) })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["is_compatible"], false, "{verdict}");
    assert!(
        verdict["messages"][0].as_str().unwrap().contains("email"),
        "{verdict}"
    );

    let message = assert_error(
        h.register("users-value", &user_with_email(false)).await,
        409,
        409,
    );
    assert!(
        message.contains("email") && message.contains("default"),
        "{message}"
    );
    assert_eq!(h.get("/subjects/users-value/versions").await.1, json!([1]));

    let (_, verdict) = h
        .call(
            Method::POST,
            "/compatibility/subjects/users-value/versions/1",
            Some(json!({ "schema": user_with_email(true) })),
        )
        .await;
    assert_eq!(verdict, json!({ "is_compatible": true }));
    assert_eq!(
        h.register_ok("users-value", &user_with_email(true)).await,
        2
    );
    assert_eq!(
        h.get("/subjects/users-value/versions").await.1,
        json!([1, 2])
    );
}

#[tokio::test]
async fn compatibility_levels_are_read_and_set_globally_and_per_subject() {
    let h = Harness::start().await;
    assert_eq!(
        h.get("/config").await.1,
        json!({ "compatibilityLevel": "BACKWARD" })
    );

    let (status, body) = h
        .call(
            Method::PUT,
            "/config",
            Some(json!({ "compatibility": "FULL" })),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "compatibility": "FULL" }))
    );
    assert_eq!(
        h.get("/config").await.1,
        json!({ "compatibilityLevel": "FULL" })
    );

    assert_error(h.get("/config/users-value").await, 404, 40408);
    assert_eq!(
        h.get("/config/users-value?defaultToGlobal=true").await.1,
        json!({ "compatibilityLevel": "FULL" })
    );

    let (status, body) = h
        .call(
            Method::PUT,
            "/config/users-value",
            Some(json!({ "compatibility": "NONE" })),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "compatibility": "NONE" }))
    );
    assert_eq!(
        h.get("/config/users-value").await.1,
        json!({ "compatibilityLevel": "NONE" })
    );

    // With NONE on the subject, even an incompatible change is accepted.
    h.register_ok("users-value", &user_v1()).await;
    assert_eq!(
        h.register_ok("users-value", &user_with_email(false)).await,
        2
    );

    let message = assert_error(
        h.call(
            Method::PUT,
            "/config",
            Some(json!({ "compatibility": "SIDEWAYS" })),
        )
        .await,
        422,
        42203,
    );
    assert!(message.contains("SIDEWAYS"), "{message}");
    assert_error(
        h.send_raw(Method::PUT, "/config", "application/json", "{not json")
            .await,
        422,
        422,
    );
    assert_eq!(
        h.get("/config").await.1,
        json!({ "compatibilityLevel": "FULL" })
    );
}

#[tokio::test]
async fn invalid_schemas_and_bodies_are_42201_and_any_content_type_is_read() {
    let h = Harness::start().await;
    let message = assert_error(
        h.register(
            "s",
            r#"{"type":"record","name":"Broken","fields":[{"name":"x"}]}"#,
        )
        .await,
        422,
        42201,
    );
    assert!(message.starts_with("Invalid schema"), "{message}");
    assert_error(h.register("s", "not json at all").await, 422, 42201);

    let protobuf = json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" });
    let message = assert_error(
        h.call(Method::POST, "/subjects/s/versions", Some(protobuf))
            .await,
        422,
        42201,
    );
    assert!(
        message.contains("PROTOBUF") && message.contains("AVRO"),
        "{message}"
    );

    assert_error(
        h.send_raw(
            Method::POST,
            "/subjects/s/versions",
            CONTENT_TYPE_V1,
            "{oops",
        )
        .await,
        422,
        42201,
    );
    assert_error(
        h.send_raw(
            Method::POST,
            "/subjects/s/versions",
            CONTENT_TYPE_V1,
            r#"{"schemaType":"AVRO"}"#,
        )
        .await,
        422,
        42201,
    );

    let body = json!({ "schema": r#""long""#, "schemaType": "AVRO", "references": [] }).to_string();
    for (subject, content_type) in [
        ("a", "application/json"),
        ("b", "application/octet-stream"),
        ("c", CONTENT_TYPE_V1),
    ] {
        let (status, answer) = h
            .send_raw(
                Method::POST,
                &format!("/subjects/{subject}/versions"),
                content_type,
                &body,
            )
            .await;
        assert_eq!(
            (status, answer),
            (StatusCode::OK, json!({ "id": 1 })),
            "{content_type}"
        );
    }
    assert_eq!(h.get("/subjects").await.1, json!(["a", "b", "c"]));
}

#[tokio::test]
async fn missing_things_have_confluents_error_codes() {
    let h = Harness::start().await;
    assert_error(h.get("/subjects/nobody/versions").await, 404, 40401);
    assert_error(h.get("/subjects/nobody/versions/latest").await, 404, 40401);
    assert_error(
        h.call(
            Method::POST,
            "/subjects/nobody",
            Some(json!({ "schema": user_v1() })),
        )
        .await,
        404,
        40401,
    );
    h.register_ok("users-value", &user_v1()).await;
    assert_error(h.get("/subjects/users-value/versions/7").await, 404, 40402);
    assert_error(
        h.call(
            Method::POST,
            "/subjects/users-value",
            Some(json!({ "schema": r#""string""# })),
        )
        .await,
        404,
        40403,
    );
    assert_error(h.get("/schemas/ids/99").await, 404, 40403);
    assert_error(h.get("/schemas/ids/not-a-number").await, 404, 40403);
    for version in ["0", "abc", "-2", "2147483648"] {
        assert_error(
            h.get(&format!("/subjects/users-value/versions/{version}"))
                .await,
            422,
            42202,
        );
    }
    assert_error(h.get("/no/such/endpoint").await, 404, 404);
    assert_error(h.call(Method::PATCH, "/subjects", None).await, 405, 405);
}

#[tokio::test]
async fn deletion_hides_versions_but_keeps_ids_resolvable() {
    let h = Harness::start().await;
    h.call(
        Method::PUT,
        "/config",
        Some(json!({ "compatibility": "NONE" })),
    )
    .await;
    h.register_ok("s", &user_v1()).await;
    h.register_ok("s", r#""string""#).await;
    h.register_ok("s", r#""long""#).await;

    assert_eq!(
        h.call(Method::DELETE, "/subjects/s/versions/2", None).await,
        (StatusCode::OK, json!(2))
    );
    assert_eq!(h.get("/subjects/s/versions").await.1, json!([1, 3]));
    assert_error(h.get("/subjects/s/versions/2").await, 404, 40402);
    assert_eq!(
        h.get("/subjects/s/versions?deleted=true").await.1,
        json!([1, 2, 3])
    );

    assert_eq!(
        h.call(Method::DELETE, "/subjects/s", None).await,
        (StatusCode::OK, json!([1, 3]))
    );
    assert_eq!(h.get("/subjects").await.1, json!([]));
    assert_eq!(h.get("/subjects?deleted=true").await.1, json!(["s"]));
    assert_error(
        h.call(Method::DELETE, "/subjects/s", None).await,
        404,
        40401,
    );
    assert_eq!(
        h.get("/schemas/ids/2").await.1,
        json!({ "schema": r#""string""# })
    );

    // A deleted subject starts over at a new version number with the old schema id.
    assert_eq!(h.register_ok("s", &user_v1()).await, 1);
    assert_eq!(h.get("/subjects/s/versions").await.1, json!([4]));
}

#[tokio::test]
async fn metrics_and_health_are_served_on_the_api_port() {
    let h = Harness::start().await;
    h.register_ok("s", &user_v1()).await;
    let (status, health) = h.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["ready"], true);
    let metrics = reqwest::get(format!("{}/metrics", h.registry.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"schema_registry_requests_total{endpoint="POST /subjects/{subject}/versions",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("schema_registry_schemas_registered_total 1"),
        "{metrics}"
    );
}
