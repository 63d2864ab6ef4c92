//! The HTTP API under `/api`, its OpenAPI document and the reference page.

mod batch;
mod keys;
mod runs;
mod system;
mod workflows;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::Router;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orcheo API",
        description = "Workflows, versions, runs, live run events, checkpoints and API keys. \
Authenticate with an API key: `Authorization: Bearer ok_…`. Errors are RFC 9457 problem+json.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "system", description = "Health, readiness and the node catalog"),
        (name = "workflows", description = "Workflows and their immutable versions"),
        (name = "runs", description = "Runs, their events, streams and checkpoints"),
        (name = "credentials", description = "The credential vault: types, credentials (metadata only; no route returns a secret), rotation"),
        (name = "triggers", description = "Webhooks, schedules and polling, and the webhook ingress"),
        (name = "admin", description = "API keys and the audit log")
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ok_<prefix>_<secret>")
                    .description(Some("An Orcheo API key; scopes listed per operation"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The OpenAPI document and the router, built from the same route list.
pub fn parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .routes(routes!(system::nodes))
        .routes(routes!(system::whoami))
        .routes(routes!(
            workflows::list_workflows,
            workflows::create_workflow
        ))
        .routes(routes!(workflows::validate_workflow))
        .routes(routes!(
            workflows::get_workflow,
            workflows::update_workflow,
            workflows::delete_workflow
        ))
        .routes(routes!(workflows::list_versions, workflows::create_version))
        .routes(routes!(workflows::get_version))
        .routes(routes!(workflows::diff_versions))
        .routes(routes!(runs::list_runs, runs::create_run))
        .routes(routes!(batch::create_batch))
        .routes(routes!(batch::dead_letters))
        .routes(routes!(batch::redrive))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::resume_run))
        .routes(routes!(runs::retry_run))
        .routes(routes!(runs::fork_run))
        .routes(routes!(runs::list_events))
        .routes(routes!(runs::stream_sse))
        .routes(routes!(runs::stream_ws))
        .routes(routes!(runs::list_checkpoints))
        .routes(routes!(runs::get_checkpoint))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::list_audit))
        .routes(routes!(crate::triggers::webhook::create_webhook))
        .routes(routes!(crate::triggers::webhook::list_triggers))
        .routes(routes!(crate::triggers::webhook::webhook_url))
        .routes(routes!(crate::triggers::cron::create_cron))
        .routes(routes!(crate::triggers::cron::next_fires))
        .routes(routes!(crate::vault::readiness::readiness))
        .routes(routes!(crate::vault::api::list_types))
        .routes(routes!(
            crate::vault::api::create_credential,
            crate::vault::api::list_credentials
        ))
        .routes(routes!(
            crate::vault::api::get_credential,
            crate::vault::api::update_credential,
            crate::vault::api::delete_credential
        ))
        .routes(routes!(crate::vault::api::rotate_credential))
        .routes(routes!(crate::vault::api::test_credential))
        .routes(routes!(crate::vault::oauth::start))
        .routes(routes!(crate::vault::oauth::callback))
        .routes(routes!(crate::triggers::polling::create_polling))
        .routes(routes!(crate::triggers::polling::poll_now))
        .routes(routes!(crate::triggers::webhook::pause_trigger))
        .routes(routes!(crate::triggers::webhook::resume_trigger))
        .routes(routes!(crate::triggers::webhook::delete_trigger))
        .routes(routes!(crate::triggers::webhook::ingress))
        .routes(routes!(system::openapi_json))
        .routes(routes!(system::docs_page))
        .split_for_parts()
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().1
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (api, _) = parts();
    let limit = state.config.body_limit;
    // The ingress also answers the other methods a webhook may be configured for.
    let hook = crate::triggers::webhook::ingress;
    api.route(
        "/hooks/{token}",
        axum::routing::get(hook).put(hook).patch(hook).delete(hook),
    )
    .route("/login", axum::routing::get(system::login))
        .route("/", axum::routing::get(system::home))
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            // The request line only: never headers, which carry keys.
            |req: &Request| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            },
        ))
        .with_state(state)
}

/// A JSON body whose rejections are problem+json with a helpful detail.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("the body is not valid JSON: {}", source_text(&e)))
        }
        JsonRejection::JsonDataError(e) => ApiError::invalid(
            format!(
                "the body does not have the expected shape: {}",
                source_text(&e)
            ),
            None,
        ),
        JsonRejection::BytesRejection(e) => {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "the body is larger than this server accepts (body_limit in orcheo.toml, ORCHEO_BODY_LIMIT)",
                )
            } else {
                ApiError::bad_request(format!("could not read the body: {e}"))
            }
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = inner.to_string();
        src = inner.source();
    }
    s
}

/// Query strings that fail to parse become problem+json too.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| {
                ApiError::bad_request(format!("invalid query string: {}", source_text(&e)))
            })
    }
}
