//! Knowledge-base helpers: the embedding model the tests run, PDFs to upload, multipart uploads,
//! waiting for ingestion.

use std::time::Duration;

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use reqwest::StatusCode;
use serde_json::Value;

use super::{read, TestNode};

/// The model directory (`scripts/services.sh` unpacks it and exports `EMBEDDING_MODEL_DIR`).
pub fn model_dir() -> String {
    std::env::var("EMBEDDING_MODEL_DIR").expect(
        "EMBEDDING_MODEL_DIR must name the all-MiniLM-L6-v2 directory (scripts/test.sh sets it)",
    )
}

/// A one-page PDF whose text is `lines`, in Helvetica.
pub fn pdf(lines: &[&str]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut ops = vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 11.into()]),
        Operation::new("Td", vec![50.into(), 780.into()]),
    ];
    for line in lines {
        ops.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
        ops.push(Operation::new("Td", vec![0.into(), (-16).into()]));
    }
    ops.push(Operation::new("ET", vec![]));
    let content = Content { operations: ops };
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![page_id.into()],
            "Count" => 1,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Uploads `bytes` as `filename` through the multipart endpoint.
pub async fn upload(
    t: &TestNode,
    token: &str,
    filename: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    let resp = t
        .client
        .post(format!("{}/api/knowledge-base/upload", t.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload sent");
    read(resp).await
}

/// Uploads and returns the document id (the upload must be accepted).
pub async fn upload_ok(t: &TestNode, token: &str, filename: &str, bytes: Vec<u8>) -> String {
    let (status, body) = upload(t, token, filename, bytes).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["document"]["status"], "processing", "{body}");
    body["document"]["id"].as_str().unwrap().to_string()
}

/// Polls a document until it is ready or failed; returns it.
pub async fn settled(t: &TestNode, token: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (status, body) = t
            .get(&format!("/api/knowledge-base/documents/{id}"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let doc = body["document"].clone();
        if doc["status"] == "ready" || doc["status"] == "failed" {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("document {id} did not settle within 60 s");
}

/// `POST /api/knowledge-base/search`; returns the results.
pub async fn search(t: &TestNode, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = t
        .post(
            "/api/knowledge-base/search",
            Some(token),
            serde_json::json!({ "query": query, "limit": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].as_array().unwrap().clone()
}
