//! `POST /v1/embeddings`: one vector per input, from a model whose file names a pooling,
//! loaded, measured, idle-unloaded and evicted through the pool like any other.

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::options::idle_timeout;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::embed::normalize;
use crate::engine::EmbedInput;
use crate::vocab::IdleTimeout;

/// OpenAI's own limit on inputs per request.
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Value,
    pub encoding_format: Option<String>,
    pub dimensions: Option<i64>,
    pub keep_alive: Option<Value>,
    pub ttl: Option<Value>,
}

/// An embedding request that passed every check.
#[derive(Debug)]
pub struct EmbeddingCall {
    pub model: String,
    pub inputs: Vec<EmbedInput>,
    pub base64: bool,
    pub keep_alive: Option<IdleTimeout>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_input", message)
}

/// `input`: a string, a list of strings, a list of token ids, or a list of such lists.
fn inputs(input: &Value) -> Result<Vec<EmbedInput>, ApiError> {
    let tokens = |list: &[Value]| -> Option<Vec<i32>> {
        list.iter()
            .map(|t| t.as_i64().and_then(|t| i32::try_from(t).ok()))
            .collect()
    };
    let inputs = match input {
        Value::String(text) => vec![EmbedInput::Text(text.clone())],
        Value::Array(list) if list.is_empty() => {
            return Err(invalid("'input' must not be empty".into()))
        }
        Value::Array(list) if list.iter().all(Value::is_number) => {
            let ids = tokens(list).ok_or_else(|| {
                invalid("'input' as tokens must be whole numbers (token ids)".into())
            })?;
            vec![EmbedInput::Tokens(ids)]
        }
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(EmbedInput::Text(text.clone())),
                Value::Array(ids) => tokens(ids).map(EmbedInput::Tokens).ok_or_else(|| {
                    invalid(format!("'input[{i}]' as tokens must be whole numbers"))
                }),
                other => Err(invalid(format!(
                    "'input[{i}]' must be a string or a list of token ids, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(invalid(format!(
                "'input' must be a string, a list of strings or token ids, got {other}"
            )))
        }
    };
    if inputs.len() > MAX_INPUTS {
        return Err(invalid(format!(
            "at most {MAX_INPUTS} inputs per request, got {}",
            inputs.len()
        )));
    }
    if inputs.iter().any(|i| match i {
        EmbedInput::Text(t) => t.is_empty(),
        EmbedInput::Tokens(t) => t.is_empty(),
    }) {
        return Err(invalid(
            "an input is empty: there is nothing to embed".into(),
        ));
    }
    Ok(inputs)
}

impl EmbeddingRequest {
    pub fn prepare(self) -> Result<EmbeddingCall, ApiError> {
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_encoding_format",
                    format!("'encoding_format' must be \"float\" or \"base64\", got \"{other}\""),
                ))
            }
        };
        let keep_alive = match (&self.keep_alive, &self.ttl) {
            (Some(value), _) => Some(idle_timeout("keep_alive", value)?),
            (None, Some(value)) => Some(idle_timeout("ttl", value)?),
            (None, None) => None,
        };
        Ok(EmbeddingCall {
            inputs: inputs(&self.input)?,
            model: self.model,
            base64,
            keep_alive,
        })
    }
}

pub async fn embeddings(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<EmbeddingRequest>,
) -> Result<Json<Value>, ApiError> {
    let dimensions = request.dimensions;
    let call = request.prepare()?;
    let file = state.catalog.find(&call.model)?;
    let model = state.pool.acquire(file, call.keep_alive).await?;
    let mut embeddings = model.embed(call.inputs)?.wait().await?;
    if let Some(asked) = dimensions {
        // The models served here have one output size; OpenAI's shortening applies only to
        // models trained for it (Matryoshka), which a GGUF does not say.
        let size = embeddings.vectors.first().map_or(0, Vec::len);
        if usize::try_from(asked).ok() != Some(size) {
            return Err(ApiError::bad_request(
                "invalid_dimensions",
                format!(
                    "'{}' makes {size}-dimension embeddings and cannot shorten them; leave out 'dimensions' or ask for {size}",
                    call.model
                ),
            ));
        }
    }
    let data: Vec<Value> = embeddings
        .vectors
        .iter_mut()
        .enumerate()
        .map(|(index, vector)| {
            normalize(vector);
            let embedding = if call.base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": { "prompt_tokens": embeddings.prompt_tokens, "total_tokens": embeddings.prompt_tokens },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_is_read() {
        assert_eq!(
            inputs(&json!("a")).expect("ok"),
            vec![EmbedInput::Text("a".into())]
        );
        assert_eq!(inputs(&json!(["a", "b"])).expect("ok").len(), 2);
        assert_eq!(
            inputs(&json!([1, 2, 3])).expect("ok"),
            vec![EmbedInput::Tokens(vec![1, 2, 3])]
        );
        assert_eq!(
            inputs(&json!([[1], [2, 3]])).expect("ok"),
            vec![EmbedInput::Tokens(vec![1]), EmbedInput::Tokens(vec![2, 3])]
        );
        for bad in [
            json!([]),
            json!(""),
            json!([1.5]),
            json!({"a": 1}),
            json!([["x"]]),
            json!([true]),
        ] {
            assert!(inputs(&bad).is_err(), "{bad}");
        }
    }
}
