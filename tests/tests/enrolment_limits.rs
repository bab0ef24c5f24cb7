//! #22 item 3, over TLS: the enrolment limiters are README's (200/s overall, 100/s per
//! token), and guessing join tokens cannot starve honest enrolments.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use drover_proto::v1::{EnrollRequest, enrolment_service_client::EnrolmentServiceClient};
use drover_tests::{
    CoordinatorBuilder, enrol::enrol_in_memory_with, enrol::join_token, eventually,
};
use futures::StreamExt;
use tonic::Code;

/// README's per-token rate, and its one second of burst.
const PER_TOKEN_PER_SECOND: f64 = 100.0;

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().expect("a key");
    rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("a signing request")
        .der()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_enrols_no_faster_than_its_limit() {
    const ATTEMPTS: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(dir.path()).start().await;
    let url = c.grpc_url();
    let token = join_token(&url, &["dev"], 1000).expect("TLS");
    let client = EnrolmentServiceClient::new(c.channel().await);
    let csr = csr();

    let started = Instant::now();
    let outcomes: Vec<Code> = futures::stream::iter(0..ATTEMPTS)
        .map(|n| {
            let (mut client, token, csr) = (client.clone(), token.clone(), csr.clone());
            async move {
                let asked = client.enroll(EnrollRequest {
                    token,
                    csr_der: csr,
                    agent_id: format!("rate-{n}"),
                    group: "dev".into(),
                    hostname: "rate".into(),
                });
                asked
                    .await
                    .map_or_else(|status| status.code(), |_| Code::Ok)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let enrolled = outcomes.iter().filter(|code| **code == Code::Ok).count();
    let limited = outcomes
        .iter()
        .filter(|code| **code == Code::ResourceExhausted)
        .count();
    println!("{enrolled} enrolled, {limited} limited, in {elapsed:.2} s");
    assert_eq!(enrolled + limited, ATTEMPTS, "{outcomes:?}");
    // One second of burst, then the rate: however fast or slow this machine is.
    let allowed = PER_TOKEN_PER_SECOND * (1.0 + elapsed) + 5.0;
    assert!(
        (enrolled as f64) <= allowed,
        "{enrolled} enrolments in {elapsed:.2} s with one token; at most {allowed:.0} allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_tokens_do_not_starve_honest_enrolments() {
    const GUESSES: u64 = 4_000;
    const HONEST: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(dir.path()).start().await;
    let url = c.grpc_url();
    let token = join_token(&url, &["dev"], HONEST).expect("TLS");

    // The attack: join tokens guessed as fast as the coordinator answers.
    let answered = Arc::new(AtomicU64::new(0));
    let looked_up = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let guesser = {
        let client = EnrolmentServiceClient::new(c.channel().await);
        let (answered, looked_up) = (answered.clone(), looked_up.clone());
        let csr = csr();
        tokio::spawn(async move {
            futures::stream::iter(0..GUESSES)
                .for_each_concurrent(64, |n| {
                    let (mut client, csr) = (client.clone(), csr.clone());
                    let (answered, looked_up) = (answered.clone(), looked_up.clone());
                    async move {
                        let guess = client.enroll(EnrollRequest {
                            token: format!("drover_join_{n:064x}"),
                            csr_der: csr,
                            group: "dev".into(),
                            hostname: "guesser".into(),
                            ..Default::default()
                        });
                        if let Err(status) = guess.await
                            && status.code() == Code::Unauthenticated
                        {
                            looked_up.fetch_add(1, Ordering::Relaxed);
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        })
    };
    eventually(
        "the guessing is well under way",
        Duration::from_secs(60),
        async || (answered.load(Ordering::Relaxed) >= GUESSES / 2).then_some(()),
    )
    .await;

    // Honest updaters enrol, each at its first attempt, while the guessing goes on.
    for n in 0..HONEST {
        enrol_in_memory_with(&url, &format!("honest-{n}"), "dev", &token)
            .await
            .unwrap_or_else(|status| panic!("honest enrolment {n} refused: {status:?}"));
    }
    guesser.await.expect("the guesser ends");
    let elapsed = started.elapsed().as_secs_f64();
    let looked_up = looked_up.load(Ordering::Relaxed);
    println!("{GUESSES} guesses in {elapsed:.1} s: {looked_up} reached the token lookup");
    // From one address: its burst of 5, then 2 a second.
    let allowed = 5.0 + 2.0 * elapsed + 5.0;
    assert!(
        (looked_up as f64) <= allowed,
        "{looked_up} guesses were looked up in {elapsed:.1} s; at most {allowed:.0} allowed"
    );
}
