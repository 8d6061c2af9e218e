//! MetricsService: the server's live figures, one user's figures, and the stored hourly and
//! daily buckets.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{authenticate, validate};
use crate::{
    App,
    db::BucketKind,
    error::{Error, Result},
    limits::Action,
    proto::{
        GetDailyStatsRequest, GetDailyStatsResponse, GetHourlyStatsRequest, GetHourlyStatsResponse,
        GetMetricsRequest, GetMetricsResponse, GetUserMetricsRequest, GetUserMetricsResponse,
        metrics_service_server::MetricsService,
    },
};

/// Most hourly buckets one call returns: a week.
const MAX_HOURS: u32 = 168;
/// Most daily buckets one call returns.
const MAX_DAYS: u32 = 30;

/// The MetricsService implementation.
#[derive(Debug, Clone)]
pub struct MetricsApi {
    /// Shared server state.
    app: Arc<App>,
}

impl MetricsApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    async fn get_metrics(
        &self,
        _request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        Ok(Response::new(self.app.metrics.snapshot()))
    }

    async fn get_user_metrics(
        &self,
        request: Request<GetUserMetricsRequest>,
    ) -> Result<Response<GetUserMetricsResponse>, Status> {
        let me = authenticate(&self.app, request.metadata()).await?;
        self.app.limits.check(Action::Request, me.id)?;
        let user = validate::user_id("user_id", &request.get_ref().user_id)?;
        if user != me.id {
            if !self.app.identity.exists(user).await? {
                return Err(Error::NotFound(format!("user_id: no user with id {user}")).into());
            }
            return Err(Error::PermissionDenied(
                "user_id: only the user themself may read their metrics".into(),
            )
            .into());
        }
        let (messages_sent, messages_received) = self
            .app
            .db
            .message_counts_of(user)
            .await
            .map_err(Error::from)?;
        let sessions = self.app.hub.presence_of(user).map_or(0, |p| p.sessions);
        Ok(Response::new(GetUserMetricsResponse {
            user_id: user.to_string(),
            messages_sent,
            messages_received,
            rate_limit_hits: self.app.metrics.rate_limit_hits_of(user),
            sessions,
        }))
    }

    async fn get_hourly_stats(
        &self,
        request: Request<GetHourlyStatsRequest>,
    ) -> Result<Response<GetHourlyStatsResponse>, Status> {
        let hours = validate::bucket_count("hours", request.get_ref().hours, MAX_HOURS)?;
        let buckets = self
            .app
            .metrics
            .stats(&self.app.db, BucketKind::Hour, hours)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(GetHourlyStatsResponse { buckets }))
    }

    async fn get_daily_stats(
        &self,
        request: Request<GetDailyStatsRequest>,
    ) -> Result<Response<GetDailyStatsResponse>, Status> {
        let days = validate::bucket_count("days", request.get_ref().days, MAX_DAYS)?;
        let buckets = self
            .app
            .metrics
            .stats(&self.app.db, BucketKind::Day, days)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(GetDailyStatsResponse { buckets }))
    }
}
