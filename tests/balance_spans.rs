//! A retried or hedged call's span says how many attempts went and which one
//! answered; a call without a policy opens no span of its own.

mod balance_util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use balance_util::{Scripted, call, scripted_channel};
use tonic::Code;
use tonic_discovery::balance::{
    BalancedChannel, FailureAccrual, HedgingPolicy, MethodConfig, MethodName, RetryPolicy,
    ServiceConfig,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's name and its `field=value` pairs, in the order set.
type Seen = (String, Vec<String>);

/// The spans seen.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut Vec<String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().expect("spans");
        spans.push((attrs.metadata().name().to_owned(), fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(spans.len() - 1);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(&i) = span.extensions().get::<usize>() else {
            return;
        };
        let mut spans = self.0.lock().expect("spans");
        values.record(&mut Fields(&mut spans[i].1));
    }
}

impl Spans {
    /// The last value of each field of the spans named `name`.
    fn named(&self, name: &str) -> Vec<Vec<String>> {
        let spans = self.0.lock().expect("spans");
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, fields)| {
                let mut last: Vec<String> = Vec::new();
                for f in fields {
                    let key = f.split('=').next().unwrap_or_default();
                    last.retain(|l| l.split('=').next() != Some(key));
                    last.push(f.clone());
                }
                last.sort();
                last
            })
            .collect()
    }
}

async fn channel(config: ServiceConfig) -> (Scripted, BalancedChannel) {
    let builder = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::disabled())
        .service_config(config);
    scripted_channel(builder).await
}

fn echo() -> MethodConfig {
    MethodConfig::new([MethodName::service("echo.v1.Echo")])
}

#[tokio::test(flavor = "current_thread")]
async fn a_retried_call_says_which_attempt_answered() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let policy = RetryPolicy::new(3, [Code::Unavailable]).backoff(
        Duration::from_millis(1),
        Duration::from_millis(2),
        2.0,
    );
    let (server, channel) = channel(ServiceConfig::new().method(echo().retry(policy))).await;
    call(&channel).await.expect("answered at once");
    server.then_fail(Code::Unavailable, None);
    call(&channel).await.expect("answered by the retry");
    let calls = spans.named("retried_call");
    assert_eq!(
        calls,
        [
            vec![
                "attempts=1".to_owned(),
                "method=\"echo.v1.Echo/*\"".to_owned()
            ],
            vec![
                "answered=2".to_owned(),
                "attempts=2".to_owned(),
                "method=\"echo.v1.Echo/*\"".to_owned()
            ],
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_hedged_call_says_which_attempt_answered() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    // A failure with a non-fatal code sends the next attempt at once.
    let policy = HedgingPolicy::new(3, Duration::from_secs(60), [Code::Unavailable]);
    let (server, channel) = channel(ServiceConfig::new().method(echo().hedge(policy))).await;
    server.then_fail(Code::Unavailable, None);
    call(&channel).await.expect("answered by the hedge");
    let calls = spans.named("hedged_call");
    assert_eq!(
        calls,
        [vec![
            "answered=2".to_owned(),
            "method=\"echo.v1.Echo/*\"".to_owned(),
            "sent=2".to_owned()
        ]]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_without_a_policy_opens_no_span() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let (_server, channel) = channel(ServiceConfig::new()).await;
    call(&channel).await.expect("answered");
    assert_eq!(spans.named("retried_call"), Vec::<Vec<String>>::new());
    assert_eq!(spans.named("hedged_call"), Vec::<Vec<String>>::new());
}
