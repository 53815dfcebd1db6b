//! Traffic policy: instance weights and zone-aware routing with failover.
//!
//! Both act where the balancer draws the two endpoints it compares; the comparison
//! itself stays Peak-EWMA (see [`LoadMetric`](super::LoadMetric)), so latency keeps
//! the last word.
//!
//! # Weights
//!
//! An instance's [weight](crate::Instance::weight) (Consul's `Weights`, Nacos's
//! weight, a metadata entry) sets how often it is drawn: each of the two candidates
//! is drawn with a probability proportional to its weight among the ready endpoints,
//! and the first one drawn is kept unless the second is clearly better. Load counts
//! per unit of weight: the calls waiting on an endpoint are scaled by the mean weight
//! over its own, so an instance of weight 4 carries four times the calls in flight of
//! one of weight 1 before it looks busier. At rest (no call waiting on either) the
//! second must cost clearly less (1.5×, so that noise in the latency estimates does
//! not override a weight). Under load, two candidates of different weights whose
//! loads are alike (within one call of the lighter instance, per unit of weight) are
//! told apart by their typical latency (with the failure penalty, and the silence
//! while calls wait), and only when one is twice as fast: the first drawn keeps the
//! call otherwise, since a call or two in flight and a late answer are noise. Loads
//! further apart, and candidates of equal weight, go to the cheaper one, latency ×
//! load. Equally fast instances thus get shares close to their weights at rest and
//! under moderate load (section 10 of `BENCHMARKS.md`: within 3 points at 5,000
//! calls/s; a saturated machine's replies slow down on the heaviest instance, and
//! latency takes calls back from it), while a slow instance loses its comparisons
//! whatever its weight: a weight attracts traffic, it never forces it onto an
//! instance that answers late.
//!
//! # Zones
//!
//! A channel told its own [`Locality`] (region and zone) sends traffic only to the
//! instances of its zone while enough of them are ready, as Envoy's zone-aware
//! routing does. Instances fall in three tiers: the client's zone, other zones of
//! its region, and every other instance (another region, or no locality known).
//! Each tier takes the traffic its health allows, in that order:
//!
//! - a tier's health is its ready instances over its instances (ready: connected, not
//!   ejected, serving), times the [overprovisioning
//!   factor](ZoneRouting::overprovisioning) (default 1.4, so a zone with 72% or more
//!   of its instances ready still takes everything);
//! - the first tier takes `min(1, health)` of the traffic, the next the smallest of
//!   its health and what is left, and so on; the last tier with instances takes the
//!   rest, so traffic is never dropped while any instance is ready;
//! - a zone with fewer ready instances than [`ZoneRouting::min_ready`] (default 1)
//!   takes nothing.
//!
//! With two instances per zone and one of the client's killed, its zone is 50% ready:
//! it keeps 70% of the traffic and 30% spills to the other zones. When the instance
//! returns, the traffic returns with it. The tiers' shares are recomputed by the
//! balancer's worker whenever it runs (on every discovery change, connection change,
//! ejection and probe), in time linear in the number of endpoints.

use std::sync::Arc;

use crate::{Instance, Locality};

/// How a zone-aware channel spreads traffic over zones (see the [module
/// documentation](self) on zones). Set with
/// [`TrafficPolicy::zone_routing`](TrafficPolicy::zone_routing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneRouting {
    min_ready: usize,
    overprovisioning: f64,
}

// === impl ZoneRouting ===

impl ZoneRouting {
    /// The defaults: a zone takes traffic with at least one ready instance, and all of
    /// it while 1/1.4 (72%) of its instances are ready.
    pub fn new() -> Self {
        ZoneRouting {
            min_ready: 1,
            overprovisioning: 1.4,
        }
    }

    /// A tier (the client's zone, its region, the rest) with fewer ready instances
    /// than this takes no traffic. Default 1; 0 counts as 1.
    #[must_use]
    pub fn min_ready(mut self, min_ready: usize) -> Self {
        self.min_ready = min_ready.max(1);
        self
    }

    /// How much a tier's ready fraction is scaled by before it caps the tier's share
    /// of the traffic (Envoy's overprovisioning factor). Default 1.4; values below 1
    /// count as 1 (every instance must be ready to keep all the traffic), and values
    /// that are not finite as the default.
    #[must_use]
    pub fn overprovisioning(mut self, factor: f64) -> Self {
        self.overprovisioning = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.4
        };
        self
    }

    /// The minimum of ready instances for a tier to take traffic.
    pub fn min_ready_count(&self) -> usize {
        self.min_ready
    }

    /// The overprovisioning factor.
    pub fn overprovisioning_factor(&self) -> f64 {
        self.overprovisioning
    }
}

impl Default for ZoneRouting {
    fn default() -> Self {
        ZoneRouting::new()
    }
}

/// How the balancer places traffic: instance weights and zone-aware routing, in one
/// value (see the [module documentation](self)). Set with
/// [`BalancedChannelBuilder::traffic_policy`](super::BalancedChannelBuilder::traffic_policy).
///
/// ```
/// use tonic_discovery::Locality;
/// use tonic_discovery::balance::{BalancedChannel, TrafficPolicy, ZoneRouting};
///
/// let builder = BalancedChannel::builder("echo").traffic_policy(
///     TrafficPolicy::new()
///         .locality(Locality::new("eu-west-1", "eu-west-1a"))
///         .zone_routing(ZoneRouting::new().min_ready(2)),
/// );
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct TrafficPolicy {
    weighted: bool,
    locality: Option<Locality>,
    zone_key: String,
    region_key: String,
    routing: ZoneRouting,
}

// === impl TrafficPolicy ===

impl TrafficPolicy {
    /// The defaults: weights on, the client's locality unknown (every instance alike),
    /// zones and regions read from the `zone` and `region` metadata keys when the
    /// registry gives no locality, [`ZoneRouting::new`].
    pub fn new() -> Self {
        TrafficPolicy {
            weighted: true,
            locality: None,
            zone_key: "zone".to_owned(),
            region_key: "region".to_owned(),
            routing: ZoneRouting::new(),
        }
    }

    /// Whether instances' [weights](crate::Instance::weight) set their shares of the
    /// traffic (see [weights](self#weights)). Default: on. Off, every instance counts
    /// as weight 1.
    pub fn weighted(mut self, weighted: bool) -> Self {
        self.weighted = weighted;
        self
    }

    /// Where this client runs: turns on zone-aware routing (see [zones](self#zones)).
    /// Traffic stays in the client's zone while enough of its instances are ready,
    /// spills over to the other zones of its region, then to any instance. Default:
    /// unknown, every instance alike. A locality with neither zone nor region leaves
    /// zone-aware routing off.
    ///
    /// An instance's zone and region come from its registry
    /// ([`Instance::locality`](crate::Instance::locality): Consul's
    /// `Service.Locality`, a Nacos cluster), else from its metadata (see
    /// [`zone_meta_keys`](Self::zone_meta_keys)).
    pub fn locality(mut self, locality: Locality) -> Self {
        self.locality = Some(locality);
        self
    }

    /// The metadata keys an instance's zone and region are read from when its
    /// registry gives no locality. Default: `zone` and `region`.
    pub fn zone_meta_keys(mut self, zone: impl Into<String>, region: impl Into<String>) -> Self {
        self.zone_key = zone.into();
        self.region_key = region.into();
        self
    }

    /// When zone-aware routing keeps traffic in the client's zone. Default:
    /// [`ZoneRouting::new`] (at least one ready instance; all the traffic while 72%
    /// of the zone's instances are ready, the rest spilled in proportion).
    pub fn zone_routing(mut self, routing: ZoneRouting) -> Self {
        self.routing = routing;
        self
    }
}

impl Default for TrafficPolicy {
    fn default() -> Self {
        TrafficPolicy::new()
    }
}

/// The tiers, by preference.
pub(crate) const TIERS: usize = 3;

/// What the balancer needs to place an instance: its tier and its weight.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The client's own locality; `None` turns zone-aware routing off.
    client: Option<Locality>,
    zone_key: Arc<str>,
    region_key: Arc<str>,
    routing: ZoneRouting,
    weighted: bool,
}

// === impl Policy ===

impl Default for Policy {
    fn default() -> Self {
        Policy::from(&TrafficPolicy::new())
    }
}

impl From<&TrafficPolicy> for Policy {
    fn from(p: &TrafficPolicy) -> Self {
        Policy::new(
            p.locality.clone(),
            p.zone_key.as_str().into(),
            p.region_key.as_str().into(),
            p.routing,
            p.weighted,
        )
    }
}

impl Policy {
    pub(crate) fn new(
        client: Option<Locality>,
        zone_key: Arc<str>,
        region_key: Arc<str>,
        routing: ZoneRouting,
        weighted: bool,
    ) -> Self {
        let client = client.filter(|l| l.zone().is_some() || l.region().is_some());
        Policy {
            client,
            zone_key,
            region_key,
            routing,
            weighted,
        }
    }

    /// Whether tiers matter (a client locality is set).
    pub(crate) fn zoned(&self) -> bool {
        self.client.is_some()
    }

    pub(crate) fn routing(&self) -> &ZoneRouting {
        &self.routing
    }

    /// The weight the balancer gives an instance: its registry weight (at least 1),
    /// or 1 when weights are ignored.
    pub(crate) fn weight(&self, instance: &Instance) -> u32 {
        if self.weighted {
            instance.weight().max(1)
        } else {
            1
        }
    }

    /// The instance's tier: 0 in the client's zone, 1 in its region, 2 otherwise
    /// (and 0 for every instance when zone-aware routing is off). The locality comes
    /// from the registry, else from the metadata keys.
    pub(crate) fn tier(&self, instance: &Instance) -> usize {
        let Some(client) = &self.client else {
            return 0;
        };
        let locality = instance.locality();
        let meta = |key: &str| instance.meta().get(key).map(String::as_str);
        let zone = locality.zone().or_else(|| meta(&self.zone_key));
        let region = locality.region().or_else(|| meta(&self.region_key));
        let same =
            |a: Option<&str>, b: Option<&str>| matches!((a, b), (Some(a), Some(b)) if a == b);
        // A zone names a place within a region: the same zone in another region is
        // another place.
        let region_ok =
            client.region().is_none() || region.is_none() || same(client.region(), region);
        if client.zone().is_some() && same(client.zone(), zone) && region_ok {
            0
        } else if client.region().is_some() && same(client.region(), region) {
            1
        } else {
            2
        }
    }
}

/// The share of traffic each tier takes, from its instances and ready instances.
/// Shares sum to 1 unless no tier has a ready instance (then all are 0).
pub(crate) fn tier_shares(
    routing: &ZoneRouting,
    total: [usize; TIERS],
    ready: [usize; TIERS],
) -> [f64; TIERS] {
    let mut shares = [0.0; TIERS];
    let mut left = 1.0f64;
    for t in 0..TIERS {
        if total[t] == 0 || ready[t] < routing.min_ready {
            continue;
        }
        let health = ready[t] as f64 / total[t] as f64 * routing.overprovisioning;
        let share = health.min(left);
        shares[t] = share;
        left -= share;
    }
    // What no tier's health covers goes to the tiers that can take traffic, in
    // proportion to their shares (Envoy normalises the same way); with no tier above
    // `min_ready`, to the most preferred tier that has any ready instance.
    let sum: f64 = shares.iter().sum();
    if sum > 0.0 {
        for s in &mut shares {
            *s /= sum;
        }
    } else if let Some(t) = (0..TIERS).find(|&t| ready[t] > 0) {
        shares[t] = 1.0;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstanceKey;
    use proptest::prelude::*;

    fn instance(zone: Option<(&str, &str)>, meta_zone: Option<&str>) -> Instance {
        let mut i = Instance::new(InstanceKey::new("n", "a"), "127.0.0.1", 1);
        if let Some((region, zone)) = zone {
            i = i.with_locality(Locality::new(region, zone));
        }
        if let Some(z) = meta_zone {
            i = i.with_meta([("zone".to_owned(), z.to_owned())].into());
        }
        i
    }

    fn policy(client: Option<Locality>) -> Policy {
        Policy::new(
            client,
            "zone".into(),
            "region".into(),
            ZoneRouting::new(),
            true,
        )
    }

    #[test]
    fn tiers_follow_zone_then_region() {
        let p = policy(Some(Locality::new("eu", "eu-a")));
        assert_eq!(p.tier(&instance(Some(("eu", "eu-a")), None)), 0);
        assert_eq!(p.tier(&instance(Some(("eu", "eu-b")), None)), 1);
        assert_eq!(
            p.tier(&instance(Some(("us", "eu-a")), None)),
            2,
            "same zone name, other region"
        );
        assert_eq!(p.tier(&instance(None, None)), 2);
        assert_eq!(
            p.tier(&instance(None, Some("eu-a"))),
            0,
            "zone from metadata"
        );
        assert_eq!(
            p.tier(&instance(Some(("eu", "eu-b")), Some("eu-a"))),
            1,
            "the registry's locality wins over metadata"
        );
        assert_eq!(policy(None).tier(&instance(Some(("eu", "eu-b")), None)), 0);
    }

    #[test]
    fn a_healthy_zone_takes_everything() {
        let r = ZoneRouting::new();
        assert_eq!(tier_shares(&r, [2, 2, 0], [2, 2, 0]), [1.0, 0.0, 0.0]);
        // 3 of 4 ready: 0.75 × 1.4 ≥ 1.
        assert_eq!(tier_shares(&r, [4, 2, 0], [3, 2, 0]), [1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_degraded_zone_spills_in_proportion_to_missing_capacity() {
        let r = ZoneRouting::new();
        let s = tier_shares(&r, [2, 2, 0], [1, 2, 0]);
        assert!(
            (s[0] - 0.7).abs() < 1e-9 && (s[1] - 0.3).abs() < 1e-9,
            "{s:?}"
        );
        let s = tier_shares(&r, [2, 2, 4], [0, 2, 4]);
        assert_eq!(s, [0.0, 1.0, 0.0]);
        let s = tier_shares(&r, [2, 0, 0], [1, 0, 0]);
        assert_eq!(s, [1.0, 0.0, 0.0], "nowhere to spill: all stays");
        assert_eq!(tier_shares(&r, [2, 2, 2], [0, 0, 0]), [0.0; 3]);
        let strict = r.min_ready(2);
        assert_eq!(tier_shares(&strict, [2, 2, 0], [1, 2, 0]), [0.0, 1.0, 0.0]);
        assert_eq!(tier_shares(&strict, [2, 2, 0], [1, 1, 0]), [1.0, 0.0, 0.0]);
    }

    proptest! {
        #[test]
        fn shares_sum_to_one_when_anything_is_ready(
            total in proptest::array::uniform3(0usize..20),
            frac in proptest::array::uniform3(0.0f64..=1.0),
            min_ready in 0usize..4,
            factor in 0.5f64..3.0,
        ) {
            let ready = [0, 1, 2].map(|t| (total[t] as f64 * frac[t]).floor() as usize);
            let r = ZoneRouting::new().min_ready(min_ready).overprovisioning(factor);
            let s = tier_shares(&r, total, ready);
            let sum: f64 = s.iter().sum();
            if ready.iter().any(|&n| n > 0) {
                prop_assert!((sum - 1.0).abs() < 1e-9, "{s:?}");
            } else {
                prop_assert_eq!(sum, 0.0);
            }
            for t in 0..TIERS {
                prop_assert!(s[t] >= 0.0);
                if ready[t] == 0 {
                    prop_assert_eq!(s[t], 0.0);
                }
            }
        }

    }
}
