//! JSON rendered once and served many times.
//!
//! poem-openapi's `Json<T>` turns `T` into a `serde_json::Value` tree and then into
//! bytes on every response. A handler whose answer is cached keeps a [`Rendered`]
//! instead: the bytes, made once, shared by every response (a reference count),
//! and documented in the spec exactly as `Json<T>` would be.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};

/// poem-openapi's `Json` content type.
const JSON: &str = "application/json; charset=utf-8";

/// The JSON of a `T`, rendered.
pub struct Rendered<T> {
    bytes: Bytes,
    of: PhantomData<fn() -> T>,
}

impl<T> Clone for Rendered<T> {
    fn clone(&self) -> Self {
        Rendered {
            bytes: self.bytes.clone(),
            of: PhantomData,
        }
    }
}

impl<T: ToJSON> Rendered<T> {
    pub fn new(value: &T) -> Self {
        // Serializing a Value to memory cannot fail (string keys only).
        let bytes = serde_json::to_vec(&value.to_json()).unwrap_or_default();
        Rendered {
            bytes: Bytes::from(bytes),
            of: PhantomData,
        }
    }
}

impl<T> Rendered<T> {
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl<T: Type> Payload for Rendered<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for Rendered<T> {
    fn into_response(self) -> Response {
        Response::builder().content_type(JSON).body(self.bytes)
    }
}

impl<T: ToJSON + Send> ApiResponse for Rendered<T> {
    fn meta() -> MetaResponses {
        <Json<T> as ApiResponse>::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::Object;

    #[derive(Object)]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn renders_like_json_and_documents_the_same_response() {
        let value = Sample {
            name: "a \"quoted\" name".into(),
            count: 3,
        };
        let rendered = Rendered::new(&value);
        let parsed: serde_json::Value = serde_json::from_slice(rendered.bytes()).expect("json");
        assert_eq!(parsed, value.to_json().expect("value"));
        assert_eq!(
            format!(
                "{:?}",
                <Rendered<Sample> as ApiResponse>::meta().responses[0].content[0].content_type
            ),
            format!(
                "{:?}",
                <Json<Sample> as ApiResponse>::meta().responses[0].content[0].content_type
            )
        );
        let resp = rendered.clone().into_response();
        assert_eq!(
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some(<Json<Sample> as Payload>::CONTENT_TYPE)
        );
    }
}
