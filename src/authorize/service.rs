//! [`Authorize`]: classifies the request, finds the client's policy and
//! decides from the head; a DeleteObjects request is decided once its
//! (small, bounded) key list has been read.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::actions::{needs, Check, Needs};
use super::body::AuthorizeBody;
use super::future::ResponseFuture;
use super::layer::AuthorizeConfig;
use super::policy::{Decision, Policy, RequestContext};
use super::source::PolicySource;
use crate::body::ResponseBody;
use crate::notify::classify::{classify_addressed, query_value};
use crate::verified::{ClientAddr, Verified};

/// Set on the response when [`Authorize`] refused a request for its policy:
/// who, which action on which resource, and why. Holds no secret; the s3tap
/// proxy counts these per client in `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The client's access key id (`None` for an unverified request).
    pub access_key_id: Option<String>,
    /// The client's identity name.
    pub identity: Option<String>,
    /// The IAM action refused (`s3:PutObject`), or `unknown`.
    pub action: &'static str,
    /// The resource it was refused on (`arn:aws:s3:::bucket/key`).
    pub resource: String,
    /// `explicit_deny`, `implicit_deny`, `no_policy`, `unauthenticated` or
    /// `unsupported_operation`.
    pub reason: &'static str,
}

/// The service made by [`AuthorizeLayer`](super::AuthorizeLayer).
pub struct Authorize<S, P> {
    inner: S,
    source: Arc<P>,
    config: Arc<AuthorizeConfig>,
}

impl<S, P> Authorize<S, P> {
    pub(crate) fn new(inner: S, source: Arc<P>, config: Arc<AuthorizeConfig>) -> Self {
        Authorize {
            inner,
            source,
            config,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P: PolicySource> Authorize<S, P> {
    /// The layer that wraps services in this one
    /// ([`AuthorizeLayer::new`](super::AuthorizeLayer::new)).
    pub fn layer(source: P) -> super::AuthorizeLayer<P> {
        super::AuthorizeLayer::new(source)
    }
}

impl<S: Clone, P> Clone for Authorize<S, P> {
    fn clone(&self) -> Self {
        Authorize {
            inner: self.inner.clone(),
            source: self.source.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Authorize<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The condition keys of one request, shared by all its checks.
pub(crate) struct Facts {
    pub(crate) access_key_id: Option<String>,
    pub(crate) identity: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) delimiter: Option<String>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) secure_transport: bool,
    pub(crate) now: std::time::SystemTime,
}

impl Facts {
    pub(crate) fn denied(
        &self,
        action: &'static str,
        resource: String,
        reason: &'static str,
    ) -> Denied {
        Denied {
            access_key_id: self.access_key_id.clone(),
            identity: self.identity.clone(),
            action,
            resource,
            reason,
        }
    }
}

/// The first check the policy does not allow, as a [`Denied`].
pub(crate) fn first_denied(policy: &Policy, checks: &[Check], facts: &Facts) -> Option<Denied> {
    checks.iter().find_map(|check| {
        let listing = check.listing;
        let context = RequestContext::new(check.action, &check.resource, facts.now)
            .prefix(facts.prefix.as_deref().filter(|_| listing))
            .delimiter(facts.delimiter.as_deref().filter(|_| listing))
            .source_ip(facts.source_ip)
            .secure_transport(facts.secure_transport);
        match policy.evaluate(&context) {
            Decision::Allow => None,
            decision => Some(facts.denied(check.action, check.resource.clone(), decision.as_str())),
        }
    })
}

/// What the head says.
pub(crate) enum HeadDecision {
    Allow,
    Deny(Denied),
    /// Read the DeleteObjects key list, then decide.
    ReadDeleteList {
        policy: Arc<Policy>,
        bucket: String,
        facts: Facts,
    },
}

impl<S, P: PolicySource> Authorize<S, P> {
    fn decide_head(&self, parts: &http::request::Parts) -> HeadDecision {
        let verified = parts.extensions.get::<Verified>();
        let facts = Facts {
            access_key_id: verified.map(|v| v.access_key_id.clone()),
            identity: verified.map(|v| v.identity.name().to_owned()),
            prefix: query_value(parts.uri.query(), "prefix"),
            delimiter: query_value(parts.uri.query(), "delimiter"),
            source_ip: parts.extensions.get::<ClientAddr>().map(|a| a.0.ip()),
            secure_transport: self.config.secure_transport,
            now: (self.config.clock)(),
        };
        let Some(verified) = verified else {
            return HeadDecision::Deny(facts.denied("unknown", String::new(), "unauthenticated"));
        };
        let Some(policy) = self.source.policy(verified) else {
            if self.config.allow_without_policy {
                return HeadDecision::Allow;
            }
            return HeadDecision::Deny(facts.denied("unknown", String::new(), "no_policy"));
        };
        let classified = classify_addressed(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &self.config.addressing,
        );
        match needs(&classified, parts.uri.query(), &parts.headers) {
            Needs::Checks(checks) => match first_denied(&policy, &checks, &facts) {
                None => HeadDecision::Allow,
                Some(denied) => HeadDecision::Deny(denied),
            },
            Needs::DeleteObjects { bucket } => HeadDecision::ReadDeleteList {
                policy,
                bucket,
                facts,
            },
            Needs::Unknown => HeadDecision::Deny(facts.denied(
                "unknown",
                parts.uri.path().to_owned(),
                "unsupported_operation",
            )),
        }
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, P>
where
    S: Service<Request<AuthorizeBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    P: PolicySource,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        match self.decide_head(&parts) {
            HeadDecision::Allow => {
                let request = Request::from_parts(parts, AuthorizeBody::passthrough(body));
                ResponseFuture::calling(self.inner.call(request))
            }
            HeadDecision::Deny(denied) => ResponseFuture::denied(&parts, denied),
            HeadDecision::ReadDeleteList {
                policy,
                bucket,
                facts,
            } => {
                // The ready service goes into the future; a fresh clone stays.
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::reading(ready, parts, body, policy, bucket, facts)
            }
        }
    }
}
