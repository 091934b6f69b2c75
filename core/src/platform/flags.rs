//! The feature-flag seam: how any area (built-in or external) gates a feature
//! server-side. The flags plugin provides the evaluator; without it every flag is
//! unknown (`None`), so callers fall back to their own default.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use uuid::Uuid;

use crate::error::Result;
use crate::platform::Platform;
use crate::tenancy::RoleName;

/// Who a flag is evaluated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagContext {
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    /// The user's role in the org (a preset or a custom key), when known.
    pub role: Option<RoleName>,
}

pub type FlagFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Value>>> + Send + 'a>>;

/// Evaluates flags; provided by a plugin through [`crate::Plugin::feature_flags`].
pub trait FeatureFlags: Send + Sync + 'static {
    /// The flag's value for this context, or `None` when no such flag exists.
    fn evaluate<'a>(&'a self, platform: &'a Platform, ctx: &'a FlagContext, key: &'a str) -> FlagFuture<'a>;
}

impl Platform {
    /// The value of flag `key` for `ctx`; `None` without a flags plugin or flag.
    pub async fn flag(&self, ctx: &FlagContext, key: &str) -> Result<Option<Value>> {
        match self.feature_flags() {
            Some(flags) => flags.evaluate(self, ctx, key).await,
            None => Ok(None),
        }
    }

    /// Whether boolean flag `key` is on for `ctx` (unknown flags are off).
    pub async fn flag_enabled(&self, ctx: &FlagContext, key: &str) -> Result<bool> {
        Ok(self
            .flag(ctx, key)
            .await?
            .and_then(|v| v.as_bool())
            .unwrap_or(false))
    }
}
