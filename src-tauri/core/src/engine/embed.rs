//! Embeddings: a model whose file names a pooling (`<arch>.pooling_type`) turns each input
//! into one vector, through the same pool as any model.

use tokio::sync::oneshot;

use super::EngineError;

/// What to embed: texts, or token ids the client tokenized itself.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    Text(String),
    Tokens(Vec<i32>),
}

/// One vector per input, in order, as the model pools them (not normalized).
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read, over all inputs.
    pub prompt_tokens: u32,
}

/// Embeddings being computed by the model's worker.
pub struct PendingEmbeddings(oneshot::Receiver<Result<Embeddings, EngineError>>);

impl PendingEmbeddings {
    pub fn new(reply: oneshot::Receiver<Result<Embeddings, EngineError>>) -> Self {
        Self(reply)
    }

    pub async fn wait(self) -> Result<Embeddings, EngineError> {
        self.0.await.unwrap_or_else(|_| {
            Err(EngineError::Internal(
                "the model stopped before the embeddings were done".into(),
            ))
        })
    }
}

/// Scales `vector` to length 1, as OpenAI's and llama-server's embeddings are; a zero vector
/// stays zero.
pub fn normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in vector.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn vectors_are_scaled_to_unit_length() {
        let mut v = [3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
