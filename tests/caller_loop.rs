//! The caller's-own-`Poll` example (`examples/caller_loop.rs`), run as a test: the uploads
//! finish while the caller's own socket keeps being served by the same loop.
#![cfg(feature = "sink")]

#[path = "../examples/caller_loop.rs"]
mod example;

#[test]
fn uploads_run_inside_the_callers_poll_next_to_its_own_socket() {
    let outcome = example::run().unwrap();
    assert_eq!(outcome.statuses, [200, 200, 200]);
    assert!(
        outcome.datagrams > 0,
        "the caller's own socket was not served"
    );
}
