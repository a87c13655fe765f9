//! The OpenAPI 3.1 description of the API, served at `GET /v1/openapi.json` and
//! checked against the server by schemathesis in CI (`.ci/api.sh`).

pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    #[test]
    fn is_json_with_every_served_path() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/v1/messages",
            "/v1/messages/raw",
            "/v1/messages/{id}",
            "/v1/events",
            "/v1/suppressions",
            "/v1/suppressions/{address}",
            "/v1/domains",
            "/v1/domains/{domain}/dns",
            "/v1/domains/{domain}/dmarc",
            "/v1/unsubscribe/{token}",
            "/v1/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is described");
        }
    }
}
