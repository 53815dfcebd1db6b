use std::time::Duration;

use tokio::time::{self, Instant};

use super::*;

const MS: f64 = 1_000_000.0;
const DECAY: Duration = Duration::from_secs(10);

fn ms(rtt_ns: f64) -> f64 {
    rtt_ns / MS
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.01
}

#[tokio::test(start_paused = true)]
async fn estimate_decays_towards_zero_with_the_time_constant() {
    let rtt = RttEstimate::new(Duration::from_millis(30), DECAY);
    assert!(close(ms(rtt.get(Instant::now())), 30.0));
    time::advance(DECAY).await;
    let after = ms(rtt.get(Instant::now()));
    assert!(close(after, 30.0 * (-1.0f64).exp()), "{after}");
    // Reading wrote nothing: the same instant reads the same value.
    assert!(close(ms(rtt.get(Instant::now())), after));
}

#[tokio::test(start_paused = true)]
async fn a_slower_sample_is_the_estimate_at_once() {
    let rtt = RttEstimate::new(Duration::from_millis(1), DECAY);
    rtt.observe(Duration::from_millis(50));
    assert!(close(ms(rtt.get(Instant::now())), 50.0));
}

#[tokio::test(start_paused = true)]
async fn a_faster_sample_pulls_the_estimate_down_gradually() {
    let rtt = RttEstimate::new(Duration::from_millis(30), DECAY);
    rtt.reset(Duration::from_millis(50));
    time::advance(DECAY / 20).await;
    rtt.observe(Duration::from_millis(10));
    let d = (-0.05f64).exp();
    let expected = 50.0 * d + 10.0 * (1.0 - d);
    let got = ms(rtt.get(Instant::now()));
    assert!(close(got, expected), "{got} != {expected}");
}

#[tokio::test(start_paused = true)]
async fn a_sample_after_the_estimate_expired_replaces_it() {
    let rtt = RttEstimate::new(Duration::from_millis(30), DECAY);
    rtt.reset(Duration::from_millis(50));
    time::advance(DECAY / 10 - Duration::from_millis(1)).await;
    assert!(!rtt.expired(Instant::now()));
    time::advance(Duration::from_millis(2)).await;
    assert!(rtt.expired(Instant::now()));
    rtt.observe(Duration::from_millis(10));
    assert!(close(ms(rtt.get(Instant::now())), 10.0));
    assert!(!rtt.expired(Instant::now()));
}

#[test]
fn cold_start_takes_the_median_of_the_peers() {
    let default = Duration::from_millis(30);
    assert_eq!(cold_start_rtt(vec![], default), default);
    let odd = vec![0.3 * MS, 0.1 * MS, 9.0 * MS];
    assert_eq!(cold_start_rtt(odd, default), Duration::from_micros(300));
    let even = vec![0.4 * MS, 0.2 * MS, 9.0 * MS, 0.1 * MS];
    assert_eq!(cold_start_rtt(even, default), Duration::from_micros(300));
    let junk = vec![f64::NAN, -1.0, 0.2 * MS];
    assert_eq!(cold_start_rtt(junk, default), Duration::from_micros(200));
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_seeded_from_warm_peers_costs_as_much_as_they_do() {
    let peers: Vec<_> = [0.1, 0.12, 0.2]
        .iter()
        .map(|ms| RttEstimate::new(Duration::from_secs_f64(ms / 1000.0), DECAY))
        .collect();
    time::advance(Duration::from_secs(1)).await;
    let now = Instant::now();
    let seed = cold_start_rtt(peers.iter().map(|p| p.get(now)).collect(), DECAY);
    let newcomer = RttEstimate::new(seed, DECAY).get(now);
    let median = peers[1].get(now);
    assert!((newcomer - median).abs() < 2.0, "{seed:?}");
    // With the 30 ms default instead it would cost hundreds of times more.
    assert!(newcomer < peers[2].get(now));
}

#[tokio::test(start_paused = true)]
async fn a_failure_never_lowers_the_estimate() {
    let rtt = RttEstimate::new(Duration::from_millis(10), DECAY);
    rtt.observe_no_lower(Duration::from_millis(1));
    assert!(close(ms(rtt.get(Instant::now())), 10.0));
    rtt.observe_no_lower(Duration::from_millis(20));
    assert!(close(ms(rtt.get(Instant::now())), 20.0));
}

#[tokio::test(start_paused = true)]
async fn the_first_measurement_replaces_the_initial_guess() {
    let rtt = RttEstimate::new(Duration::from_millis(30), DECAY);
    // A failure is no measurement: the guess stays.
    rtt.observe_no_lower(Duration::from_micros(100));
    assert!(close(ms(rtt.get(Instant::now())), 30.0));
    rtt.observe(Duration::from_micros(200));
    assert!(close(ms(rtt.get(Instant::now())), 0.2));
    // From then on a faster sample only pulls it down.
    time::advance(Duration::from_millis(1)).await;
    rtt.observe(Duration::from_micros(100));
    let got = ms(rtt.get(Instant::now()));
    assert!(got > 0.199 && got < 0.2, "{got}");
}

#[test]
fn the_cold_start_sample_is_bounded_and_spread() {
    assert_eq!(cold_start_sample(0).count(), 0);
    assert_eq!(cold_start_sample(5).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let all: Vec<_> = cold_start_sample(COLD_START_SAMPLE).collect();
    assert_eq!(all, (0..COLD_START_SAMPLE).collect::<Vec<_>>());
    let big: Vec<_> = cold_start_sample(10_000).collect();
    assert_eq!(big.len(), COLD_START_SAMPLE);
    assert!(big.windows(2).all(|w| w[0] < w[1]), "{big:?}");
    assert_eq!(big[0], 0);
    assert!(*big.last().unwrap() >= 10_000 - 10_000 / COLD_START_SAMPLE - 1);
    assert!(big.iter().all(|&i| i < 10_000));
}

proptest::proptest! {
    #[test]
    fn cold_start_is_the_sorted_median(peers in proptest::collection::vec(0.0f64..1e9, 1..64)) {
        let mut sorted = peers.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 0 { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 } else { sorted[n / 2] };
        let got = cold_start_rtt(peers, Duration::from_millis(30));
        proptest::prop_assert_eq!(got, Duration::from_nanos(median as u64));
    }
}

#[tokio::test(start_paused = true)]
async fn the_typical_latency_shrugs_off_one_late_answer_and_follows_a_lasting_slowdown() {
    let rtt = RttEstimate::new(Duration::from_millis(30), DECAY);
    rtt.reset(Duration::from_micros(200));
    assert!(close(ms(rtt.typical()), 0.2));
    // One answer 40 times late: the estimate is that answer, the typical latency
    // moves by less than 1.5x (40^0.1 = 1.45).
    time::advance(Duration::from_millis(1)).await;
    rtt.observe(Duration::from_millis(8));
    assert!(close(ms(rtt.get(Instant::now())), 8.0));
    let typical = ms(rtt.typical());
    assert!(typical > 0.2 && typical < 0.3, "{typical}");
    // Every answer 50 times late: past 1.5x after two.
    rtt.reset(Duration::from_micros(200));
    for _ in 0..2 {
        time::advance(Duration::from_millis(1)).await;
        rtt.observe(Duration::from_millis(10));
    }
    let typical = ms(rtt.typical());
    assert!(typical > 0.3, "{typical}");
    // A failed call's latency leaves it alone; an expired estimate starts over.
    rtt.observe_no_lower(Duration::from_secs(1));
    assert!(close(ms(rtt.typical()), typical));
    time::advance(DECAY).await;
    rtt.observe(Duration::from_micros(300));
    assert!(close(ms(rtt.typical()), 0.3));
}
